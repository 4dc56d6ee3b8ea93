//! Accepting client connections: HTTP/1.1 and h2c on one port, a per-connection
//! watchdog for the slow-header and idle timeouts, and graceful shutdown.
//!
//! hyper's own `header_read_timeout` is not used: in hyper 1.x its timer also runs
//! while an HTTP/1.1 keep-alive connection waits for its next request, so it would
//! close idle connections after the header timeout (and it closes without a 408).
//! The watchdog here times only heads that have started to arrive; a slow head gets
//! `408 Request Timeout` written straight to the socket and the connection closed, or,
//! if the head was pipelined behind a response still in progress, the connection
//! closed after that response. Idle means no request in progress and no bytes from
//! the client.
//!
//! HTTP/2 is served by `h2server`, which sets its limits (CVE-2023-44487 rapid reset,
//! CVE-2024-27316-class CONTINUATION floods) explicitly; docs/SECURITY.md lists them.

use crate::body::{BoxError, Inbound};
use crate::conn::{Graceful, Rewind, TrackedIo};
use crate::cores;
use crate::forward::ClientConn;
use crate::h1guard::{ConnState, MAX_HEADERS};
use crate::h1server::{self, Outcome};
use crate::h2server;
use crate::headers::Peer;
use crate::socket::{self, Socket};
use crate::tls::{self, Handshake};
use crate::{Inner, ProxyConfig};
use bytes::BytesMut;
use http::HeaderValue;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering::{Acquire, Release, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long open connections may take to finish after the shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// hyper refuses a read buffer smaller than this.
const MIN_BUF: usize = 8192;
/// What a request head longer than `max_header_bytes` gets before its connection is
/// closed.
const HEADERS_TOO_LARGE: &[u8] =
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
/// What a too-slow request head gets before its connection is closed.
const REQUEST_TIMEOUT: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// HTTP/1.1 and h2c (prior knowledge) in the clear.
    Http,
    /// TLS first (`Tls`'s certificates), then HTTP/1.1 or h2 as ALPN says.
    Https,
}

pub(crate) async fn serve(
    inner: Arc<Inner>,
    listener: TcpListener,
    scheme: Scheme,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let stop = CancellationToken::new();
    let stopping = Arc::new(AtomicBool::new(false));
    let tracker = TaskTracker::new();
    let workers = cores::workers();
    if workers.is_empty() {
        let accepting = accept(
            inner.clone(),
            listener.into_std()?,
            scheme,
            Stop::for_worker(&stop, &stopping),
            tracker.clone(),
            None,
        );
        tokio::select! {
            _ = shutdown => {}
            _ = accepting => {}
            _ = sweep(inner.clone()) => {}
        }
    } else {
        // One duplicate of the listening socket per worker: each worker's runtime
        // waits on it, and what a worker accepts it serves.
        // All duplicates are made before any worker starts, so a failure (out of file
        // descriptors) leaves no worker accepting.
        let listener = listener.into_std()?;
        let owns = workers
            .iter()
            .map(|_| listener.try_clone())
            .collect::<std::io::Result<Vec<_>>>()?;
        drop(listener);
        let stop_accepting = CancellationToken::new();
        let spread = Arc::new(Spread::new(workers.len()));
        let mut loops = Vec::with_capacity(workers.len());
        for (index, (worker, own)) in workers.iter().zip(owns).enumerate() {
            let (inner, tracker) = (inner.clone(), tracker.clone());
            let stop = Stop::for_worker(&stop, &stopping);
            let until = stop_accepting.clone();
            let spread = Some((spread.clone(), index));
            loops.push(worker.spawn(async move {
                tokio::select! {
                    _ = until.cancelled() => {}
                    _ = accept(inner, own, scheme, stop, tracker, spread) => {}
                }
            }));
        }
        tokio::select! {
            _ = shutdown => {}
            _ = sweep(inner.clone()) => {}
        }
        stop_accepting.cancel();
        for accepting in loops {
            let _ = accepting.await;
        }
    }
    tracing::info!(
        connections = tracker.len(),
        "proxy stops accepting; finishing open connections"
    );
    stopping.store(true, Release);
    stop.cancel();
    tracker.close();
    let finished = tokio::time::timeout(SHUTDOWN_GRACE, async {
        tracker.wait().await;
        // The last answers may still be in the workers' batches, or being written out
        // for connections that closed behind them.
        crate::batch::settle(cores::workers()).await;
    });
    if finished.await.is_err() {
        tracing::warn!(
            connections = tracker.len(),
            "shutdown grace period over; dropping connections"
        );
    }
    inner.hard_stop.cancel();
    Ok(())
}

/// How often idle upstream connections are looked at for those to close.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Closes idle upstream connections as they outlive `upstream_idle_timeout`, also when
/// no request comes to take them (`Inner::expire_idle_upstreams`); runs until dropped.
async fn sweep(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        inner.expire_idle_upstreams();
    }
}

/// Sets TCP_NODELAY on the listening socket; true when the connections it accepts then
/// have it without being set one by one (Linux copies the listener's option to each).
fn nodelay_inherited(listener: &std::net::TcpListener) -> bool {
    let set = nix::sys::socket::setsockopt(listener, nix::sys::socket::sockopt::TcpNoDelay, &true);
    if let Err(error) = set {
        tracing::debug!(%error, "TCP_NODELAY on a listener: set on each connection instead");
        return false;
    }
    cfg!(target_os = "linux")
}

/// Turns TCP_QUICKACK off on the listening socket, so the connections it accepts start
/// in delayed-ACK mode (Linux copies the listener's mode to each): the first request's
/// ACK then leaves with the response instead of in a segment of its own right after
/// the request is read. A new connection starts in quick-ACK mode otherwise, and one
/// that carries a single request (`Connection: close`) never leaves it. Large request
/// bodies are still ACKed every second full segment; an answer slower than the
/// delayed-ACK timer (40 ms and more) gets its ACK from the timer, which also ends
/// delayed-ACK mode for that connection. Returns whether the option was set.
fn delayed_first_ack(listener: &std::net::TcpListener) -> bool {
    match socket2::SockRef::from(listener).set_tcp_quickack(false) {
        Ok(()) => true,
        Err(error) => {
            tracing::debug!(%error, "TCP_QUICKACK off on a listener");
            false
        }
    }
}

/// The proxy's graceful stop as one worker's connections see it. Each connection
/// registers once for the token's wake-up, and from then on looks at the flag when it
/// wakes for anything else: looking at a `CancellationToken`, or polling a wait for it,
/// takes the mutex of its node, and the connections of every worker would take that of
/// the proxy's one token twice a request (measured: ~300 instructions a keep-alive
/// request, and a cache line moving between cores with two workers).
struct Stop {
    /// A child of the proxy's token, one per worker: cancelled with it.
    token: CancellationToken,
    /// Set just before the proxy's token is cancelled.
    stopping: Arc<AtomicBool>,
}

impl Stop {
    fn for_worker(stop: &CancellationToken, stopping: &Arc<AtomicBool>) -> Arc<Stop> {
        Arc::new(Stop {
            token: stop.child_token(),
            stopping: stopping.clone(),
        })
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Acquire)
    }
}

/// Accepts on `listener` and serves each connection in a task of the calling runtime
/// (tracked by `tracker`; `stop` is their graceful close); runs until dropped.
/// `spread`: the workers accepting on the same socket, and which one this is.
async fn accept(
    inner: Arc<Inner>,
    listener: std::net::TcpListener,
    scheme: Scheme,
    stop: Arc<Stop>,
    tracker: TaskTracker,
    spread: Option<(Arc<Spread>, usize)>,
) {
    // Rebuilt when the settings change (`Proxy::set_config`): a connection is served
    // with the settings in force when it was accepted.
    let mut config = inner.config.load_full();
    let mut builder = Arc::new(builder(&config));
    // Linux gives an accepted socket the listening socket's TCP_NODELAY: set once here,
    // it saves a `setsockopt` per connection. Each accepted socket is set on its own
    // only where the listener's could not be (never seen; kept for other kernels).
    let inherited = nodelay_inherited(&listener);
    delayed_first_ack(&listener);
    socket::deferred_accept(&listener);
    // Accepted sockets stay out of the reactor until they have to wait (`socket.rs`).
    let listener = match socket::listening(listener) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, "a proxy worker cannot accept on a listener");
            return;
        }
    };
    // Until when a worker that let a connection wait for nothing takes every one.
    let mut alone_until = Instant::now();
    let boxes = crate::BoxPool::new(KEEP_CONN_BOXES);
    // The worker's timer wheel always holds the connections' next watchdog check while
    // it accepts. A connection's timer put in a wheel that was empty when the runtime
    // last went to sleep (nothing else open) wakes the runtime's driver to re-arm, a
    // write to its eventfd and one more event to collect: with a connection per
    // request that was half a system call a connection. Joining a deadline already
    // there costs nothing.
    let keeper = tokio::time::sleep_until(Watchdog::boundary(Watchdog::period(&config)));
    tokio::pin!(keeper);
    let mut keeper_armed = false;
    loop {
        if let Some((spread, me)) = &spread {
            if Instant::now() >= alone_until && !spread.make_way(*me, MAKE_WAY).await {
                alone_until = Instant::now() + ALONE;
            }
        }
        let accepted = tokio::select! {
            // The keeper first: it must be polled once to be in the wheel, and after
            // that a poll is a load until it fires.
            biased;
            _ = std::future::poll_fn(|cx| poll_tick(keeper.as_mut(), &mut keeper_armed, cx)) => {
                keeper.as_mut().reset(Watchdog::boundary(Watchdog::period(&config)));
                keeper_armed = false;
                continue;
            }
            accepted = socket::accept(&listener) => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let serving = spread.as_ref().map(|(spread, me)| spread.serving(*me));
                if !inherited {
                    let _ = stream.sock_ref().set_tcp_nodelay(true);
                }
                let now = inner.config.load_full();
                if !Arc::ptr_eq(&now, &config) {
                    builder = Arc::new(self::builder(&now));
                    if Watchdog::period(&now) != Watchdog::period(&config) {
                        keeper
                            .as_mut()
                            .reset(Watchdog::boundary(Watchdog::period(&now)));
                        keeper_armed = false;
                    }
                    config = now;
                }
                let served = Served {
                    config: config.clone(),
                    builder: builder.clone(),
                };
                // Boxed where it is made: spawning moves the future into its task
                // several times, and it is kilobytes. In a box an earlier connection
                // used, when there is one.
                let conn = boxes.boxed(|| {
                    serve_conn(
                        inner.clone(),
                        served,
                        stream,
                        peer,
                        scheme,
                        stop.clone(),
                        serving,
                    )
                });
                tracker.spawn(conn);
            }
            Err(error) => {
                // Usually out of file descriptors: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// How many boxes of finished connections' futures a listener keeps per worker for the
/// next connections (2 KiB each).
const KEEP_CONN_BOXES: usize = 64;

/// How long a worker serving more connections than another leaves the next one to it.
const MAKE_WAY: Duration = Duration::from_millis(1);
/// How long a worker takes every connection after another let one wait `MAKE_WAY` for
/// nothing (that one is busy or stuck: its turn comes when it accepts again).
const ALONE: Duration = Duration::from_millis(100);

/// The connections each worker accepted from one listener and still serves. Every
/// worker waits on the same socket, and the first to run accepts until none is left:
/// a burst of new connections (clients starting, a load balancer reconnecting) went
/// all to one worker, which then served them alone while the others idled (measured:
/// 64 keep-alive connections all on one of two workers, 0.84x the requests a second of
/// an even split). So a worker serving more than one connection above the least
/// loaded one leaves the next connection to the others: it accepts again once another
/// worker has (or after `MAKE_WAY`, and then, for `ALONE`, without waiting).
struct Spread {
    live: Box<[AtomicUsize]>,
    /// Woken at every accept while a worker makes way (`waiting` of them): it looks
    /// again.
    accepted: Notify,
    waiting: AtomicUsize,
}

impl Spread {
    fn new(workers: usize) -> Spread {
        Spread {
            live: (0..workers).map(|_| AtomicUsize::new(0)).collect(),
            accepted: Notify::new(),
            waiting: AtomicUsize::new(0),
        }
    }

    /// Worker `me` serves more than one connection above the least loaded worker.
    fn ahead(&self, me: usize) -> bool {
        let least = self.live.iter().map(|n| n.load(SeqCst)).min().unwrap_or(0);
        self.live[me].load(SeqCst) > least + 1
    }

    /// Waits while worker `me` is `ahead` and the others accept; false when none did
    /// within `patience` (`MAKE_WAY`).
    async fn make_way(&self, me: usize, patience: Duration) -> bool {
        while self.ahead(me) {
            let notified = self.accepted.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            self.waiting.fetch_add(1, SeqCst);
            // Looked at again once registered: an accept in between is not missed.
            let made_way = !self.ahead(me)
                || tokio::select! {
                    _ = notified => true,
                    _ = tokio::time::sleep(patience) => false,
                };
            self.waiting.fetch_sub(1, SeqCst);
            if !made_way {
                return false;
            }
        }
        true
    }

    /// Counts a connection worker `me` accepted, until the guard drops.
    fn serving(self: &Arc<Self>, me: usize) -> Serving {
        self.live[me].fetch_add(1, SeqCst);
        if self.waiting.load(SeqCst) > 0 {
            self.accepted.notify_waiters();
        }
        Serving {
            spread: self.clone(),
            me,
        }
    }
}

/// One connection a worker serves (`Spread::serving`).
struct Serving {
    spread: Arc<Spread>,
    me: usize,
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.spread.live[self.me].fetch_sub(1, SeqCst);
    }
}

/// What a connection is served with: the settings in force when it was accepted.
struct Served {
    config: Arc<ProxyConfig>,
    builder: Arc<http1::Builder>,
}

/// hyper's HTTP/1.1 server, for the heads the fast path leaves to it.
fn builder(config: &ProxyConfig) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.keep_alive(true)
        .header_read_timeout(None)
        .max_headers(MAX_HEADERS)
        .max_buf_size(config.max_header_bytes.max(MIN_BUF));
    b
}

/// `_serving`: counts the connection for its worker (`Spread`) until it ends.
async fn serve_conn(
    inner: Arc<Inner>,
    served: Served,
    stream: Socket,
    peer: SocketAddr,
    scheme: Scheme,
    stop: Arc<Stop>,
    _serving: Option<Serving>,
) {
    // Valid while `conn` (which owns the stream) lives: to look for bytes waiting and to
    // close at shutdown, and in the clear for the 408.
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
    match scheme {
        Scheme::Http => serve_http(inner, served, stream, fd, peer, false, stop).await,
        Scheme::Https => {
            let timeout = served.config.client_header_timeout;
            match crate::out_of_line(|| tls::accept(&inner.tls, stream, timeout)).await {
                Ok(Handshake::Http(stream)) => {
                    // Boxed, with the TLS stream: plain connections' tasks need no room
                    // for either (and their polls no stack room for its poll).
                    crate::out_of_line(|| serve_http(inner, served, stream, fd, peer, true, stop))
                        .await;
                }
                Ok(Handshake::Challenge) => {
                    tracing::debug!(%peer, "answered an ACME TLS-ALPN-01 validation");
                }
                Err(error) => tracing::debug!(%peer, %error, "TLS handshake failed"),
            }
        }
    }
}

/// Serves HTTP on a connection (in the clear, or a TLS stream after its handshake).
async fn serve_http<S>(
    inner: Arc<Inner>,
    served: Served,
    stream: S,
    fd: std::os::fd::RawFd,
    peer: SocketAddr,
    https: bool,
    stop: Arc<Stop>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let state = Arc::new(ConnState::new());
    let Served { config, builder } = served;
    let io = TrackedIo::new(stream, state.clone(), config.max_header_bytes);
    let client = Arc::new(ClientConn {
        peer: Peer {
            ip: ip_value(peer.ip()),
            trusted: config.trusts(peer.ip()),
            https,
        },
        state: state.clone(),
    });
    // `graceful`: hyper's graceful shutdown, or the fast path's equivalent (finish the
    // response in progress, then close). Cancelled only here, in this task, which polls
    // `conn` again in the next turn of the loop (see `Graceful`).
    let graceful = Graceful::default();
    let conn = run_conn(
        inner.clone(),
        client,
        builder,
        io,
        config.max_header_bytes,
        &graceful,
    );
    tokio::pin!(conn);
    let mut watchdog = Watchdog::new(&config, &state);
    let tick = tokio::time::sleep_until(watchdog.next_tick());
    tokio::pin!(tick);
    let mut tick_armed = false;
    let mut closing = false;
    let mut drain: Option<Drain> = None;
    // Registered here for the stop's wake-up, and polled again only once the stop has
    // begun (see `Stop`): the wake-up goes to the waker of this first poll, which is
    // this task's, whichever poll comes later.
    let stop_wait = stop.token.cancelled();
    tokio::pin!(stop_wait);
    std::future::poll_fn(|cx| Poll::Ready(stop_wait.as_mut().poll(cx).is_ready())).await;
    loop {
        // `biased`: polled in order, without drawing a random start on every wake-up; only
        // `conn` is ready more than once in a connection's life.
        tokio::select! {
            biased;
            res = conn.as_mut() => {
                if let Err(error) = res {
                    tracing::debug!(%peer, %error, "client connection ended with an error");
                }
                return;
            }
            // Looked at again only once the stop has begun (a `select!`'s conditions are
            // read when it starts, not when its task wakes).
            _ = std::future::poll_fn(|cx| {
                if stop.stopping() {
                    stop_wait.as_mut().poll(cx)
                } else {
                    Poll::Pending
                }
            }), if !closing && drain.is_none() => {
                state.start_draining();
                drain = Some(Drain::new(&state, inner.config.load().client_idle_timeout));
            }
            _ = tokio::time::sleep(DRAIN_POLL), if !closing && drain.is_some() => {
                match drain.as_mut().map_or(DrainStep::Wait, |d| d.step(&state, fd)) {
                    DrainStep::Wait => {}
                    DrainStep::GoAway => {
                        closing = true;
                        graceful.cancel();
                    }
                    DrainStep::CloseIdle => {
                        tracing::debug!(%peer, "closing idle client connection at shutdown");
                        linger_close(fd, peer).await;
                        return;
                    }
                }
            }
            _ = std::future::poll_fn(|cx| poll_tick(tick.as_mut(), &mut tick_armed, cx)) => {
                tick.as_mut().reset(watchdog.next_tick());
                tick_armed = false;
                match watchdog.check(&state) {
                    Verdict::Fine => {}
                    Verdict::Idle | Verdict::SlowHeader if closing => {}
                    // Nothing is being answered, so nothing else writes to the socket:
                    // say why, then close.
                    // (Over TLS the answer would have to be encrypted by the stream hyper
                    // owns: the connection is closed without it, as nginx does.)
                    Verdict::SlowHeader if !state.busy() => {
                        tracing::debug!(%peer, "closing client connection: request head too slow (408)");
                        if !https {
                            crate::batch::flush();
                            let flags = nix::sys::socket::MsgFlags::MSG_NOSIGNAL
                                | nix::sys::socket::MsgFlags::MSG_DONTWAIT;
                            let _ = nix::sys::socket::send(fd, REQUEST_TIMEOUT, flags);
                        }
                        return;
                    }
                    Verdict::Idle => {
                        tracing::debug!(%peer, "closing idle client connection");
                        closing = true;
                        graceful.cancel();
                    }
                    // A partial head closes at once; a pipelined head behind a request
                    // still in progress waits for that response first.
                    Verdict::SlowHeader => {
                        tracing::debug!(%peer, "closing client connection: request head too slow");
                        closing = true;
                        graceful.cancel();
                    }
                    Verdict::Overdue => {
                        tracing::debug!(%peer, "dropping client connection: head still incomplete");
                        return;
                    }
                }
            }
        }
    }
}

/// Polls the watchdog's timer only when it can be ready: once after each reset, which
/// leaves this task's waker with the timer, and afterwards only once the timer has fired
/// (a load, where a poll takes the coop budget and the waker's lock, twice a keep-alive
/// request). The arming poll runs outside the coop budget: a poll refused for budget
/// would register no waker, and an idle connection would never hear its timer.
///
/// Armed from the connection's first poll on, busy or not: a request waiting for its
/// answer reads its client's socket only from the wait's second wake-up on (`h1server`),
/// and this timer is what brings that wake-up when the answer is slow.
fn poll_tick(
    tick: Pin<&mut tokio::time::Sleep>,
    armed: &mut bool,
    cx: &mut std::task::Context<'_>,
) -> Poll<()> {
    if *armed && !tick.is_elapsed() {
        return Poll::Pending;
    }
    *armed = true;
    std::pin::pin!(tokio::task::coop::unconstrained(tick)).poll(cx)
}

/// The client's address as a header value (`X-Forwarded-For`, the access log), written
/// without a `String` in between. IPv4, what nearly every client is, by hand: through
/// `Display` it took ~1,300 instructions, a twentieth of a one-request connection.
fn ip_value(ip: std::net::IpAddr) -> HeaderValue {
    use std::io::Write as _;
    // Room for the longest textual address there is (45 bytes, IPv4-mapped IPv6 written
    // out in full); std writes at most 39.
    let mut buf = [0u8; 48];
    let len = match ip {
        std::net::IpAddr::V4(v4) => write_ipv4(v4, &mut buf),
        std::net::IpAddr::V6(v6) => {
            let room = buf.len();
            let mut rest = &mut buf[..];
            if write!(rest, "{v6}").is_err() {
                return HeaderValue::from_static("unknown");
            }
            room - rest.len()
        }
    };
    HeaderValue::from_bytes(&buf[..len]).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// `a.b.c.d` in decimal into `buf` (15 bytes at most); the length written.
fn write_ipv4(ip: std::net::Ipv4Addr, buf: &mut [u8; 48]) -> usize {
    let mut len = 0;
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            buf[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            buf[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            buf[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        buf[len] = b'0' + octet % 10;
        len += 1;
    }
    len
}

/// One connection's HTTP: the fast path (`h1server`) while the client sends plain
/// `GET`/`HEAD` requests; then, from the first head the fast path leaves, HTTP/2
/// (`h2server`) when the connection starts with its preface, else hyper's HTTP/1.1
/// (with upgrades) — either with the bytes already read put back in front.
async fn run_conn<S>(
    inner: Arc<Inner>,
    client: Arc<ClientConn>,
    builder: Arc<http1::Builder>,
    mut io: TrackedIo<S>,
    max_head: usize,
    graceful: &Graceful,
) -> Result<(), BoxError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut first = match h1server::serve(&mut io, &inner, &client, max_head, graceful).await {
        Outcome::Closed => return Ok(()),
        Outcome::Handoff(first) => first,
    };
    if is_h2(&mut first, &mut io).await {
        let io = Rewind::new(first, io);
        // Boxed: a connection served over HTTP/1 to its end never needs room for it.
        return crate::out_of_line(|| h2server::serve(io, &inner, &client, max_head, graceful))
            .await;
    }
    crate::out_of_line(|| serve_hyper(inner, client, builder, first, io, max_head, graceful)).await
}

/// hyper's HTTP/1.1 server, from the head the fast path left, with the bytes already
/// read put back in front.
async fn serve_hyper<S>(
    inner: Arc<Inner>,
    client: Arc<ClientConn>,
    builder: Arc<http1::Builder>,
    first: BytesMut,
    mut io: TrackedIo<S>,
    max_head: usize,
    graceful: &Graceful,
) -> Result<(), BoxError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // hyper applies its buffer limit only while a head is still incomplete, so a head
    // that one read completes gets through however long it is; the head the fast path
    // left over is judged here instead, by the same limit.
    if head_too_large(&first, max_head.max(MIN_BUF)) {
        use tokio::io::AsyncWriteExt as _;
        let _ = io.write_all(HEADERS_TOO_LARGE).await;
        let _ = io.shutdown().await;
        return Ok(());
    }
    // Each request's future is boxed where it is made: hyper moves the future it is
    // given several times, and the request handler's future is kilobytes.
    let service = service_fn(move |req| {
        let inner = inner.clone();
        let client = client.clone();
        let answer: Pin<Box<dyn Future<Output = Result<_, Infallible>> + Send>> =
            Box::pin(async move {
                let mut res = inner.handle(req.map(Inbound::Hyper), &client).await;
                crate::body::materialize(&mut res);
                Ok(res)
            });
        answer
    });
    // Boxed: a connection the fast path serves to its end never needs room for hyper's.
    let mut conn = crate::boxed_future(|| {
        builder
            .serve_connection(TokioIo::new(Rewind::new(first, io)), service)
            .with_upgrades()
    });
    tokio::select! {
        res = conn.as_mut() => return res.map_err(Into::into),
        _ = graceful.cancelled() => {}
    }
    conn.as_mut().graceful_shutdown();
    conn.await.map_err(Into::into)
}

/// Whether the request head at the start of `buf` is longer than `max` bytes (it ends
/// past `max`, or `buf` holds more than `max` bytes and no end of it).
fn head_too_large(buf: &[u8], max: usize) -> bool {
    if buf.len() <= max {
        return false;
    }
    // A head ends with an empty line: a line feed, then CRLF or another line feed (bare
    // line feeds are taken by hyper's parser too). The first `max` bytes hold any end
    // of a head within `max`.
    let window = &buf[..max];
    memchr::memmem::find(window, b"\n\r\n").is_none()
        && memchr::memmem::find(window, b"\n\n").is_none()
}

/// Whether the connection starts with HTTP/2's preface. `first` is what was read so
/// far; while it is a proper beginning of the preface, more is read into it. A client
/// that ends before the whole preface is left to hyper (which answers what it can).
async fn is_h2<S>(first: &mut BytesMut, io: &mut TrackedIo<S>) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    // The rest of a preface is timed as a request head: the framing guard stops
    // following at its first line (`PRI * HTTP/2.0`), so without this a client that
    // sent that line and nothing more would hold the connection for good. Only when no
    // head is being timed already (a partial first line is, by the guard).
    let timed = io.state().head_age().is_none();
    if timed {
        io.state().head_begins();
    }
    let h2 = preface_completes(first, io).await;
    if timed {
        io.state().head_ends();
    }
    h2
}

async fn preface_completes<S>(first: &mut BytesMut, io: &mut TrackedIo<S>) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::AsyncReadExt as _;
    loop {
        let n = first.len().min(h2server::PREFACE.len());
        if first[..n] != h2server::PREFACE[..n] {
            return false;
        }
        if n == h2server::PREFACE.len() {
            return true;
        }
        match io.read_buf(first).await {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
    }
}

/// How often a connection being drained at shutdown is looked at.
const DRAIN_POLL: Duration = Duration::from_millis(20);
/// How long an idle HTTP/1 connection is kept open at shutdown for the client's next
/// request (at most `client_idle_timeout`).
const DRAIN_IDLE: Duration = Duration::from_secs(5);
/// An HTTP/2 connection with no stream open gets GOAWAY after this much quiet.
const H2_QUIET: Duration = Duration::from_secs(1);
/// After the half-close of an idle connection, how long what the client still sends is
/// read and discarded (so it is not answered with a reset) before the socket is closed.
const LINGER: Duration = Duration::from_secs(2);

/// Closing a client connection at shutdown without failing a request.
///
/// HTTP/1.1 has no way to tell an idle client that the connection ends, and a client may
/// send its next request at any moment — many (Python's `http.client`, scripts, simple
/// clients) without checking whether the server closed the connection meanwhile, and
/// without retrying. So at shutdown an HTTP/1 connection is never closed under a request:
/// every response from then on says `Connection: close` (`Inner::handle`; hyper closes
/// after it), a response in progress finishes as it started, and a connection the client
/// leaves idle stays open for `DRAIN_IDLE` (the gaps of such clients) before it is closed
/// with a half-close (`linger_close`), and only once no byte of a request is waiting in
/// the socket. HTTP/2 gets GOAWAY (which tells the client which streams were taken)
/// while a stream is open — it then reaches a client waiting for a response rather than
/// one between its check of the connection and its next request, where a client such as
/// hyper's fails the request without sending it — or after `H2_QUIET`.
struct Drain {
    last_reads: u64,
    quiet_since: Instant,
    idle_grace: Duration,
}

enum DrainStep {
    Wait,
    /// HTTP/2: hyper's graceful shutdown (GOAWAY, then the open streams finish).
    GoAway,
    /// HTTP/1 (or nothing received yet), idle for the whole grace: half-close.
    CloseIdle,
}

impl Drain {
    fn new(state: &ConnState, client_idle_timeout: Duration) -> Drain {
        Drain {
            last_reads: state.reads(),
            quiet_since: Instant::now(),
            idle_grace: DRAIN_IDLE.min(client_idle_timeout),
        }
    }

    fn step(&mut self, state: &ConnState, fd: std::os::fd::RawFd) -> DrainStep {
        let reads = state.reads();
        if reads != self.last_reads || state.busy() || state.head_age().is_some() {
            self.last_reads = reads;
            self.quiet_since = Instant::now();
            if state.is_h2() && state.busy() {
                return DrainStep::GoAway;
            }
            return DrainStep::Wait;
        }
        let quiet = self.quiet_since.elapsed();
        if state.is_h2() {
            return if quiet >= H2_QUIET {
                DrainStep::GoAway
            } else {
                DrainStep::Wait
            };
        }
        if quiet < self.idle_grace {
            return DrainStep::Wait;
        }
        // Bytes of a request already in the socket: hyper reads and serves it (with
        // `Connection: close`), and the wait starts again.
        if pending_input(fd) {
            self.quiet_since = Instant::now();
            return DrainStep::Wait;
        }
        DrainStep::CloseIdle
    }
}

/// Whether the client has sent bytes that were not read yet (or closed its side: then
/// closing is safe, and hyper sees the end of the stream itself).
fn pending_input(fd: std::os::fd::RawFd) -> bool {
    use nix::sys::socket::{recv, MsgFlags};
    let mut byte = [0u8; 1];
    matches!(
        recv(fd, &mut byte, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT),
        Ok(n) if n > 0
    )
}

/// Closes an idle connection the way that loses least: FIN first (`shutdown(SHUT_WR)`),
/// then whatever the client still sends is read and discarded until it closes too or
/// `LINGER` passes. A plain `close()` with unread bytes in the socket would send a reset,
/// which can also destroy data the client has not read yet. hyper is not polled any more:
/// a request arriving now could not be answered (the write side is shut), so it must not
/// reach a backend either.
async fn linger_close(fd: std::os::fd::RawFd, peer: SocketAddr) {
    use nix::sys::socket::{recv, shutdown, MsgFlags, Shutdown};
    // The last answer's bytes, if still in the worker's batch, go before the FIN.
    crate::batch::flush();
    if shutdown(fd, Shutdown::Write).is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER;
    // On the heap: an array here would make every connection's task this much larger.
    let mut buf = vec![0u8; 4096];
    let mut discarded = 0usize;
    while Instant::now() < deadline {
        match recv(fd, &mut buf, MsgFlags::MSG_DONTWAIT) {
            Ok(0) => break,
            Ok(n) => discarded += n,
            Err(nix::errno::Errno::EAGAIN) => tokio::time::sleep(DRAIN_POLL).await,
            Err(_) => break,
        }
    }
    if discarded > 0 {
        tracing::warn!(
            %peer,
            bytes = discarded,
            "a client sent data on an idle connection after it was closed at shutdown"
        );
    }
}

enum Verdict {
    Fine,
    Idle,
    SlowHeader,
    /// The head is still incomplete a second header timeout after the first, and no
    /// response is in progress any more.
    Overdue,
}

/// Tracks one connection's read activity between ticks.
struct Watchdog {
    period: Duration,
    header_timeout: Duration,
    idle_timeout: Duration,
    last_reads: u64,
    quiet_since: Instant,
}

impl Watchdog {
    fn new(cfg: &ProxyConfig, state: &ConnState) -> Watchdog {
        Watchdog {
            period: Watchdog::period(cfg),
            header_timeout: cfg.client_header_timeout,
            idle_timeout: cfg.client_idle_timeout,
            last_reads: state.reads(),
            quiet_since: Instant::now(),
        }
    }

    /// How often a connection is looked at: a quarter of the shortest client timeout.
    fn period(cfg: &ProxyConfig) -> Duration {
        let shortest = cfg.client_header_timeout.min(cfg.client_idle_timeout);
        (shortest / 4).clamp(Duration::from_millis(10), Duration::from_millis(2500))
    }

    /// When to look next: the first multiple of the period (counted from one instant
    /// for the whole process) after now. Connections checked as often share their
    /// deadlines, so a new connection's timer joins one already set instead of waking
    /// the timer driver to re-arm (a system call per connection); a check comes at
    /// most one period after the last, as from an interval.
    fn next_tick(&self) -> Instant {
        Watchdog::boundary(self.period)
    }

    /// The first multiple of `period` after now, counted from one instant for the
    /// whole process.
    fn boundary(period: Duration) -> Instant {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        let start = *START.get_or_init(Instant::now);
        let period = period.as_nanos().max(1);
        let since = Instant::now().saturating_duration_since(start).as_nanos();
        let next = (since / period + 1) * period;
        start + Duration::from_nanos(u64::try_from(next).unwrap_or(u64::MAX))
    }

    fn check(&mut self, state: &ConnState) -> Verdict {
        match state.head_age() {
            Some(age) if age >= self.header_timeout * 2 && !state.busy() => {
                return Verdict::Overdue
            }
            Some(age) if age >= self.header_timeout => return Verdict::SlowHeader,
            _ => {}
        }
        let reads = state.reads();
        if reads != self.last_reads || state.busy() {
            self.last_reads = reads;
            self.quiet_since = Instant::now();
            return Verdict::Fine;
        }
        if self.quiet_since.elapsed() >= self.idle_timeout {
            Verdict::Idle
        } else {
            Verdict::Fine
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker more than one connection above the least loaded one makes way until
    /// another accepts (or its patience ends); the least loaded never does.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_worker_ahead_makes_way_until_another_accepts() {
        let spread = Arc::new(Spread::new(2));
        let first: Vec<Serving> = (0..2).map(|_| spread.serving(0)).collect();
        assert!(spread.ahead(0));
        assert!(!spread.ahead(1));
        assert!(spread.make_way(1, Duration::from_secs(60)).await);
        // Nobody else accepts: it gives up.
        assert!(!spread.make_way(0, Duration::from_millis(1)).await);
        // Worker 1 accepts while worker 0 waits (or just before): the wait ends.
        let waiter = tokio::spawn({
            let spread = spread.clone();
            async move { spread.make_way(0, Duration::from_secs(60)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let second = spread.serving(1);
        assert!(waiter.await.unwrap());
        assert!(!spread.ahead(0), "2 against 1");
        // Connections that end count no more.
        let third: Vec<Serving> = (0..2).map(|_| spread.serving(1)).collect();
        assert!(!spread.ahead(1), "3 against 2");
        drop(first);
        assert!(spread.ahead(1), "3 against 0");
        drop((second, third));
        assert!(!spread.ahead(0) && !spread.ahead(1));
    }

    /// A bound, non-blocking listener as `accept` waits on it, and its address.
    fn listener() -> (std::net::TcpListener, SocketAddr) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        (listener, addr)
    }

    #[tokio::test]
    async fn connections_accepted_on_a_listener_have_nodelay() {
        let (listener, addr) = listener();
        let inherited = nodelay_inherited(&listener);
        assert_eq!(inherited, cfg!(target_os = "linux"));
        let listener = socket::listening(listener).unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = socket::accept(&listener).await.unwrap();
        // What `accept` relies on when it sets nothing on the connection itself.
        if inherited {
            assert!(
                accepted.sock_ref().tcp_nodelay().unwrap(),
                "TCP_NODELAY not inherited from the listener"
            );
        }
    }

    #[tokio::test]
    async fn connections_accepted_on_a_listener_start_in_delayed_ack_mode() {
        let (listener, addr) = listener();
        let listener = socket::listening(listener).unwrap();
        let _before = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (before, _) = socket::accept(&listener).await.unwrap();
        // Linux reports TCP_QUICKACK as "not in delayed-ACK (ping-pong) mode": a new
        // connection is in quick-ACK mode.
        assert!(before.sock_ref().tcp_quickack().unwrap());
        assert!(delayed_first_ack(listener.get_ref()));
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = socket::accept(&listener).await.unwrap();
        assert!(
            !accepted.sock_ref().tcp_quickack().unwrap(),
            "delayed-ACK mode not inherited from the listener"
        );
    }

    #[test]
    fn a_head_is_too_large_when_it_does_not_end_within_the_limit() {
        let head =
            |pad: usize, end: &str| format!("GET / HTTP/1.1\r\nX: {}\r\n{end}", "a".repeat(pad));
        // 16 + 3 + 2 = 21 bytes around the padding, 2 for the final CRLF.
        let exact = head(100 - 23, "\r\n");
        assert_eq!(exact.len(), 100);
        assert!(!head_too_large(exact.as_bytes(), 100));
        assert!(head_too_large(head(100 - 22, "\r\n").as_bytes(), 100));
        // Bare line feeds end a head too; bytes after the head (a body, the next
        // request) are not counted.
        assert!(!head_too_large(
            format!("{}{}", head(10, "\n"), "b".repeat(500)).as_bytes(),
            100
        ));
        assert!(!head_too_large(
            format!("{}{}", head(10, "\r\n"), "b".repeat(500)).as_bytes(),
            100
        ));
        // No end at all in more than the limit.
        assert!(head_too_large("a".repeat(101).as_bytes(), 100));
        assert!(!head_too_large("a".repeat(100).as_bytes(), 100));
    }

    #[test]
    fn client_addresses_are_written_as_text() {
        let value = |s: &str| ip_value(s.parse().unwrap());
        assert_eq!(value("192.0.2.7"), "192.0.2.7");
        assert_eq!(value("2001:db8::1"), "2001:db8::1");
        assert_eq!(value("::ffff:255.255.255.255"), "::ffff:255.255.255.255");
        // The longest text an address takes here (39 bytes; the buffer holds 48).
        let full: std::net::Ipv6Addr = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap();
        assert_eq!(
            ip_value(full.into()),
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        );
        // Every octet value in every position, as std writes it.
        for n in 0..=255u8 {
            for ip in [
                [n, 0, 9, 255],
                [10, n, 99, 1],
                [100, 200, n, 0],
                [1, 2, 3, n],
            ] {
                let ip = std::net::Ipv4Addr::from(ip);
                assert_eq!(ip_value(ip.into()), ip.to_string().as_str());
            }
        }
    }

    #[tokio::test]
    async fn watchdogs_of_the_same_period_share_their_next_check() {
        let cfg = ProxyConfig::default();
        let state = ConnState::new();
        let first = Watchdog::new(&cfg, &state);
        let second = Watchdog::new(&cfg, &state);
        let before = Instant::now();
        let (a, b) = (first.next_tick(), second.next_tick());
        let after = Instant::now();
        assert!(
            a > before && a <= after + first.period,
            "next check {:?} after now, at most a period",
            a - before
        );
        // Unless the two calls straddle a tick, they land on the same instant; either way
        // both are whole periods from the same start.
        let apart = if b >= a { b - a } else { a - b };
        assert!(
            apart == Duration::ZERO || apart == first.period,
            "{apart:?}"
        );
    }
}
