//! Body types on both sides of the proxy. The request body streams the client's body to
//! the upstream (counting bytes only when there is a body). The response body streams
//! the upstream's answer back and carries the exchange's accounting: when it ends, the
//! upstream connection goes back to the idle pool, the backend's in-flight count drops
//! and the version's metrics record the request. Bytes are counted from the data frames
//! that pass through, not from `Content-Length`.

use crate::backend::InFlight;
use crate::h1guard::Active;
use crate::pool::{self, Sender};
use baton_metrics::VersionMetrics;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

/// What the proxy sends upstream.
pub(crate) enum RequestBody {
    /// The client's body, with a byte counter shared with the exchange and the most
    /// bytes it may carry (`max_request_body`; `u64::MAX` when unlimited).
    Client {
        inner: Incoming,
        counter: Arc<AtomicU64>,
        limit: u64,
    },
    Empty,
}

/// Why the request body stopped: the client's stream failed, or it grew past
/// `max_request_body` (the upstream request is then aborted, so the backend never
/// gets a complete request, and the client gets 413).
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestBodyError {
    #[error(transparent)]
    Client(#[from] hyper::Error),
    #[error("the request body is larger than max_request_body ({limit} bytes)")]
    TooLarge { limit: u64 },
}

impl RequestBody {
    /// Wrap the client's body; bodiless requests allocate nothing.
    pub fn from_client(
        inner: Incoming,
        limit: Option<u64>,
    ) -> (RequestBody, Option<Arc<AtomicU64>>) {
        if inner.is_end_stream() {
            return (RequestBody::Empty, None);
        }
        let counter = Arc::new(AtomicU64::new(0));
        (
            RequestBody::Client {
                inner,
                counter: counter.clone(),
                limit: limit.unwrap_or(u64::MAX),
            },
            Some(counter),
        )
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = RequestBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RequestBodyError>>> {
        match self.get_mut() {
            RequestBody::Empty => Poll::Ready(None),
            RequestBody::Client {
                inner,
                counter,
                limit,
            } => {
                let frame = ready!(Pin::new(inner).poll_frame(cx));
                if let Some(Ok(Some(data))) =
                    frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref))
                {
                    let total = counter.fetch_add(data.len() as u64, Relaxed) + data.len() as u64;
                    if total > *limit {
                        return Poll::Ready(Some(Err(RequestBodyError::TooLarge {
                            limit: *limit,
                        })));
                    }
                }
                Poll::Ready(frame.map(|f| f.map_err(RequestBodyError::from)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Client { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Client { inner, .. } => inner.size_hint(),
        }
    }
}

/// Accounting of one forwarded request; finishes exactly once.
pub(crate) struct Exchange {
    metrics: Arc<VersionMetrics>,
    start: Instant,
    /// 0 until a response (or a proxy error on this version's behalf) is known.
    pub status: u16,
    bytes_in: Option<Arc<AtomicU64>>,
    bytes_out: u64,
    in_flight: Option<InFlight>,
    conn: Option<Sender>,
    finished: bool,
}

impl Exchange {
    pub fn start(metrics: Arc<VersionMetrics>, start: Instant) -> Exchange {
        metrics.request_started();
        Exchange {
            metrics,
            start,
            status: 0,
            bytes_in: None,
            bytes_out: 0,
            in_flight: None,
            conn: None,
            finished: false,
        }
    }

    pub fn set_bytes_in(&mut self, counter: Option<Arc<AtomicU64>>) {
        self.bytes_in = counter;
    }

    /// Request body bytes read from the client so far.
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in.as_ref().map_or(0, |c| c.load(Relaxed))
    }

    /// The backend serving the request (moves on a retry).
    pub fn set_in_flight(&mut self, guard: InFlight) {
        self.in_flight = Some(guard);
    }

    pub fn in_flight(&self) -> Option<&InFlight> {
        self.in_flight.as_ref()
    }

    pub fn take_in_flight(&mut self) -> Option<InFlight> {
        self.in_flight.take()
    }

    pub fn set_conn(&mut self, conn: Sender) {
        self.conn = Some(conn);
    }

    /// Record the request; `complete` returns the upstream connection for reuse.
    pub fn finish(&mut self, complete: bool) {
        if self.finished {
            return;
        }
        self.finished = true;
        if let (true, Some(conn), Some(guard)) = (complete, self.conn.take(), &self.in_flight) {
            pool::checkin(guard.backend().clone(), conn);
        }
        self.conn = None;
        self.in_flight = None;
        self.metrics.request_finished(
            self.status,
            self.start.elapsed(),
            self.bytes_in(),
            self.bytes_out,
        );
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.finish(false);
    }
}

/// What the proxy sends to the client.
pub(crate) struct ResponseBody {
    kind: Kind,
    /// Keeps the client connection marked busy until the response is done.
    active: Option<Active>,
}

enum Kind {
    Full(Option<Bytes>),
    Upstream { inner: Incoming, exchange: Exchange },
}

impl ResponseBody {
    pub(crate) fn full(bytes: Bytes) -> ResponseBody {
        ResponseBody {
            kind: Kind::Full(Some(bytes)),
            active: None,
        }
    }

    pub(crate) fn empty() -> ResponseBody {
        ResponseBody {
            kind: Kind::Full(None),
            active: None,
        }
    }

    pub(crate) fn upstream(inner: Incoming, exchange: Exchange) -> ResponseBody {
        ResponseBody {
            kind: Kind::Upstream { inner, exchange },
            active: None,
        }
    }

    pub(crate) fn set_active(&mut self, active: Active) {
        self.active = Some(active);
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        match &mut this.kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Upstream { inner, exchange } => {
                let frame = ready!(Pin::new(&mut *inner).poll_frame(cx));
                match &frame {
                    Some(Ok(f)) => {
                        if let Some(data) = f.data_ref() {
                            exchange.bytes_out += data.len() as u64;
                        }
                        if inner.is_end_stream() {
                            exchange.finish(true);
                        }
                    }
                    None => exchange.finish(true),
                    Some(Err(_)) => exchange.finish(false),
                }
                if frame.is_none() || inner.is_end_stream() {
                    this.active = None;
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Upstream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Upstream { inner, .. } => inner.size_hint(),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if let Kind::Upstream { inner, exchange } = &mut self.kind {
            exchange.finish(inner.is_end_stream());
        }
    }
}
