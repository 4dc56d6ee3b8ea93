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
//! HTTP/2 limits (CVE-2023-44487 rapid reset, CVE-2024-27316-class CONTINUATION
//! floods) are set explicitly in `builder`; docs/SECURITY.md lists them.

use crate::conn::TrackedIo;
use crate::forward::ClientConn;
use crate::h1guard::{ConnState, MAX_HEADERS};
use crate::headers::Peer;
use crate::{Inner, ProxyConfig};
use http::HeaderValue;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long open connections may take to finish after the shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// hyper refuses a read buffer smaller than this.
const MIN_BUF: usize = 8192;
/// Streams one HTTP/2 connection may have open at once.
pub(crate) const H2_MAX_CONCURRENT_STREAMS: u32 = 256;
/// Streams a client may reset before the server accepted them (rapid reset); one more
/// and the connection gets GOAWAY `ENHANCE_YOUR_CALM`.
pub(crate) const H2_MAX_PENDING_ACCEPT_RESETS: usize = 20;
/// Streams the server may reset because of client protocol errors before it sends
/// GOAWAY `ENHANCE_YOUR_CALM`.
pub(crate) const H2_MAX_LOCAL_ERROR_RESETS: usize = 1024;
/// What a too-slow request head gets before its connection is closed.
const REQUEST_TIMEOUT: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";

pub(crate) async fn serve(
    inner: Arc<Inner>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    // Rebuilt when the settings change (`Proxy::set_config`): a connection is served
    // with the settings in force when it was accepted.
    let mut config = inner.config.load_full();
    let mut builder = Arc::new(builder(&config));
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let now = inner.config.load_full();
                    if !Arc::ptr_eq(&now, &config) {
                        builder = Arc::new(self::builder(&now));
                        config = now;
                    }
                    let served = Served { config: config.clone(), builder: builder.clone() };
                    let conn = serve_conn(inner.clone(), served, stream, peer, stop.clone());
                    tracker.spawn(conn);
                }
                Err(error) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    tracing::info!(
        connections = tracker.len(),
        "proxy stops accepting; finishing open connections"
    );
    stop.cancel();
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            connections = tracker.len(),
            "shutdown grace period over; dropping connections"
        );
    }
    inner.hard_stop.cancel();
    Ok(())
}

/// What a connection is served with: the settings in force when it was accepted.
struct Served {
    config: Arc<ProxyConfig>,
    builder: Arc<auto::Builder<TokioExecutor>>,
}

fn builder(config: &ProxyConfig) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .keep_alive(true)
        .header_read_timeout(None)
        .max_headers(MAX_HEADERS)
        .max_buf_size(config.max_header_bytes.max(MIN_BUF));
    // The header list limit also bounds CONTINUATION frames: h2 allows only as many
    // as that limit needs and answers more with GOAWAY ENHANCE_YOUR_CALM.
    b.http2()
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .max_pending_accept_reset_streams(H2_MAX_PENDING_ACCEPT_RESETS)
        .max_local_error_reset_streams(H2_MAX_LOCAL_ERROR_RESETS)
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX));
    b
}

async fn serve_conn(
    inner: Arc<Inner>,
    served: Served,
    stream: TcpStream,
    peer: SocketAddr,
    stop: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    // Valid while `conn` (which owns the stream) lives; used only for the 408.
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
    let state = Arc::new(ConnState::new());
    let Served { config, builder } = served;
    let io = TrackedIo::new(stream, state.clone(), config.max_header_bytes);
    let client = Arc::new(ClientConn {
        peer: Peer {
            ip: HeaderValue::from_str(&peer.ip().to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            trusted: config.trusts(peer.ip()),
        },
        state: state.clone(),
    });
    let handler = inner.clone();
    let service = service_fn(move |req| {
        let inner = handler.clone();
        let client = client.clone();
        async move { Ok::<_, Infallible>(inner.handle(req, &client).await) }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut watchdog = Watchdog::new(&config, &state);
    let mut tick = tokio::time::interval(watchdog.period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut closing = false;
    let mut drain: Option<Drain> = None;
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(error) = res {
                    tracing::debug!(%peer, %error, "client connection ended with an error");
                }
                return;
            }
            _ = stop.cancelled(), if !closing && drain.is_none() => {
                drain = Some(Drain::new(&state));
            }
            _ = tokio::time::sleep(DRAIN_POLL), if !closing && drain.is_some() => {
                if drain.as_mut().is_some_and(|d| d.may_close(&state)) {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
            _ = tick.tick() => match watchdog.check(&state) {
                Verdict::Fine => {}
                Verdict::Idle | Verdict::SlowHeader if closing => {}
                // Nothing is being answered, so nothing else writes to the socket:
                // say why, then close.
                Verdict::SlowHeader if !state.busy() => {
                    tracing::debug!(%peer, "closing client connection: request head too slow (408)");
                    let flags = nix::sys::socket::MsgFlags::MSG_NOSIGNAL
                        | nix::sys::socket::MsgFlags::MSG_DONTWAIT;
                    let _ = nix::sys::socket::send(fd, REQUEST_TIMEOUT, flags);
                    return;
                }
                Verdict::Idle => {
                    tracing::debug!(%peer, "closing idle client connection");
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
                // A partial head closes at once; a pipelined head behind a request
                // still in progress waits for that response first.
                Verdict::SlowHeader => {
                    tracing::debug!(%peer, "closing client connection: request head too slow");
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
                Verdict::Overdue => {
                    tracing::debug!(%peer, "dropping client connection: head still incomplete");
                    return;
                }
            },
        }
    }
}

/// How often a connection being drained at shutdown is looked at.
const DRAIN_POLL: Duration = Duration::from_millis(5);
/// A connection quiet this long at shutdown is closed without waiting for a request.
const DRAIN_IDLE: Duration = Duration::from_secs(1);

/// Closing a client connection at shutdown without failing a request. An HTTP/1.1
/// connection closed while idle races with the client's next request (the client may
/// have sent it already), so the close waits for a request in progress — hyper then
/// answers it with `Connection: close` and closes — or for the connection to stay quiet
/// for `DRAIN_IDLE`. HTTP/2 gets GOAWAY at the same moments, which is race-free anyway.
struct Drain {
    last_reads: u64,
    quiet_since: Instant,
}

impl Drain {
    fn new(state: &ConnState) -> Drain {
        Drain {
            last_reads: state.reads(),
            quiet_since: Instant::now(),
        }
    }

    fn may_close(&mut self, state: &ConnState) -> bool {
        if state.busy() {
            return true;
        }
        let reads = state.reads();
        if reads != self.last_reads {
            self.last_reads = reads;
            self.quiet_since = Instant::now();
            return false;
        }
        self.quiet_since.elapsed() >= DRAIN_IDLE
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
        let shortest = cfg.client_header_timeout.min(cfg.client_idle_timeout);
        Watchdog {
            period: (shortest / 4).clamp(Duration::from_millis(10), Duration::from_millis(2500)),
            header_timeout: cfg.client_header_timeout,
            idle_timeout: cfg.client_idle_timeout,
            last_reads: state.reads(),
            quiet_since: Instant::now(),
        }
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
