//! Accept loop and per-connection serving: HTTP/1.1 and h2c, upgrades, an optional idle
//! timeout, and graceful shutdown (stop accepting, finish in-flight requests, close idle
//! keep-alive connections, send WebSockets a close frame).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::handlers::{handle, AppState};
use crate::SampleOptions;

/// Serves `listener` until `shutdown` resolves, then drains and returns.
///
/// Returns once every connection has finished its in-flight requests (there is no drain
/// deadline: whoever stops the app decides when to give up, e.g. with SIGKILL).
pub async fn run(
    opts: SampleOptions,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let local = listener.local_addr()?;
    let state = Arc::new(app_state(&opts, local)?);
    let idle_timeout = opts.idle_timeout_ms.map(Duration::from_millis);
    tracing::info!(addr = %local, version = %opts.app_version, "serving");
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let state = state.clone();
                state
                    .tasks
                    .spawn(serve_connection(stream, peer, state.clone(), idle_timeout));
            }
            Err(error) => {
                // Usually EMFILE or a connection reset before accept: back off briefly.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    drop(listener);
    tracing::info!(addr = %local, "shutting down: draining connections");
    state.shutdown.cancel();
    state.tasks.close();
    state.tasks.wait().await;
    tracing::info!(addr = %local, "drained");
    Ok(())
}

/// Builds the shared handler state, validating what goes into headers.
fn app_state(opts: &SampleOptions, local: SocketAddr) -> io::Result<AppState> {
    let header = |what: &str, value: &str| {
        HeaderValue::from_str(value).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{what} {value:?} cannot be sent as an HTTP header; use printable ASCII"),
            )
        })
    };
    let instance = opts
        .instance
        .clone()
        .unwrap_or_else(|| local.port().to_string());
    Ok(AppState {
        version_header: header("--version", &opts.app_version)?,
        version_body: Bytes::from(format!("{}\n", opts.app_version)),
        instance_header: header("--instance", &instance)?,
        error_rate: opts.error_rate,
        latency: Duration::from_millis(opts.latency_ms),
        health_failing: AtomicBool::new(opts.fail_health),
        hanging: AtomicBool::new(false),
        writes: AtomicU64::new(0),
        shutdown: CancellationToken::new(),
        tasks: TaskTracker::new(),
        db: opts.db.clone(),
    })
}

/// Serves one connection until the client closes it, it idles out, or shutdown drains it.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<AppState>,
    idle_timeout: Option<Duration>,
) {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let service = {
        let (state, activity) = (state.clone(), activity.clone());
        service_fn(move |req| {
            let (state, busy) = (state.clone(), activity.begin());
            async move {
                let response = handle(req, state).await;
                drop(busy);
                Ok::<_, std::convert::Infallible>(response)
            }
        })
    };
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => return log_end(peer, result),
        () = state.shutdown.cancelled() => {}
        () = activity.idle_for(idle_timeout) => tracing::debug!(%peer, "closing idle connection"),
    }
    // Finishes in-flight requests, then closes (at once when idle; GOAWAY on h2).
    conn.as_mut().graceful_shutdown();
    log_end(peer, conn.await);
}

fn log_end(peer: SocketAddr, result: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

/// Per-connection request activity, for the idle timeout.
struct Activity {
    /// Requests being handled on this connection.
    in_flight: AtomicUsize,
    /// When the connection opened; `last_done` is relative to it.
    opened: Instant,
    /// Nanoseconds after `opened` at which the last request finished.
    last_done: AtomicU64,
}

// === impl Activity ===

impl Activity {
    fn new() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            opened: Instant::now(),
            last_done: AtomicU64::new(0),
        }
    }

    /// Marks a request in progress until the returned guard drops.
    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Relaxed);
        Busy(self.clone())
    }

    /// Resolves once no request has been in progress for `timeout`; never if `None`.
    async fn idle_for(&self, timeout: Option<Duration>) {
        let Some(timeout) = timeout else {
            return std::future::pending().await;
        };
        loop {
            let done = Duration::from_nanos(self.last_done.load(Relaxed));
            let deadline = self.opened + done + timeout;
            let now = Instant::now();
            let busy = self.in_flight.load(Relaxed) > 0;
            if !busy && now >= deadline {
                return;
            }
            // A busy connection cannot idle out before `now + timeout`; look again then.
            tokio::time::sleep_until(if busy { now + timeout } else { deadline }).await;
        }
    }
}

/// Guard for one in-progress request; records when it finished.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let elapsed = u64::try_from(self.0.opened.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.0.last_done.store(elapsed, Relaxed);
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}
