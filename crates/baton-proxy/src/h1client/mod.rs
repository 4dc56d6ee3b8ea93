//! The upstream HTTP/1.1 exchange driven inside the request's own task, for requests
//! without a body (`GET`, `HEAD`): the head is written straight to a pooled
//! connection, the response head parsed with httparse (`parse.rs`) and the body
//! decoded as the client's side reads it (`body.rs`). hyper's client needs a
//! connection task per upstream connection, a channel to it and cross-task wake-ups for
//! every request; here there is none. Requests with a body and upgrades keep hyper's
//! client (`pool.rs`): writing a body while the answer streams back is what its
//! dispatcher is for.
//!
//! A connection is reused only after a response whose framing ended cleanly on a
//! keep-alive connection with no byte left over; idle ones wait in the backend's
//! `IdlePool` and are checked for a close by the upstream (end of stream or stray
//! bytes) when taken out.
//!
//! The response-head deadline (`upstream_header_timeout`) is a timer the connection
//! keeps from one exchange to the next (`Deadline`). Registering a timer with the
//! runtime and removing it again for every request cost about as much as the rest of a
//! small request's bookkeeping; a connection's deadlines only move later, so the timer
//! stays where an earlier exchange set it and is moved on only when it fires before the
//! deadline of the exchange in progress: on a busy connection, about once per
//! `upstream_header_timeout` instead of twice per request.

mod body;
pub(crate) mod parse;

pub(crate) use body::FastBody;
pub(crate) use parse::Fields;

use crate::backend::Backend;
use crate::headers::Forwarding;
use crate::pool::ConnectError;
use crate::socket::Socket;
use bytes::BytesMut;
use http::request::Parts;
use http::{Method, Response, StatusCode};
use parse::{take_head, Invalid};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::time::{Instant, Sleep};

/// Read buffer reserved per read.
const READ_CHUNK: usize = 8 * 1024;

/// One upstream connection owned by the request using it (or idle in a pool).
pub(crate) struct Conn {
    /// Its small writes (request heads) batched on a worker, as a client's (`batch.rs`).
    stream: Socket,
    /// The socket as its backend follows it: `Backend::abandon` and the drain
    /// deadline (`Backend::close_all`) end an exchange by shutting it down.
    watched: Arc<crate::backend::Watched>,
    buf: BytesMut,
    /// The backend's close generation when the connection was made (`Backend::close_all`
    /// bumps it at the drain deadline).
    generation: u64,
    /// The response-head deadline's timer, made at the first exchange that waits and
    /// kept while the connection lives (see the module's text). Idle in the pool, it
    /// still holds the waker of the last request that waited on it, until it fires or
    /// the next exchange polls it: at most one finished task per idle connection, for
    /// at most `upstream_header_timeout`.
    timer: Option<Pin<Box<Sleep>>>,
}

impl Conn {
    /// Boxed once per connection: a connection rides in its response's body (and in
    /// the pool between exchanges), and only a pointer then moves with it.
    pub async fn connect(backend: &Backend, timeout: Duration) -> Result<Box<Conn>, ConnectError> {
        let stream = crate::pool::connect_stream(backend.addr, timeout).await?;
        let stream = stream
            .into_std()
            .and_then(Socket::connected)
            .map_err(|source| ConnectError::Io {
                addr: backend.addr,
                source,
            })?;
        let watched = backend
            .watch(std::os::fd::AsFd::as_fd(&stream))
            .map_err(|source| ConnectError::Io {
                addr: backend.addr,
                source,
            })?;
        Ok(Box::new(Conn {
            stream,
            watched,
            buf: BytesMut::new(),
            generation: backend.close_generation(),
            timer: None,
        }))
    }

    /// Whether an idle connection can carry a request: made since the last drain
    /// deadline, not closed by the upstream, and with nothing unasked-for to read.
    pub fn usable(&self, backend: &Backend) -> bool {
        if self.generation != backend.close_generation() {
            return false;
        }
        self.stream.is_quiet()
    }
}

/// Why an exchange failed before a usable response head.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// A reused connection refused the request head: nothing reached the upstream.
    #[error("pooled connection closed before the request was written: {0}")]
    Unsent(io::Error),
    /// The connection closed before any byte of a response.
    #[error("connection closed before any response")]
    Closed,
    #[error("the backend's drain deadline passed")]
    DrainDeadline,
    /// No response head within `upstream_header_timeout` of sending the request.
    #[error("no response head within the upstream header timeout")]
    HeaderTimeout,
    /// The backend was found dead while the request waited for its response head.
    #[error("the backend was found dead while the request waited for its answer")]
    Abandoned,
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Invalid(#[from] Invalid),
}

/// Writes `parts` (a request without a body, already rewritten for the upstream) and
/// reads the response head, both by `deadline_at`. The body is read later, by
/// whoever polls the `FastBody`. Not an `async fn`, which would keep room in the
/// future for each argument twice (see `forward.rs`).
#[allow(clippy::manual_async_fn)]
pub(crate) fn send<'a>(
    mut conn: Box<Conn>,
    reused: bool,
    parts: &'a Parts,
    forwarding: &'a Forwarding<'a>,
    backend: Arc<Backend>,
    deadline_at: Instant,
) -> impl Future<Output = Result<Response<FastBody>, SendError>> + 'a {
    async move {
        let mut deadline = Deadline {
            timer: &mut conn.timer,
            at: deadline_at,
        };
        // The head is encoded in the read buffer (empty between exchanges: a connection is
        // pooled only with no byte left over), so a pooled connection's request allocates
        // nothing for it.
        debug_assert!(conn.buf.is_empty());
        conn.buf.clear();
        encode_head(parts, forwarding, &mut conn.buf);
        let head = &conn.buf;
        // From here the request waits for its answer; a request without a body can be sent
        // again, so `Backend::abandon` may end the wait (by shutting the socket).
        if !backend.wait(&conn.watched) {
            return Err(SendError::Abandoned);
        }
        // The first write tells a dead pooled connection (reset by the upstream) from a
        // request that may have been seen: nothing of the head was accepted. On a worker
        // the head goes into the batch and a send that fails tells it at the read below
        // (`batch::was_not_sent`).
        let written = match deadline.within(conn.stream.write(head)).await? {
            Ok(n) => n,
            Err(e) if reused => return Err(SendError::Unsent(e)),
            Err(e) => return Err(e.into()),
        };
        deadline
            .within(conn.stream.write_all(&head[written..]))
            .await??;
        conn.buf.clear();
        let head_request = parts.method == Method::HEAD;
        // The backend's drain deadline ends a request still waiting for its answer: its
        // socket is shut down (`Backend::close_all`), or, past it, nothing waits at all.
        let drained = |e: SendError| {
            if backend.is_closed() {
                SendError::DrainDeadline
            } else {
                e
            }
        };
        if backend.is_closed() {
            return Err(SendError::DrainDeadline);
        }
        let mut received = 0usize;
        let mut head = loop {
            if !conn.buf.is_empty() {
                if let Some(head) = take_head(&mut conn.buf, head_request)? {
                    if head.status.is_informational() {
                        if head.status == StatusCode::SWITCHING_PROTOCOLS {
                            return Err(
                                Invalid::Head("101 to a request that asked no upgrade").into()
                            );
                        }
                        // 100 Continue, 103 Early Hints: the final answer follows.
                        continue;
                    }
                    break head;
                }
            }
            conn.buf.reserve(READ_CHUNK);
            let n = deadline
                .within(tokio::io::AsyncReadExt::read_buf(
                    &mut conn.stream,
                    &mut conn.buf,
                ))
                .await?
                .map_err(|e| match e {
                    // Nothing of the head reached the upstream: its batched send failed,
                    // or the connection failed while the head still waited in the batch.
                    e if reused
                        && received == 0
                        && (crate::batch::was_not_sent(&e) || conn.stream.holds_batched()) =>
                    {
                        SendError::Unsent(e)
                    }
                    e => drained(e.into()),
                })?;
            if n == 0 {
                if received == 0 {
                    return Err(drained(SendError::Closed));
                }
                return Err(drained(
                    Invalid::Head("connection closed in the response head").into(),
                ));
            }
            received += n;
        };
        if !conn.watched.answered() {
            return Err(drained(SendError::Abandoned));
        }
        // The header fields travel in the body, as received: the response's `HeaderMap`
        // stays empty until something needs one (`body::materialize`).
        let (status, version, reason) = (head.status, head.version, head.reason.take());
        let mut res = Response::new(FastBody::new(conn, head, backend));
        *res.status_mut() = status;
        *res.version_mut() = version;
        if let Some(reason) = reason {
            if let Ok(reason) = hyper::ext::ReasonPhrase::try_from(reason) {
                res.extensions_mut().insert(reason);
            }
        }
        Ok(res)
    }
}

/// An exchange's response-head deadline, on the timer its connection keeps.
struct Deadline<'a> {
    timer: &'a mut Option<Pin<Box<Sleep>>>,
    at: Instant,
}

pin_project_lite::pin_project! {
    /// `Deadline::within`'s future: no bigger than `io`'s and two pointers (an `async
    /// fn` would hold `io` twice, and this is awaited in every request's future).
    struct Within<'d, 'a, F> {
        #[pin]
        io: F,
        deadline: &'d mut Deadline<'a>,
    }
}

impl<F: Future> Future for Within<'_, '_, F> {
    type Output = Result<F::Output, SendError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.io.poll(cx) {
            return Poll::Ready(Ok(out));
        }
        this.deadline
            .poll_passed(cx)
            .map(|()| Err(SendError::HeaderTimeout))
    }
}

impl<'a> Deadline<'a> {
    /// `io`'s output, or `HeaderTimeout` if the deadline passes first.
    fn within<'d, F: Future>(&'d mut self, io: F) -> Within<'d, 'a, F> {
        Within { io, deadline: self }
    }

    /// Ready once the deadline has passed. The timer fires at an earlier exchange's
    /// deadline or at this one's, never later: when it fires early it is moved on.
    fn poll_passed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let at = self.at;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        // A reload may have shortened the timeout since the timer was set.
        if timer.deadline() > at {
            timer.as_mut().reset(at);
        }
        loop {
            ready!(timer.as_mut().poll(cx));
            if Instant::now() >= at {
                return Poll::Ready(());
            }
            timer.as_mut().reset(at);
        }
    }
}

/// The request head as hyper's client writes it: request line, then every field as
/// `name: value` (names lower-case, as `HeaderMap` holds them) and the proxy's own
/// after them (as if inserted into the map last), appended to `head` (empty).
fn encode_head(parts: &Parts, forwarding: &Forwarding<'_>, head: &mut BytesMut) {
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut size = parts.method.as_str().len() + target.len() + 14 + forwarding.len();
    for (name, value) in &parts.headers {
        size += name.as_str().len() + value.len() + 4;
    }
    head.reserve(size);
    head.extend_from_slice(parts.method.as_str().as_bytes());
    head.extend_from_slice(b" ");
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    forwarding.write_to(head);
    head.extend_from_slice(b"\r\n");
}

/// Whether a request goes over this client: no body, no upgrade, `GET` or `HEAD`.
pub(crate) fn eligible(method: &Method, has_body: bool, upgrade: bool) -> bool {
    !has_body && !upgrade && (*method == Method::GET || *method == Method::HEAD)
}

#[cfg(test)]
mod tests;

/// A response as `h1client` reads it, in plain types (for the differential fuzzer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedResponse {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    pub trailers: Option<Vec<(String, Vec<u8>)>>,
}

/// Reads `bytes` as the response to a request (`HEAD` when `head_request`) over reads
/// of `read` bytes, then the end of the connection: the response, or why it is refused.
pub fn fuzz_decode(
    bytes: &[u8],
    head_request: bool,
    read: usize,
) -> Result<DecodedResponse, String> {
    let plain = |map: &http::HeaderMap| {
        map.iter()
            .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
            .collect::<Vec<_>>()
    };
    let (head, body, trailers) =
        parse::decode_whole(bytes, head_request, read).map_err(|e| e.to_string())?;
    Ok(DecodedResponse {
        status: head.status.as_u16(),
        headers: plain(&head.fields.to_map()),
        body,
        trailers: trailers.as_ref().map(plain),
    })
}
