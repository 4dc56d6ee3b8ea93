//! Body types on both sides of the proxy. The request body streams the client's body to
//! the upstream (counting bytes only when there is a body), after reading ahead up to
//! `request_buffering` bytes before any backend is chosen, and cuts a body whose client
//! sends nothing for `body_read_timeout`. The response body streams the upstream's
//! answer back and carries the exchange's accounting: when it ends, the upstream
//! connection goes back to the idle pool, the backend's in-flight count drops and the
//! version's metrics record the request. Bytes are counted from the data frames that
//! pass through, not from `Content-Length`, and before any compression (`compress.rs`).

use crate::access_log::{AccessRecord, Pending};
use crate::backend::{Backend, InFlight};
use crate::compress::Encoder;
use crate::h1client::FastBody;
use crate::h1guard::Active;
use crate::pool::{self, Sender};
use baton_metrics::{MetricsRegistry, VersionMetrics};
use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};
use tokio::time::Sleep;

/// A client request's body as the request handler gets it: hyper's (HTTP/1.1 requests
/// hyper serves), an HTTP/2 stream's (`h2server`), or none at all (a request the
/// HTTP/1 fast path (`h1server`) read, which never has one).
pub(crate) enum Inbound {
    Hyper(Incoming),
    H2(H2Body),
    Empty,
}

impl Body for Inbound {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Inbound::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            Inbound::H2(b) => b.poll_frame(cx),
            Inbound::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Inbound::Hyper(b) => b.is_end_stream(),
            Inbound::H2(b) => b.recv.is_end_stream(),
            Inbound::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Inbound::Hyper(b) => b.size_hint(),
            Inbound::H2(b) => b
                .content_length
                .map_or_else(SizeHint::new, SizeHint::with_exact),
            Inbound::Empty => SizeHint::with_exact(0),
        }
    }
}

/// An HTTP/2 request's body: the stream's DATA frames, then its trailers. Each chunk's
/// bytes go back to the client's flow-control window as soon as they are taken, so the
/// client sends on while the proxy forwards (h2 itself refuses a body that disagrees
/// with the request's `Content-Length`).
pub(crate) struct H2Body {
    recv: h2::RecvStream,
    /// The request's `Content-Length`, when it gave one.
    content_length: Option<u64>,
    data_done: bool,
}

impl H2Body {
    pub fn new(recv: h2::RecvStream, content_length: Option<u64>) -> H2Body {
        H2Body {
            recv,
            content_length,
            data_done: false,
        }
    }

    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if !self.data_done {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                // RST_STREAM NO_ERROR: the client needs no more of an answer (RFC 9113
                // §8.1): the body ends here, it did not fail.
                Some(Err(e)) if e.reason() == Some(h2::Reason::NO_ERROR) => {
                    return Poll::Ready(None)
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                None => self.data_done = true,
            }
        }
        match ready!(self.recv.poll_trailers(cx)) {
            Ok(trailers) => Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t)))),
            Err(e) if e.reason() == Some(h2::Reason::NO_ERROR) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e.into()))),
        }
    }
}

/// What the proxy sends upstream.
pub(crate) enum RequestBody {
    Client(Box<ClientBody>),
    Empty,
}

/// The client's body: what was read ahead (sent first), then the rest as it arrives.
pub(crate) struct ClientBody {
    inner: Inbound,
    /// Data read ahead before a backend was chosen, not yet sent upstream.
    buffered: Option<Bytes>,
    /// Trailers read ahead (only when the whole body was read ahead).
    trailers: Option<HeaderMap>,
    /// The client's body has ended; what is left is in `buffered` / `trailers`.
    ended: bool,
    progress: Arc<BodyProgress>,
    /// The most bytes the body may carry (`max_request_body`; `u64::MAX` when unlimited).
    limit: u64,
    /// `body_read_timeout`: the longest wait for the client's next body bytes.
    read_timeout: Duration,
    /// Armed when a read finds nothing to read; fires after `read_timeout`.
    stall: Pin<Box<Sleep>>,
    waiting: bool,
    metrics: Arc<MetricsRegistry>,
}

/// How far the client's body got, shared with the exchange, and the limits it was read
/// under (so that an upstream failure it caused is told as the limit's).
pub(crate) struct BodyProgress {
    bytes: AtomicU64,
    stalled: AtomicBool,
    limit: Option<u64>,
    read_timeout: Duration,
}

/// Why the request body stopped: the client's stream failed, it grew past
/// `max_request_body` (the client gets 413), or the client stopped sending it (408).
/// Either of the last two aborts an upstream request already under way, so the backend
/// never gets a complete request.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestBodyError {
    #[error("{0}")]
    Client(BoxError),
    #[error("the request body is larger than max_request_body ({limit} bytes)")]
    TooLarge { limit: u64 },
    #[error("the client sent no request body bytes for {timeout:?} (body_read_timeout)")]
    Stalled { timeout: Duration },
}

/// The limits a client body is read under.
pub(crate) struct BodyLimits {
    pub max_bytes: Option<u64>,
    pub read_timeout: Duration,
}

impl RequestBody {
    /// Wrap the client's body; bodiless requests allocate nothing.
    pub fn from_client(
        inner: Inbound,
        limits: &BodyLimits,
        metrics: &Arc<MetricsRegistry>,
    ) -> (RequestBody, Option<Arc<BodyProgress>>) {
        if inner.is_end_stream() {
            return (RequestBody::Empty, None);
        }
        let progress = Arc::new(BodyProgress {
            bytes: AtomicU64::new(0),
            stalled: AtomicBool::new(false),
            limit: limits.max_bytes,
            read_timeout: limits.read_timeout,
        });
        let body = ClientBody {
            inner,
            buffered: None,
            trailers: None,
            ended: false,
            progress: progress.clone(),
            limit: limits.max_bytes.unwrap_or(u64::MAX),
            read_timeout: limits.read_timeout,
            stall: Box::pin(tokio::time::sleep(limits.read_timeout)),
            waiting: false,
            metrics: metrics.clone(),
        };
        (RequestBody::Client(Box::new(body)), Some(progress))
    }

    /// Read the body ahead until it ends or more than `max` bytes are in hand, so a
    /// slow client holds no backend connection while it sends them. What was read is
    /// sent first when the body is polled; a longer body then streams. Fails when the
    /// client stalls or the body grows past `max_request_body`.
    pub async fn read_ahead(&mut self, max: u64) -> Result<(), RequestBodyError> {
        let RequestBody::Client(body) = self else {
            return Ok(());
        };
        let mut data = BytesMut::new();
        while !body.ended && (data.len() as u64) <= max {
            let Some(frame) = poll_fn(|cx| body.poll_client(cx)).await else {
                break;
            };
            match frame?.into_data() {
                Ok(chunk) => data.extend_from_slice(&chunk),
                Err(frame) => body.trailers = frame.into_trailers().ok(),
            }
            if body.inner.is_end_stream() {
                body.ended = true;
            }
        }
        if !data.is_empty() {
            body.buffered = Some(data.freeze());
        }
        Ok(())
    }
}

impl ClientBody {
    /// The next frame from the client, counted, checked against the limit, and cut
    /// when the client sends nothing for `read_timeout`.
    fn poll_client(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RequestBodyError>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                if !self.waiting {
                    self.waiting = true;
                    let deadline = tokio::time::Instant::now() + self.read_timeout;
                    self.stall.as_mut().reset(deadline);
                }
                if self.stall.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.ended = true;
                self.progress.stalled.store(true, Relaxed);
                self.metrics.request_body_timed_out();
                return Poll::Ready(Some(Err(RequestBodyError::Stalled {
                    timeout: self.read_timeout,
                })));
            }
        };
        self.waiting = false;
        match frame {
            None => {
                self.ended = true;
                Poll::Ready(None)
            }
            Some(Err(e)) => {
                self.ended = true;
                Poll::Ready(Some(Err(RequestBodyError::Client(e))))
            }
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    let total = self.progress.bytes.fetch_add(len, Relaxed) + len;
                    if total > self.limit {
                        self.ended = true;
                        return Poll::Ready(Some(Err(RequestBodyError::TooLarge {
                            limit: self.limit,
                        })));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }
}

impl BodyProgress {
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Relaxed)
    }

    pub fn stalled(&self) -> bool {
        self.stalled.load(Relaxed)
    }

    /// Why the body was cut off, if it was: the client stopped sending it, or it grew
    /// past the limit.
    pub fn cut_off(&self) -> Option<RequestBodyError> {
        if self.stalled() {
            return Some(RequestBodyError::Stalled {
                timeout: self.read_timeout,
            });
        }
        let limit = self.limit?;
        (self.bytes() > limit).then_some(RequestBodyError::TooLarge { limit })
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
            RequestBody::Client(body) => {
                if let Some(data) = body.buffered.take() {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                if body.ended {
                    return Poll::Ready(body.trailers.take().map(|t| Ok(Frame::trailers(t))));
                }
                body.poll_client(cx)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Client(body) => {
                body.buffered.is_none()
                    && body.trailers.is_none()
                    && (body.ended || body.inner.is_end_stream())
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Client(body) => {
                let ahead = body.buffered.as_ref().map_or(0, |b| b.len() as u64);
                if body.ended {
                    return SizeHint::with_exact(ahead);
                }
                let rest = body.inner.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower().saturating_add(ahead));
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper.saturating_add(ahead));
                }
                hint
            }
        }
    }
}

/// Accounting of one forwarded request; finishes exactly once.
pub(crate) struct Exchange {
    metrics: Arc<VersionMetrics>,
    start: Instant,
    /// 0 until a response (or a proxy error on this version's behalf) is known.
    pub status: u16,
    bytes_in: Option<Arc<BodyProgress>>,
    bytes_out: u64,
    in_flight: Option<InFlight>,
    conn: Option<Sender>,
    finished: bool,
    /// The backend that answered (kept after `finish`, for the access log).
    served_by: Option<Arc<Backend>>,
    /// From sending the request upstream to the response head.
    pub upstream_time: Option<Duration>,
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
            served_by: None,
            upstream_time: None,
        }
    }

    /// When the exchange started (routing done): the clock reading its first try
    /// shares.
    pub fn started(&self) -> Instant {
        self.start
    }

    pub fn set_bytes_in(&mut self, progress: Option<Arc<BodyProgress>>) {
        self.bytes_in = progress;
    }

    /// Request body bytes read from the client so far.
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in.as_ref().map_or(0, |p| p.bytes())
    }

    /// Why the client's body was cut off (`body_read_timeout`, `max_request_body`), if
    /// it was: an upstream request that failed then failed because of it.
    pub fn body_cut_off(&self) -> Option<RequestBodyError> {
        self.bytes_in.as_ref().and_then(|p| p.cut_off())
    }

    /// The request was routed again, to `guard`'s backend (`forward::send`): what this
    /// exchange counted for its version ends unanswered (status 0, which that version's
    /// error rate counts: its instance failed the request), and the new one counts for
    /// the version of `metrics` from now.
    pub fn restart(&mut self, metrics: Arc<VersionMetrics>, guard: InFlight) {
        let progress = self.bytes_in.take();
        *self = Exchange::start(metrics, Instant::now());
        self.bytes_in = progress;
        self.set_in_flight(guard);
    }

    /// The backend serving the request (moves on a retry).
    pub fn set_in_flight(&mut self, guard: InFlight) {
        self.served_by = Some(guard.backend().clone());
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

    /// Who served the request, and how long its response head took.
    pub fn describe(&self, record: &mut AccessRecord) {
        if let Some(b) = &self.served_by {
            record.app = Some(b.app.clone());
            record.version = Some(b.version.clone());
            record.instance = Some(b.id.clone());
        }
        record.upstream = self.upstream_time;
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

/// What the proxy sends to the client. Boxed: a response is moved from future to
/// future on its way out (handler, connection loop, writer), ~20 times a request, and
/// a pointer is what moves, not the ~370 bytes of an upstream body and its exchange.
pub(crate) struct ResponseBody(Box<Outbound>);

struct Outbound {
    kind: Kind,
    /// Keeps the client connection marked busy until the response is done.
    active: Option<Active>,
    /// The access log record, pushed when the body is dropped.
    access: Option<Pending>,
    /// Bytes of a `Full` body handed to the client.
    sent: u64,
    /// Compresses the body on its way out (`compress.rs`); counting above is of the
    /// bytes before compression.
    encoder: Option<Box<Encoder>>,
}

// `Upstream` is nearly every response; boxing it would be one more allocation per
// request to make the rare `Full` (baton's own answers) smaller.
#[allow(clippy::large_enum_variant)]
enum Kind {
    Full(Option<Bytes>),
    Upstream {
        inner: UpstreamBody,
        exchange: Exchange,
    },
    /// The empty body of a 101; the finished exchange says who answered (access log).
    Upgraded(Exchange),
}

impl ResponseBody {
    fn new(kind: Kind) -> ResponseBody {
        ResponseBody(Box::new(Outbound {
            kind,
            active: None,
            access: None,
            sent: 0,
            encoder: None,
        }))
    }

    pub(crate) fn full(bytes: Bytes) -> ResponseBody {
        ResponseBody::new(Kind::Full(Some(bytes)))
    }

    pub(crate) fn upgraded(exchange: Exchange) -> ResponseBody {
        ResponseBody::new(Kind::Upgraded(exchange))
    }

    pub(crate) fn upstream(inner: UpstreamBody, exchange: Exchange) -> ResponseBody {
        ResponseBody::new(Kind::Upstream { inner, exchange })
    }

    pub(crate) fn set_active(&mut self, active: Active) {
        self.0.active = Some(active);
    }

    pub(crate) fn set_access(&mut self, pending: Pending) {
        self.0.access = Some(pending);
    }

    /// Whether this streams an upstream's answer (not a proxy error, not a 101).
    pub(crate) fn is_upstream(&self) -> bool {
        matches!(self.0.kind, Kind::Upstream { .. })
    }

    /// Compress the body from now on.
    pub(crate) fn encode(&mut self, encoder: Encoder) {
        self.0.encoder = Some(Box::new(encoder));
    }

    /// The upstream's header fields that `h1client` keeps as received (hop-by-hop
    /// fields removed), if nothing has taken them yet. They belong before every field
    /// of the response's `HeaderMap`.
    pub(crate) fn take_fields(&mut self) -> Option<Box<crate::h1client::Fields>> {
        match &mut self.0.kind {
            Kind::Upstream {
                inner: UpstreamBody::Fast(body),
                ..
            } => body.take_fields(),
            _ => None,
        }
    }
}

/// Puts the header fields `h1client` kept as received into the response's
/// `HeaderMap`, ahead of the fields already there: what reads or changes a response's
/// headers calls this first. Only the client side's HTTP/1.1 fast path writes the
/// fields without a map.
pub(crate) fn materialize(res: &mut Response<ResponseBody>) {
    if let Some(fields) = res.body_mut().take_fields() {
        prepend_fields(&fields, res.headers_mut());
    }
}

/// Puts `fields` into `headers` ahead of the fields already there.
pub(crate) fn prepend_fields(fields: &crate::h1client::Fields, headers: &mut HeaderMap) {
    let mut map = fields.to_map();
    let mut last: Option<http::HeaderName> = None;
    for (name, value) in std::mem::take(headers) {
        if let Some(name) = name {
            last = Some(name);
        }
        if let Some(name) = &last {
            map.append(name.clone(), value);
        }
    }
    *headers = map;
}

/// An error of a body on its way through: hyper's or `h1client`'s.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An upstream's response body: from hyper's client (requests with a body, upgrades)
/// or from `h1client` (the rest).
pub(crate) enum UpstreamBody {
    Hyper(Incoming),
    Fast(FastBody),
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            UpstreamBody::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            UpstreamBody::Fast(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Hyper(b) => b.is_end_stream(),
            UpstreamBody::Fast(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Hyper(b) => b.size_hint(),
            UpstreamBody::Fast(b) => b.size_hint(),
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self.get_mut().0;
        let (kind, sent, active) = (&mut this.kind, &mut this.sent, &mut this.active);
        match this.encoder.as_deref_mut() {
            Some(encoder) => encoder.poll_frame(cx, |cx| poll_kind(kind, sent, active, cx)),
            None => poll_kind(kind, sent, active, cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        let this = &*self.0;
        if let Some(encoder) = &this.encoder {
            return encoder.is_end_stream();
        }
        match &this.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Upgraded(_) => true,
            Kind::Upstream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        let this = &*self.0;
        if this.encoder.is_some() {
            return SizeHint::default();
        }
        match &this.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Upstream { inner, .. } => inner.size_hint(),
            Kind::Upgraded(_) => SizeHint::with_exact(0),
        }
    }
}

/// The next frame of the body as it comes (from the upstream, or the proxy's own),
/// counted; compression, if any, comes after this.
fn poll_kind(
    kind: &mut Kind,
    sent: &mut u64,
    active: &mut Option<Active>,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    match kind {
        Kind::Upgraded(_) => Poll::Ready(None),
        Kind::Full(bytes) => {
            let frame = bytes.take();
            *sent += frame.as_ref().map_or(0, |b| b.len() as u64);
            Poll::Ready(frame.map(|b| Ok(Frame::data(b))))
        }
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
                *active = None;
            }
            Poll::Ready(frame)
        }
    }
}

impl Drop for Outbound {
    fn drop(&mut self) {
        if let Kind::Upstream { inner, exchange } = &mut self.kind {
            exchange.finish(inner.is_end_stream());
        }
        if let Some(mut pending) = self.access.take() {
            let bytes = match &self.kind {
                Kind::Full(_) => self.sent,
                Kind::Upstream { exchange, .. } | Kind::Upgraded(exchange) => {
                    exchange.describe(&mut pending.record);
                    exchange.bytes_out
                }
            };
            pending.finish(bytes);
        }
    }
}
