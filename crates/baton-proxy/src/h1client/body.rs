//! The response body of an exchange on `h1client`: decoded from the connection's
//! buffer as the client's side polls it, reading more only when the buffer has no
//! complete piece. When the body ends cleanly on a keep-alive connection with nothing
//! left over, the connection goes back to the backend's idle pool at once.

use super::parse::{Decoded, Decoder, Fields, Framing, Head, Invalid};
use super::{Conn, READ_CHUNK};
use crate::backend::Backend;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

/// Why a response body stopped early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("reading the response body: {0}")]
    Io(#[from] std::io::Error),
    #[error("the backend's drain deadline passed")]
    Closed,
}

/// Resolves when the backend's drain deadline closes its connections.
type Deadline = Pin<Box<dyn Future<Output = ()> + Send>>;

pub(crate) struct FastBody {
    /// `None` once the body is complete (the connection is pooled or closed).
    conn: Option<Box<Conn>>,
    /// Made the first time the body waits for the upstream (most bodies never do).
    deadline: Option<Deadline>,
    decoder: Decoder,
    keep_alive: bool,
    backend: Arc<Backend>,
    /// Whether the head or a frame went out since the body last waited: a failure is
    /// then held for one poll (see `poll_frame`).
    unflushed: bool,
    /// Boxed: rare, and unboxed it would make every upstream body larger.
    held: Option<Box<BodyError>>,
    /// The response's header fields, until `strip_hop_by_hop` and then the client
    /// side's encoder (or `body::materialize`) take them.
    /// Boxed: a `FastBody` rides in every upstream body, and most of its size is
    /// there already.
    fields: Option<Box<Fields>>,
}

impl FastBody {
    pub(super) fn new(conn: Box<Conn>, head: Head, backend: Arc<Backend>) -> FastBody {
        let mut body = FastBody {
            conn: Some(conn),
            deadline: None,
            decoder: Decoder::new(head.framing),
            keep_alive: head.keep_alive && head.framing != Framing::Eof,
            backend,
            unflushed: true,
            held: None,
            fields: Some(Box::new(head.fields)),
        };
        if body.decoder.is_done() {
            body.complete();
        }
        body
    }

    /// Removes the hop-by-hop fields from the response's head, as
    /// `headers::strip_hop_by_hop(.., false)` removes them from a map. When only a map
    /// gives the order (a name repeats), the fields become `headers` (empty until
    /// then) and are stripped there.
    pub fn strip_hop_by_hop(&mut self, headers: &mut http::HeaderMap) {
        let Some(mut fields) = self.fields.take() else {
            crate::headers::strip_hop_by_hop(headers, false);
            return;
        };
        if fields.strip_hop_by_hop() {
            self.fields = Some(fields);
        } else {
            *headers = fields.to_map();
            crate::headers::strip_hop_by_hop(headers, false);
        }
    }

    /// The response's header fields, if nothing has taken them yet: they come before
    /// every field of the response's `HeaderMap`.
    pub fn take_fields(&mut self) -> Option<Box<Fields>> {
        self.fields.take()
    }

    /// The body ended as framed: keep the connection if it can carry another request.
    fn complete(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if self.keep_alive && conn.buf.is_empty() {
            self.backend.idle.push_conn(&self.backend, conn);
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            let step = match self.decoder.decode(&mut conn.buf) {
                Ok(step) => step,
                Err(e) => {
                    self.conn = None;
                    return Poll::Ready(Some(Err(e.into())));
                }
            };
            match step {
                Decoded::Data(data) => {
                    if self.decoder.is_done() {
                        self.complete();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Decoded::Trailers(trailers) => {
                    self.complete();
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
                Decoded::Done => {
                    self.complete();
                    return Poll::Ready(None);
                }
                Decoded::NeedMore => {}
            }
            conn.buf.reserve(READ_CHUNK);
            let read = tokio_util::io::poll_read_buf(Pin::new(&mut conn.stream), cx, &mut conn.buf);
            let Poll::Ready(read) = read else {
                let generation = conn.generation;
                let backend = &self.backend;
                let deadline = self.deadline.get_or_insert_with(|| {
                    let mut close = backend.close_signal();
                    Box::pin(async move {
                        let _ = close.wait_for(|g| *g != generation).await;
                    })
                });
                ready!(deadline.as_mut().poll(cx));
                self.conn = None;
                return Poll::Ready(Some(Err(BodyError::Closed)));
            };
            match read {
                Ok(0) => {
                    self.conn = None;
                    if let Err(e) = self.decoder.eof() {
                        return Poll::Ready(Some(Err(e.into())));
                    }
                    return Poll::Ready(None);
                }
                Ok(_) => {}
                Err(e) => {
                    self.conn = None;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }
}

impl Body for FastBody {
    type Data = Bytes;
    type Error = BodyError;

    /// A body cut by the upstream must reach the client as a cut body: the head and the
    /// bytes before the cut, then a closed connection. hyper's server writes out what
    /// it holds only when the body has nothing ready, and drops it when the body fails;
    /// when the head, the last bytes and the failure are all in the buffer at once, the
    /// failure would come first. So it waits one poll (woken at once) before it is told.
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if let Some(error) = this.held.take() {
            return Poll::Ready(Some(Err(*error)));
        }
        match this.poll_next(cx) {
            Poll::Ready(Some(Err(error))) if this.unflushed => {
                this.unflushed = false;
                this.held = Some(Box::new(error));
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Poll::Ready(Some(Ok(frame))) => {
                this.unflushed = true;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                this.unflushed = false;
                Poll::Pending
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.decoder.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder.remaining() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
