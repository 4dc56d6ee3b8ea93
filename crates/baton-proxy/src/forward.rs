//! The request path: check framing, route (holding the request while its app has no
//! ready backend, if the app asks for that), rewrite headers, send upstream with the
//! retries that are provably safe, and stream the answer back.
//!
//! The request path's steps are `fn … -> impl Future { async move { … } }`, not
//! `async fn`: an `async fn`'s future keeps room for each argument beside the local its
//! body moves it into (a request is 264 bytes), and these futures are made, moved into
//! one another and boxed once per request, so every byte of them is copied several
//! times per request.
//!
//! The memory a request touches is what its cost comes down to (between two polls of
//! its future the kernel's work has pushed most of it out of the CPU's caches), so:
//! - The request and the response are not moved from step to step where a borrow will
//!   do (`send` and `attempt_fast` borrow the head; `h1server::write_response` borrows the
//!   response), and a request's future is built in its allocation
//!   (`crate::boxed_future`). Where a response does move (a future's result is copied
//!   into its caller's), it is 120 bytes: `ResponseBody` is a pointer to its state, and
//!   an upstream connection is boxed once, when it is made.
//! - The polls on the request path keep small stack frames. A frame past a page is
//!   probed a page at a time (one store, usually a cache miss, per 4 KiB), and LLVM
//!   inlines callees' stack room into their caller's frame: a task spawned (its future
//!   is built on the stack), an encoder made, httparse's 100 field slots. Those
//!   functions are `#[inline(never)]` (`upgrade::spawn_tunnel`, `pool::spawn_conn_task`,
//!   `compress::apply`, `h1client::parse::take_head`), and a connection's rarer paths
//!   (TLS, HTTP/2, hyper's HTTP/1.1) are polled through a vtable (`crate::out_of_line`)
//!   so that the connection's own poll does not carry their room. Before: `forward`'s
//!   poll had a 55 KB frame (13 probes per poll), the connection's 19 KB and 15 KB;
//!   now all three are under 6 KB. `python3 bench/frames` lists the frames of a page
//!   or more.
//! - A request's future (`Handling`, boxed once per request) stays within the 1,032
//!   bytes glibc's per-thread cache serves; past it, its allocation and free take the
//!   allocator's general path (~550 instructions a request). It was 2,640 bytes; what
//!   keeps it at 960: the work before the first await runs before the future is made
//!   (`admit`) and the work after the last one in a plain poll (`Finish`), so no
//!   future holds the request beside the parts taken from it (a future keeps each
//!   captured variable for its whole life); a local that a closure borrows, or whose
//!   reference is taken, is kept across every await in its scope, so the locals that
//!   live through `h1client::send` are values, not borrowed (`attempt_fast`); the rare
//!   steps' futures (a connect, hyper's client, its request) are boxed where they
//!   start. `forward::size_tests` holds the limit; `RUSTC_BOOTSTRAP=1
//!   RUSTFLAGS=-Zprint-type-sizes cargo build --release -p baton-proxy` prints each
//!   future's layout.

// The steps above are written out as `impl Future` on purpose (the module's text says why).
#![allow(clippy::manual_async_fn)]

use crate::access_log::{AccessLog, AccessRecord, Pending};
use crate::backend::{Backend, InFlight};
use crate::body::{
    materialize, BodyLimits, BodyProgress, Exchange, Inbound, RequestBody, RequestBodyError,
    ResponseBody, UpstreamBody,
};
use crate::compress;
use crate::error::{error_response, ProxyError};
use crate::h1client::{self, SendError};
use crate::h1guard::{Active, ConnState};
use crate::headers::{self, Peer};
use crate::pool;
use crate::select::{self, choose_pool, pick_backend, Choice};
use crate::snapshot::{AppShared, CompiledApp, CompiledPool};
use crate::target;
use crate::upgrade;
use crate::Inner;
use http::request::Parts;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use hyper::body::Body as _;
use hyper::upgrade::OnUpgrade;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant, SystemTime};

/// What the handler knows about the client connection.
pub(crate) struct ClientConn {
    pub peer: Peer,
    pub state: Arc<ConnState>,
}

/// Where a request goes: the app as compiled in the snapshot it was routed with.
struct Target {
    app: Arc<CompiledApp>,
    choice: Choice,
}

impl Target {
    fn pool(&self) -> &CompiledPool {
        &self.app.pools[self.choice.pool]
    }
}

/// The outcome of one try on one backend. `R` is what a retry needs back: hyper's
/// client consumes the request (`Request<RequestBody>`); `h1client` only borrows its
/// head (`()`). Not boxed: the answer is the common case, and boxing it would allocate
/// once per request.
#[allow(clippy::large_enum_variant)]
enum Attempt<R> {
    /// hyper's client answered on this connection, kept for reuse when the body ends.
    Answered(Response<UpstreamBody>, Option<pool::Sender>),
    /// The request is back in hand and may be sent once more.
    Retry(R),
    /// A retry's connect failed too: nothing reached the version, the request is back
    /// in hand (`send` gives it to another version of the app, or answers 502).
    Unreachable(R),
    Failed(ProxyError),
}

/// What `send` sends: a head `h1client` borrows (a retry sends it as it is), or a
/// request hyper's client consumes (a retry gets it back, or a copy from `Replay`).
/// Made in `forward`'s frame and borrowed by `send`, never moved. The request is boxed
/// (only requests with a body or an upgrade go that way) so that the room `forward`'s
/// future keeps for it is a pointer's.
enum Outgoing<'a> {
    Fast(&'a Parts, &'a headers::Forwarding<'a>),
    Hyper(Box<(Option<Request<RequestBody>>, Option<Replay>)>),
}

impl Outgoing<'_> {
    /// The head to route the request by again (`Inner::reroute`; rare, so hyper's
    /// request gives a copy).
    fn routing_head(&self) -> std::borrow::Cow<'_, Parts> {
        match self {
            Outgoing::Fast(parts, _) => std::borrow::Cow::Borrowed(parts),
            Outgoing::Hyper(hyper) => {
                let mut head = Request::new(());
                if let Some(req) = &hyper.0 {
                    *head.method_mut() = req.method().clone();
                    *head.uri_mut() = req.uri().clone();
                    *head.headers_mut() = req.headers().clone();
                }
                std::borrow::Cow::Owned(head.into_parts().0)
            }
        }
    }
}

/// A request that passed `Inner::admit`: its head (rewritten for the upstream after
/// routing) and body, and what the steps after routing need to know of it.
struct Admitted {
    parts: Parts,
    body: RequestBody,
    progress: Option<Arc<BodyProgress>>,
    /// The client's side of an upgrade, while one may be granted.
    client_upgrade: Option<OnUpgrade>,
    upgrade: bool,
    has_body: bool,
    /// `request_buffering`: how much of the body is read before routing.
    read_ahead: Option<u64>,
}

/// The answer a request gets without being forwarded: the proxy's own, or a refusal.
type Early = Result<Response<ResponseBody>, ProxyError>;

pin_project_lite::pin_project! {
    /// A request's future (`Inner::handle`): forwarding, then the answer's last touches
    /// (`Finish`), which need no future of their own.
    struct Handling<'a, F> {
        #[pin]
        stage: Stage<F>,
        finish: Option<Finish<'a>>,
    }
}

pin_project_lite::pin_project! {
    #[project = StageProj]
    enum Stage<F> {
        Forwarding { #[pin] forwarding: F },
        Answered { answer: Option<Early> },
    }
}

impl<F> Future for Handling<'_, F>
where
    F: Future<Output = Early>,
{
    type Output = Response<ResponseBody>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response<ResponseBody>> {
        let this = self.project();
        let answer = match this.stage.project() {
            StageProj::Forwarding { forwarding } => Some(ready!(forwarding.poll(cx))),
            StageProj::Answered { answer } => answer.take(),
        };
        match (this.finish.take(), answer) {
            (Some(finish), Some(answer)) => Poll::Ready(finish.answer(answer)),
            // As an `async` block's future does.
            _ => panic!("a request's future was polled after it answered"),
        }
    }
}

/// What the answer to a request gets after it is known: compression, the connection's
/// and the access log's share, and the headers the listener adds.
struct Finish<'a> {
    inner: &'a Inner,
    conn: &'a ClientConn,
    active: Active,
    access: Option<Pending>,
    h1: bool,
    compression: Option<compress::Offer>,
}

impl Finish<'_> {
    fn answer(self, answer: Early) -> Response<ResponseBody> {
        let Finish {
            inner,
            conn,
            active,
            mut access,
            h1,
            compression,
        } = self;
        let mut res = match answer {
            Ok(res) => res,
            Err(error) => {
                tracing::debug!(
                    kind = error.kind(),
                    status = error.status().as_u16(),
                    "proxy answered with an error"
                );
                if let Some(p) = access.as_mut() {
                    (p.record.app, p.record.version) = error.app_version();
                }
                error_response(&error)
            }
        };
        if let Some(offer) = compression {
            materialize(&mut res);
            compress::apply(offer, &mut res);
        }
        res.body_mut().set_active(active);
        if let Some(mut pending) = access {
            pending.record.status = res.status().as_u16();
            res.body_mut().set_access(pending);
        }
        // Shutting down (an upgrade hands over, or baton stops): the client learns with
        // this answer that the connection ends, and sends its next request on a new one
        // (to the new process). Checked as late as possible, just before the head is
        // written; a response that just misses it leaves the connection open for the
        // next request (see `server.rs`, `Drain`). A 101 keeps its `Connection: upgrade`.
        if conn.peer.https {
            if let Some(hsts) = &inner.config.load().hsts {
                materialize(&mut res);
                res.headers_mut()
                    .entry(header::STRICT_TRANSPORT_SECURITY)
                    .or_insert_with(|| hsts.clone());
            }
        }
        if h1 && conn.state.draining() && res.status() != StatusCode::SWITCHING_PROTOCOLS {
            materialize(&mut res);
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        res
    }
}

/// The request's head as the upstream gets it, once routing chose `target` (whose
/// backend `guard` holds): only the upgrade the app allows, the hop-by-hop fields
/// gone, HTTP/1.1 form, a `Host`, a framing for a body of unknown length; and the
/// proxy's own fields (`Forwarding`). Starts the version's exchange, which counts the
/// latency from here (after any hold) to the body's end.
fn upstream_head<'h>(
    a: &mut Admitted,
    target: &Target,
    guard: InFlight,
    host: Option<&'h HeaderValue>,
    peer: &'h Peer,
) -> (Exchange, headers::Forwarding<'h>) {
    let headers = &mut a.parts.headers;
    if a.upgrade {
        match headers::allowed_upgrade(headers, &target.app.spec.upgrade_protocols) {
            Some(offer) => {
                headers.insert(header::UPGRADE, offer);
            }
            None => (a.upgrade, a.client_upgrade) = (false, None),
        }
    }
    headers::filter_underscores(headers, target.app.spec.underscores_in_headers);
    headers::canonical_length(headers);
    let mut exchange = Exchange::start(target.pool().metrics.clone(), Instant::now());
    let fallback_host = host
        .is_none()
        .then(|| HeaderValue::from_str(&guard.backend().addr.to_string()).ok())
        .flatten();
    exchange.set_in_flight(guard);
    headers::strip_hop_by_hop(headers, a.upgrade);
    let forwarding = headers::forwarding(headers, peer, host);
    headers::to_http11(&mut a.parts.version, &mut a.parts.uri, headers, host);
    if let Some(v) = fallback_host {
        headers.insert(header::HOST, v);
    }
    headers::frame_unknown_length(&a.parts.method, headers, a.has_body);
    exchange.set_bytes_in(a.progress.take());
    (exchange, forwarding)
}

/// The answer to a request whose body could not be read or was cut off.
fn body_error(e: RequestBodyError) -> ProxyError {
    match e {
        RequestBodyError::TooLarge { limit } => ProxyError::BodyTooLarge { limit },
        RequestBodyError::Stalled { timeout } => ProxyError::BodyTimeout { timeout },
        RequestBodyError::Client(error) => {
            tracing::debug!(%error, "request body could not be read");
            ProxyError::BadRequest("the request body could not be read")
        }
    }
}

enum Pick {
    Got(Target, InFlight),
    /// No pool with a ready backend takes this request.
    Unavailable(Arc<CompiledApp>),
    /// Every backend picked was removed by a publish racing this request.
    Stale(Arc<CompiledApp>),
}

impl Inner {
    /// Answers one request. An upstream's header fields read by `h1client` may still
    /// be outside the response's `HeaderMap` (see `body::materialize`): the HTTP/1.1
    /// fast path writes them as they are, every other caller materializes them.
    ///
    /// What runs before the first answer can be awaited runs here, before the future
    /// exists (`admit`), so the future holds the request's parts once, not also the
    /// request they came from.
    pub(crate) fn handle<'a>(
        &'a self,
        mut req: Request<Inbound>,
        conn: &'a ClientConn,
    ) -> impl Future<Output = Response<ResponseBody>> + 'a {
        let active = conn.state.begin();
        let access = self
            .access_log
            .get()
            .map(|log| access_start(log, &mut req, conn));
        let h1 = req.version() < http::Version::HTTP_2;
        let compression = {
            let cfg = self.config.load();
            compress::Offer::new(cfg.compression.as_ref(), req.method(), req.headers())
        };
        if !h1 {
            conn.state.note_h2();
        }
        let stage = match self.admit(req, conn) {
            Ok(admitted) => Stage::Forwarding {
                forwarding: self.forward(admitted, conn),
            },
            Err(answer) => Stage::Answered {
                answer: Some(answer),
            },
        };
        Handling {
            stage,
            finish: Some(Finish {
                inner: self,
                conn,
                active,
                access,
                h1,
                compression,
            }),
        }
    }

    /// What an HTTP listener answers itself when HTTPS is on: a pending ACME HTTP-01
    /// challenge, and a redirect to `https://` for everything else (a challenge token
    /// the ACME side does not know goes to the app, which may answer it itself).
    fn front_door(
        &self,
        req: &Request<Inbound>,
        conn: &ClientConn,
    ) -> Option<Response<ResponseBody>> {
        if conn.peer.https {
            return None;
        }
        let path = req.uri().path();
        if let Some(token) = path.strip_prefix(crate::tls::ACME_HTTP_PREFIX) {
            let answer = self.tls.acme()?.http01(token)?;
            let mut res = Response::new(ResponseBody::full(answer.into()));
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            return Some(res);
        }
        let port = self.config.load().https_redirect?;
        let host = headers::request_host(req.uri(), req.headers())?;
        let location = https_location(host.to_str().ok()?, port, req.uri())?;
        let mut res = Response::new(ResponseBody::full(bytes::Bytes::new()));
        *res.status_mut() = StatusCode::PERMANENT_REDIRECT;
        res.headers_mut().insert(header::LOCATION, location);
        Some(res)
    }

    /// The checks a request passes before it is routed, and its split into the head the
    /// proxy rewrites and the body it streams. `Err` is the answer the request gets
    /// instead: the proxy's own (a redirect, a challenge) or a refusal.
    fn admit(&self, mut req: Request<Inbound>, conn: &ClientConn) -> Result<Admitted, Early> {
        if let Some(why) = conn.state.next_request_is_bad() {
            return Err(Err(ProxyError::BadRequest(why)));
        }
        headers::check_framing(req.headers()).map_err(Err)?;
        if req.method() == Method::CONNECT {
            return Err(Err(ProxyError::MethodNotAllowed));
        }
        if let Some(res) = self.front_door(&req, conn) {
            return Err(Ok(res));
        }
        let (limits, read_ahead) = {
            let cfg = self.config.load();
            let limits = BodyLimits {
                max_bytes: cfg.max_request_body,
                read_timeout: cfg.body_read_timeout,
            };
            (limits, cfg.request_buffering)
        };
        if let Some(limit) = limits.max_bytes {
            // hyper knows a declared length (HTTP/1.1 Content-Length, HTTP/2
            // content-length) as the body's lower size bound.
            if req.body().size_hint().lower() > limit {
                return Err(Err(ProxyError::BodyTooLarge { limit }));
            }
        }
        let upgrade = headers::wants_upgrade(req.version(), req.method(), req.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        target::check(&mut parts).map_err(Err)?;
        let has_body = !body.is_end_stream();
        let (body, progress) = RequestBody::from_client(body, &limits, &self.metrics);
        Ok(Admitted {
            parts,
            body,
            progress,
            client_upgrade,
            upgrade,
            has_body,
            read_ahead,
        })
    }

    fn forward<'a>(
        &'a self,
        mut a: Admitted,
        conn: &'a ClientConn,
    ) -> impl Future<Output = Result<Response<ResponseBody>, ProxyError>> + 'a {
        async move {
            // Before routing: a slow body holds neither a backend connection nor an
            // in-flight slot (which would also hold up a drain) while it arrives.
            if let Some(ahead) = a.read_ahead {
                a.body.read_ahead(ahead).await.map_err(body_error)?;
            }
            let host = headers::request_host(&a.parts.uri, &a.parts.headers);
            let (mut target, guard) = self.route(&a.parts, host.as_ref()).await?;
            let (mut exchange, forwarding) =
                upstream_head(&mut a, &target, guard, host.as_ref(), &conn.peer);
            // `h1client` borrows the head, which stays here for a retry (and is not
            // moved from future to future); hyper's client consumes the request, so only
            // that path needs a copy of the head.
            let sent = if h1client::eligible(&a.parts.method, a.has_body, a.upgrade) {
                let sent = self
                    .send(
                        &mut Outgoing::Fast(&a.parts, &forwarding),
                        &mut target,
                        &mut exchange,
                        host.as_ref(),
                    )
                    .await;
                if sent.is_ok() {
                    // The head was sent and is not resent now: its map serves a later
                    // request on this thread.
                    headers::recycle(a.parts.headers);
                }
                sent
            } else {
                forwarding.insert_into(&mut a.parts.headers);
                let replay = Replay::capture(&a.parts, a.has_body, a.upgrade);
                let upstream_req = Request::from_parts(a.parts, a.body);
                let mut outgoing = Outgoing::Hyper(Box::new((Some(upstream_req), replay)));
                self.send(&mut outgoing, &mut target, &mut exchange, host.as_ref())
                    .await
            };
            match sent {
                Ok(resp) => self.respond(resp, &target, exchange, a.client_upgrade),
                Err(error) => {
                    // A body cut off at the limit or stalled fails the upstream request;
                    // say why.
                    let error = exchange.body_cut_off().map_or(error, body_error);
                    exchange.status = error.status().as_u16();
                    Err(error)
                }
            }
        }
    }

    /// Route against the current snapshot; hold while the app has nothing ready.
    async fn route(
        &self,
        parts: &Parts,
        host: Option<&HeaderValue>,
    ) -> Result<(Target, InFlight), ProxyError> {
        let host = host.and_then(|h| h.to_str().ok()).unwrap_or("");
        let mut ticket: Option<(HoldTicket, tokio::time::Instant)> = None;
        let mut stale = 0;
        loop {
            let generation = self.generation.load(SeqCst);
            let app = match self.pick(host, parts)? {
                Pick::Got(target, guard) => return Ok((target, guard)),
                Pick::Stale(_) if stale < 4 => {
                    stale += 1;
                    continue;
                }
                Pick::Stale(app) | Pick::Unavailable(app) => app,
            };
            let Some(hold) = app.hold else {
                return Err(unavailable(&app));
            };
            let notified = self.published.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.generation.load(SeqCst) != generation {
                continue; // published meanwhile
            }
            if ticket.is_none() {
                let t = HoldTicket::take(&app.shared, hold.max_requests).ok_or_else(|| {
                    ProxyError::HoldFull {
                        app: app.name.clone(),
                    }
                })?;
                ticket = Some((t, tokio::time::Instant::now() + hold.timeout.get()));
                tracing::debug!(app = %app.name, "holding request until a backend is ready");
            }
            let deadline = ticket
                .as_ref()
                .map_or_else(tokio::time::Instant::now, |t| t.1);
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(ProxyError::HoldTimeout { app: app.name.clone() });
                }
            }
        }
    }

    /// One routing decision against the current snapshot, read through a short-lived
    /// guard (no reference count traffic on the snapshot itself).
    fn pick(&self, host: &str, parts: &Parts) -> Result<Pick, ProxyError> {
        let snapshot = self.snapshot.load();
        let app = snapshot
            .route(host, parts.uri.path())
            .ok_or(ProxyError::NoRoute)?;
        let Some(choice) = choose_pool(app, parts) else {
            return Ok(Pick::Unavailable(app.clone()));
        };
        let pool = &app.pools[choice.pool];
        // A racing publish may remove the backend between the pick and the count.
        for _ in 0..2 {
            let Some(backend) = pick_backend(&pool.backends, None) else {
                break;
            };
            if let Some(guard) = backend.try_acquire() {
                let target = Target {
                    app: app.clone(),
                    choice,
                };
                return Ok(Pick::Got(target, guard));
            }
        }
        Ok(Pick::Stale(app.clone()))
    }

    /// Send with at most one retry, and only when the upstream provably did not
    /// process the request (or the method is idempotent and nothing was answered).
    /// `outgoing` is borrowed: a head `h1client` sends stays where `forward` has it.
    /// A request whose backend was found dead, with no other backend of its version to
    /// go to, is routed again (`reroute`); one whose retry's connect failed as well goes
    /// to another version of the app (`other_version`). Either once (`target` and
    /// `exchange` then change).
    fn send<'a>(
        &'a self,
        outgoing: &'a mut Outgoing<'a>,
        target: &'a mut Target,
        exchange: &'a mut Exchange,
        host: Option<&'a HeaderValue>,
    ) -> impl Future<Output = Result<Response<UpstreamBody>, ProxyError>> + 'a {
        async move {
            let mut retried = false;
            let mut rerouted = false;
            // One clock reading for the first try's steps (an exchange starts just
            // before it is sent): the upstream time's start, the pool's idle check,
            // the response head's deadline. A retry reads the clock again.
            let mut sent = exchange.started();
            loop {
                let Some(backend) = exchange.in_flight().map(|g| g.backend().clone()) else {
                    return Err(upstream_error(target));
                };
                // A block: what a try returned is not kept beside a reroute's future.
                {
                    let attempt = match outgoing {
                        Outgoing::Fast(parts, forwarding) => {
                            self.attempt_fast(&backend, parts, forwarding, retried, sent, target)
                                .await
                        }
                        Outgoing::Hyper(hyper) => {
                            let (req, replay) = &mut **hyper;
                            let Some(r) = req.take() else {
                                return Err(upstream_error(target));
                            };
                            // Out of line: `send`'s future keeps no room for hyper's.
                            let attempt = crate::out_of_line(|| {
                                self.attempt(&backend, r, replay, retried, target)
                            });
                            match attempt.await {
                                Attempt::Answered(resp, sender) => Attempt::Answered(resp, sender),
                                Attempt::Failed(error) => Attempt::Failed(error),
                                Attempt::Retry(again) => {
                                    *req = Some(again);
                                    Attempt::Retry(())
                                }
                                Attempt::Unreachable(again) => {
                                    *req = Some(again);
                                    Attempt::Unreachable(())
                                }
                            }
                        }
                    };
                    match attempt {
                        Attempt::Answered(resp, sender) => {
                            exchange.upstream_time = Some(sent.elapsed());
                            if let Some(sender) = sender {
                                exchange.set_conn(sender);
                            }
                            return Ok(resp);
                        }
                        Attempt::Failed(error) => return Err(error),
                        Attempt::Retry(()) => {}
                        Attempt::Unreachable(()) => {
                            // Its version's backends refuse connections (an instance that
                            // exited): another version of the app takes the request, once.
                            let other = (!rerouted)
                                .then(|| self.other_version(outgoing, host, target))
                                .flatten();
                            let Some((again, guard)) = other else {
                                return Err(ProxyError::Connect {
                                    app: target.app.name.clone(),
                                    version: target.pool().version.clone(),
                                });
                            };
                            tracing::warn!(app = %target.app.name, from = %target.pool().version, to = %again.pool().version, "no backend of the version accepted a connection; the request goes to another version");
                            rerouted = true;
                            *target = again;
                            exchange.restart(target.pool().metrics.clone(), guard);
                            sent = exchange.started();
                            retried = false;
                            continue;
                        }
                    }
                }
                retried = true;
                move_to_other(exchange, target.pool());
                // Found dead, and its version has no other backend that is not: the
                // route table without it is published moments later, and routes the
                // request to another version (a canary found dead goes back to stable).
                // Not so past a drain deadline (no backend left here): what runs then
                // is cancelled, not sent elsewhere.
                if !rerouted && exchange.in_flight().is_some_and(|g| g.backend().is_dead()) {
                    rerouted = true;
                    // Out of line: the request's future keeps no room for a rare step.
                    let rerouted_to = crate::out_of_line(|| self.reroute(outgoing, host, sent));
                    let Some((again, guard)) = rerouted_to.await else {
                        tracing::warn!(app = %target.app.name, "no backend to send the request to after its backend was found dead");
                        return Err(upstream_error(target));
                    };
                    *target = again;
                    exchange.restart(target.pool().metrics.clone(), guard);
                    sent = exchange.started();
                    retried = false;
                }
            }
        }
    }

    /// Routes a request again (`send`): against the current table, else each one
    /// published until the response head's deadline (counted from `sent`), never to a
    /// backend found dead. None at the deadline or when the app is no longer routed.
    fn reroute<'a>(
        &'a self,
        outgoing: &'a Outgoing<'a>,
        host: Option<&'a HeaderValue>,
        sent: Instant,
    ) -> impl Future<Output = Option<(Target, InFlight)>> + 'a {
        async move {
            let (_, header_timeout, _) = self.upstream_timeouts();
            let deadline = tokio::time::Instant::from_std(sent + header_timeout);
            let head = outgoing.routing_head();
            let host = host.and_then(|h| h.to_str().ok()).unwrap_or("");
            loop {
                let notified = self.published.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                // A pool may still hold the dead backend beside live ones: a few picks.
                for _ in 0..4 {
                    match self.pick(host, &head) {
                        Ok(Pick::Got(target, guard)) if !guard.backend().is_dead() => {
                            return Some((target, guard));
                        }
                        Ok(_) => {}
                        Err(_) => return None,
                    }
                }
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep_until(deadline) => return None,
                }
            }
        }
    }

    /// Another version of the request's app, in the current table, for a request no
    /// backend of `target`'s version accepted (`select::other_pool`). None when the app
    /// has no other version with a backend to take it.
    fn other_version(
        &self,
        outgoing: &Outgoing<'_>,
        host: Option<&HeaderValue>,
        target: &Target,
    ) -> Option<(Target, InFlight)> {
        let head = outgoing.routing_head();
        let host = host.and_then(|h| h.to_str().ok()).unwrap_or("");
        let snapshot = self.snapshot.load();
        let app = snapshot.route(host, head.uri.path())?;
        let choice = select::other_pool(app, &target.pool().version, &mut fastrand::Rng::new())?;
        let guard = pick_backend(&app.pools[choice.pool].backends, None)?.try_acquire()?;
        let target = Target {
            app: app.clone(),
            choice,
        };
        Some((target, guard))
    }

    /// A failure of `backend` that counts toward ejecting it (passive health checks).
    fn fail(&self, backend: &Arc<Backend>, target: &Target, reason: &str) {
        self.passive
            .failure(backend, &target.pool().backends, reason);
    }

    /// Connect, response-head and pooled-connection idle timeouts, as configured now.
    fn upstream_timeouts(&self) -> (Duration, Duration, Duration) {
        let cfg = self.config.load();
        (
            cfg.connect_timeout,
            cfg.upstream_header_timeout,
            cfg.upstream_idle_timeout,
        )
    }

    /// One try on one backend: a pooled connection (fresh on a retry), the request,
    /// and the response head within the timeout.
    fn attempt<'a>(
        &'a self,
        backend: &'a Arc<Backend>,
        req: Request<RequestBody>,
        replay: &'a mut Option<Replay>,
        retried: bool,
        target: &'a Target,
    ) -> impl Future<Output = Attempt<Request<RequestBody>>> + 'a {
        async move {
            let pool = target.pool();
            let (connect_timeout, header_timeout, idle_timeout) = self.upstream_timeouts();
            let pooled = if retried {
                None
            } else {
                backend.idle.checkout(idle_timeout)
            };
            let reused = pooled.is_some();
            let mut sender = match pooled {
                Some(s) => s,
                None => match pool::connect(backend, connect_timeout).await {
                    Ok(s) => s,
                    Err(error) => {
                        tracing::warn!(backend = %backend.id, %error, retried, "upstream connect failed");
                        self.fail(backend, target, "connect failed");
                        return connect_failed(req, retried);
                    }
                },
            };
            // A request that can be sent again lets `Backend::abandon` end its wait.
            let can_resend = replay.is_some() && !retried;
            if let Some(w) = sender.watched().filter(|_| can_resend) {
                // On a backend found dead the wait ends at once, and the request,
                // on a socket shut down, goes elsewhere (below).
                let _ = backend.wait(w);
            }
            let outcome = tokio::time::timeout(header_timeout, sender.try_send_request(req)).await;
            if can_resend && sender.watched().is_some_and(|w| !w.answered()) {
                tracing::warn!(backend = %backend.id, "backend found dead while waiting for its response head; sending the request to another");
                return match replay.take() {
                    Some(r) => Attempt::Retry(r.into_request()),
                    None => Attempt::Failed(upstream_error(target)),
                };
            }
            let mut failed = match outcome {
                Ok(Ok(resp)) => {
                    if resp.status().is_server_error() {
                        self.fail(backend, target, "5xx response");
                    } else {
                        self.passive.success(backend);
                    }
                    return Attempt::Answered(resp.map(UpstreamBody::Hyper), Some(sender));
                }
                Ok(Err(failed)) => failed,
                Err(_) => {
                    tracing::warn!(backend = %backend.id, "upstream response header timeout");
                    self.fail(backend, target, "response header timeout");
                    return Attempt::Failed(ProxyError::UpstreamTimeout {
                        app: target.app.name.clone(),
                        version: pool.version.clone(),
                    });
                }
            };
            if let Some(unsent) = failed.take_message().filter(|_| !retried) {
                // The connection closed before the request was written: nothing was sent.
                tracing::debug!(backend = %backend.id, reused, "upstream connection closed before the request was written; retrying");
                if !reused {
                    self.fail(backend, target, "connection closed");
                }
                return Attempt::Retry(unsent);
            }
            let error = failed.into_error();
            if !error.is_user() {
                self.fail(backend, target, "upstream error");
            }
            match replay.take().filter(|_| !retried) {
                Some(r) => {
                    tracing::debug!(backend = %backend.id, %error, "idempotent request failed before any answer; retrying");
                    Attempt::Retry(r.into_request())
                }
                None => {
                    tracing::warn!(backend = %backend.id, %error, "upstream request failed");
                    Attempt::Failed(upstream_error(target))
                }
            }
        }
    }

    /// One try of a request without a body on `h1client`: the exchange runs in this
    /// task. `GET` and `HEAD` may be sent again whatever went wrong before the response
    /// head, so every failure but the second is a retry.
    fn attempt_fast<'a>(
        &'a self,
        backend: &'a Arc<Backend>,
        parts: &'a Parts,
        forwarding: &'a headers::Forwarding<'a>,
        retried: bool,
        now: Instant,
        target: &'a Target,
    ) -> impl Future<Output = Attempt<()>> + 'a {
        async move {
            // Nothing here is borrowed across an await that need not be: the future
            // keeps room for what is.
            let (connect_timeout, header_timeout, idle_timeout) = self.upstream_timeouts();
            let (conn, reused) = match (!retried)
                .then(move || backend.idle.checkout_conn(backend, idle_timeout, now))
                .flatten()
            {
                Some(c) => (c, true),
                // Out of line: a pooled connection's request keeps no room for a connect.
                None => match crate::out_of_line(move || {
                    h1client::Conn::connect(backend, connect_timeout)
                })
                .await
                {
                    Ok(c) => (c, false),
                    Err(error) => {
                        tracing::warn!(backend = %backend.id, %error, retried, "upstream connect failed");
                        self.fail(backend, target, "connect failed");
                        return connect_failed((), retried);
                    }
                },
            };
            // The response head's deadline counts from the request's clock reading
            // (`now`, also the pool's idle check), or from a new connection's connect
            // (always so on a retry, which takes no pooled connection).
            let sent = if reused { now } else { Instant::now() };
            let outcome = h1client::send(
                conn,
                reused,
                parts,
                forwarding,
                backend.clone(),
                tokio::time::Instant::from_std(sent + header_timeout),
            )
            .await;
            let error = match outcome {
                Ok(resp) => {
                    if resp.status().is_server_error() {
                        self.fail(backend, target, "5xx response");
                    } else {
                        self.passive.success(backend);
                    }
                    return Attempt::Answered(resp.map(UpstreamBody::Fast), None);
                }
                Err(SendError::HeaderTimeout) => {
                    tracing::warn!(backend = %backend.id, "upstream response header timeout");
                    self.fail(backend, target, "response header timeout");
                    return Attempt::Failed(ProxyError::UpstreamTimeout {
                        app: target.app.name.clone(),
                        version: target.pool().version.clone(),
                    });
                }
                Err(error) => error,
            };
            if matches!(error, SendError::Abandoned) && !retried {
                tracing::warn!(backend = %backend.id, "backend found dead while waiting for its response head; sending the request to another");
                return Attempt::Retry(());
            }
            // A pooled connection the upstream closed meanwhile says nothing about the
            // backend's health.
            let stale = reused && matches!(error, SendError::Unsent(_) | SendError::Closed);
            if !stale {
                self.fail(backend, target, "upstream error");
            }
            if retried {
                tracing::warn!(backend = %backend.id, %error, "upstream request failed");
                return Attempt::Failed(upstream_error(target));
            }
            tracing::debug!(backend = %backend.id, %error, reused, "request without a body failed before any answer; retrying");
            Attempt::Retry(())
        }
    }

    fn respond(
        &self,
        mut resp: Response<UpstreamBody>,
        target: &Target,
        mut exchange: Exchange,
        client_upgrade: Option<OnUpgrade>,
    ) -> Result<Response<ResponseBody>, ProxyError> {
        exchange.status = resp.status().as_u16();
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some(client) = client_upgrade else {
                return Err(upstream_error(target));
            };
            let upstream = hyper::upgrade::on(&mut resp);
            let guard = exchange.take_in_flight();
            exchange.finish(false);
            let (mut parts, _) = resp.into_parts();
            headers::strip_hop_by_hop(&mut parts.headers, true);
            if let Some(guard) = guard {
                let websocket = upgrade::is_websocket(&parts.headers);
                upgrade::spawn_tunnel(client, upstream, guard, self.hard_stop.clone(), websocket);
            }
            return Ok(Response::from_parts(
                parts,
                ResponseBody::upgraded(exchange),
            ));
        }
        let (mut parts, mut body) = resp.into_parts();
        match &mut body {
            UpstreamBody::Fast(fast) => fast.strip_hop_by_hop(&mut parts.headers),
            UpstreamBody::Hyper(_) => headers::strip_hop_by_hop(&mut parts.headers, false),
        }
        let mut res = Response::from_parts(parts, ResponseBody::upstream(body, exchange));
        if target.choice.set_cookie {
            if let Some(cookie) = &target.pool().set_cookie {
                materialize(&mut res);
                res.headers_mut().append(header::SET_COOKIE, cookie.clone());
            }
        }
        Ok(res)
    }
}

/// The access log record of a request, started when it arrives. A request without
/// `X-Request-Id` gets one here, so the log and the instance see the same id.
fn access_start(log: &AccessLog, req: &mut Request<Inbound>, conn: &ClientConn) -> Pending {
    let started = Instant::now();
    let request_id = match req.headers().get(&headers::X_REQUEST_ID) {
        Some(id) => id.clone(),
        None => {
            let id = headers::request_id();
            req.headers_mut()
                .insert(headers::X_REQUEST_ID.clone(), id.clone());
            id
        }
    };
    let h = req.headers();
    let record = AccessRecord {
        time: SystemTime::now(),
        client: conn.peer.ip.clone(),
        host: headers::request_host(req.uri(), h),
        method: req.method().clone(),
        target: req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string(),
        protocol: req.version(),
        status: 0,
        bytes: 0,
        duration: Duration::ZERO,
        upstream: None,
        app: None,
        version: None,
        instance: None,
        request_id: Some(request_id),
        referer: h.get(header::REFERER).cloned(),
        user_agent: h.get(header::USER_AGENT).cloned(),
    };
    Pending {
        record: Box::new(record),
        started,
        log: log.clone(),
    }
}

fn unavailable(app: &CompiledApp) -> ProxyError {
    if app.pools.iter().any(CompiledPool::has_backends) {
        ProxyError::NoVersion {
            app: app.name.clone(),
        }
    } else {
        ProxyError::NoBackend {
            app: app.name.clone(),
        }
    }
}

/// A failed connect: nothing reached the upstream, so the first one is retried on
/// another connection (or backend of the version), the second is `Unreachable`.
fn connect_failed<R>(req: R, retried: bool) -> Attempt<R> {
    if retried {
        Attempt::Unreachable(req)
    } else {
        Attempt::Retry(req)
    }
}

fn upstream_error(target: &Target) -> ProxyError {
    ProxyError::Upstream {
        app: target.app.name.clone(),
        version: target.pool().version.clone(),
    }
}

/// Move the exchange to another backend of the same pool, or keep the same one when
/// it is the only one left and its drain deadline has not passed (then the exchange is
/// left without a backend and fails).
fn move_to_other(exchange: &mut Exchange, pool: &CompiledPool) {
    let Some(current) = exchange.take_in_flight() else {
        return;
    };
    let next = pick_backend(&pool.backends, Some(current.backend()))
        .and_then(Backend::try_acquire)
        .or_else(|| {
            let same = current.backend();
            (!same.is_closed()).then(|| same.acquire_anyway())
        });
    if let Some(next) = next {
        exchange.set_in_flight(next);
    }
}

/// The head of an idempotent request without a body, kept to resend it once.
struct Replay {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl Replay {
    fn capture(parts: &Parts, has_body: bool, upgrade: bool) -> Option<Replay> {
        let idempotent = matches!(
            parts.method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::PUT
                | Method::DELETE
                | Method::TRACE
        );
        (idempotent && !upgrade && !has_body).then(|| Replay {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
        })
    }

    fn into_request(self) -> Request<RequestBody> {
        let mut req = Request::new(RequestBody::Empty);
        *req.method_mut() = self.method;
        *req.uri_mut() = self.uri;
        *req.headers_mut() = self.headers;
        req
    }
}

/// A place in an app's hold queue; released on drop.
struct HoldTicket(Arc<AppShared>);

impl HoldTicket {
    fn take(shared: &Arc<AppShared>, max: usize) -> Option<HoldTicket> {
        if shared.held.fetch_add(1, SeqCst) >= max {
            shared.held.fetch_sub(1, SeqCst);
            return None;
        }
        Some(HoldTicket(shared.clone()))
    }
}

impl Drop for HoldTicket {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, SeqCst);
    }
}

/// `https://HOST[:PORT]/path?query` for a request that came in the clear; `None` for a
/// host that is not a plain name or address (the request is then served, and fails
/// the usual Host checks).
fn https_location(host: &str, port: u16, uri: &Uri) -> Option<HeaderValue> {
    let name = match host.strip_prefix('[') {
        Some(v6) => format!("[{}]", v6.split(']').next()?),
        None => host.split(':').next()?.to_string(),
    };
    if name.is_empty()
        || name
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b == b'/' || b == b'@')
    {
        return None;
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let path = if path.starts_with('/') { path } else { "/" };
    let location = if port == 443 {
        format!("https://{name}{path}")
    } else {
        format!("https://{name}:{port}{path}")
    };
    HeaderValue::from_str(&location).ok()
}

#[cfg(test)]
mod https_tests {
    use super::https_location;

    #[test]
    fn redirects_keep_host_path_and_query_and_name_the_tls_port() {
        let uri = "/a/b?c=d".parse().unwrap();
        let at =
            |host, port| https_location(host, port, &uri).map(|v| v.to_str().unwrap().to_string());
        assert_eq!(
            at("example.com", 443).unwrap(),
            "https://example.com/a/b?c=d"
        );
        assert_eq!(
            at("example.com:80", 8443).unwrap(),
            "https://example.com:8443/a/b?c=d"
        );
        assert_eq!(at("[::1]:8080", 443).unwrap(), "https://[::1]/a/b?c=d");
        assert_eq!(at("evil.com/x", 443), None);
        assert_eq!(at("a@b", 443), None);
        assert_eq!(at("", 443), None);
    }
}

#[cfg(test)]
mod size_tests {
    use super::ClientConn;
    use crate::body::Inbound;
    use crate::h1guard::ConnState;
    use crate::headers::Peer;
    use http::{HeaderValue, Request};
    use std::sync::Arc;

    /// glibc serves allocations up to this size from a thread's own cache; a larger
    /// one takes its locked general path (~550 instructions for the pair).
    const THREAD_CACHE_MAX: usize = 1032;

    #[test]
    fn a_request_future_fits_the_allocators_thread_cache() {
        let metrics = Arc::new(baton_metrics::MetricsRegistry::new());
        let proxy = crate::Proxy::new(crate::ProxyConfig::default(), metrics);
        let conn = ClientConn {
            peer: Peer {
                ip: HeaderValue::from_static("127.0.0.1"),
                trusted: false,
                https: false,
            },
            state: Arc::new(ConnState::new()),
        };
        let req = Request::get("/").body(Inbound::Empty).unwrap();
        let handling = proxy.inner.handle(req, &conn);
        let size = std::mem::size_of_val(&handling);
        assert!(
            size <= THREAD_CACHE_MAX,
            "a request's future is {size} bytes, over the {THREAD_CACHE_MAX} glibc's \
             thread cache serves: print its layout with `RUSTC_BOOTSTRAP=1 \
             RUSTFLAGS=-Zprint-type-sizes cargo build --release -p baton-proxy` and see \
             what `forward.rs` says about keeping it small"
        );
    }
}
