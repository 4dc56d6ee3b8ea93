//! baton's data plane: an HTTP/1.1 + h2c reverse proxy that reads an immutable route
//! snapshot per request, swaps snapshots atomically on `publish`, drains removed
//! backends without failing their requests, retries only what provably was not
//! processed, and records per-version metrics.
//!
//! **Architecture Invariant:** the request path waits on nothing but the forwarding
//! itself; the control side (`publish`, `drain`) never pauses it. The only lock it
//! takes is its own worker's idle-connection stack of the backend (`pool.rs`), which
//! the sweep and a drain hold just long enough to move entries out.
//!
//! **Architecture Invariant:** a request that may have reached a backend is never sent
//! again, except an idempotent request without a body that got no answer at all.
//!
//! Behaviour worth knowing:
//! - Retries (at most one per request): a connect failure, or a pooled connection that
//!   hyper reports closed before the request was written (`try_send_request` gives the
//!   request back), go to another backend of the same version, or to the same one on a
//!   fresh connection. A GET/HEAD/OPTIONS/PUT/DELETE/TRACE without a body is also resent
//!   after a reset before any response byte. Nothing is retried onto a backend whose
//!   drain deadline has passed.
//! - hyper accepts `Content-Length` + `Transfer-Encoding` by silently dropping the
//!   length (and drops equal duplicate lengths); a shadow framing tracker on the socket
//!   (`h1guard`) catches these and every other ambiguous framing, so the client gets
//!   400 and the connection is closed before anything reaches a backend. Oversized
//!   heads get 431 (`server.rs` judges the head the fast path hands over; hyper the
//!   later ones). docs/SECURITY.md lists every case and its status.
//! - A slow request head gets 408 and its connection closed (hyper's own
//!   `header_read_timeout` is not used because it also closes idle keep-alive
//!   connections, and it sends no 408).
//! - A request body is read ahead (up to `request_buffering`) before the request is
//!   routed, so a slow client holds no backend connection or in-flight slot while it
//!   arrives; a body that stalls for `body_read_timeout` gets 408 (an upstream request
//!   already streaming it is aborted) and is counted proxy-wide.
//! - Metrics per version: started when the request is routed (after any hold),
//!   finished when the response body ends or is dropped, with the status (0 when the
//!   client left before an answer), the latency from routing to the end of the body,
//!   and body bytes counted from the data frames. A 101 is recorded when it is sent.
//! - In flight on a backend: from routing until the response body is done, and for
//!   the whole life of an upgraded (WebSocket) connection.

mod access_log;
mod backend;
mod batch;
mod body;
mod compress;
mod config;
mod conn;
mod cores;
mod drain;
mod error;
mod forward;
mod h1client;
mod h1guard;
mod h1server;
mod h2server;
mod headers;
mod passive;
mod pool;
mod router;
#[doc(hidden)]
pub mod select;
mod server;
mod snapshot;
mod socket;
mod target;
mod tls;
mod upgrade;

/// Entry points for the cargo-fuzz targets in `fuzz/`; not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::h1client::{fuzz_decode, DecodedResponse};
    pub use crate::h1guard::{fuzz_sniff, SniffVerdict};
    pub use crate::h1server::{fuzz_parse_heads, ParsedRequest};
    pub use crate::router::fuzz_route;
    pub use crate::target::fuzz_target;
}

pub use access_log::{
    AccessLog, AccessLogFormat, AccessLogReopen, AccessLogTarget, AccessLogWriter,
};
pub use compress::{Algorithm, Compression, DEFAULT_TYPES as DEFAULT_COMPRESSION_TYPES};
pub use config::{ProxyConfig, DEFAULT_REQUEST_BUFFERING};
pub use cores::start as start_workers;
pub use drain::DrainReport;
pub use error::RouteError;
pub use passive::PassiveEvent;
/// rustls's certificate-with-key, as ACME hands certificates to the proxy.
pub use rustls::sign::CertifiedKey;
pub use server::Scheme;
pub use tls::{
    covers, load_pem, load_pem_bytes, AcmeResponder, CertTable, CertificateFiles, EntryError,
    LoadedCert, TlsError, ACME_HTTP_PREFIX, ACME_TLS_ALPN,
};

use arc_swap::ArcSwap;
use backend::Backend;
use baton_core::{AppRouteSpec, RouteTableSpec};
use baton_metrics::MetricsRegistry;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use tokio::sync::{broadcast, Notify};
use tokio_util::sync::CancellationToken;

/// How long an abandoned backend stays in [`Proxy::abandoned`] (proxies on other nodes
/// take the news with the next route table, published moments later).
pub const DEAD_KEPT: Duration = Duration::from_secs(300);

/// How long the metrics of a version the proxy no longer routes are kept
/// ([`Proxy::retire_metrics`]): as long as the controller keeps its samples, so charts
/// and windows of a version just replaced stay whole.
pub const METRICS_KEPT: Duration = Duration::from_secs(600);

/// The data plane. Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// Swapped whole by [`Proxy::set_config`] (`baton reload`); a request reads it once.
    config: ArcSwap<ProxyConfig>,
    metrics: Arc<MetricsRegistry>,
    snapshot: ArcSwap<snapshot::Snapshot>,
    /// Per-backend state by id. Also serialises publishers. Never touched per request.
    registry: Mutex<Registry>,
    /// Woken after every publish (held requests re-route).
    published: Notify,
    /// Incremented after every snapshot swap.
    generation: AtomicU64,
    passive: passive::Passive,
    /// Closes upgraded connections when `serve` has finished its graceful shutdown.
    hard_stop: CancellationToken,
    /// Where finished requests are logged; unset = no access log (nothing recorded).
    access_log: OnceLock<AccessLog>,
    /// Certificates for the TLS listeners, and the ACME side.
    tls: Arc<tls::Tls>,
    /// Backends abandoned (found dead) and not routed again since, with when.
    dead: Mutex<HashMap<Arc<str>, std::time::Instant>>,
}

#[derive(Default)]
struct Registry {
    backends: HashMap<Arc<str>, Arc<Backend>>,
    /// Removed backends still in `backends` because requests were in flight.
    lingering: Vec<Arc<Backend>>,
    /// Versions with metrics that the published table does not route, since when
    /// `retire_metrics` first saw them so.
    unrouted: HashMap<(String, String), std::time::Instant>,
}

impl Proxy {
    pub fn new(config: ProxyConfig, metrics: Arc<MetricsRegistry>) -> Proxy {
        let passive = passive::Passive::new(config.eject_after, config.eject_time);
        Proxy {
            inner: Arc::new(Inner {
                config: ArcSwap::from_pointee(config),
                metrics,
                snapshot: ArcSwap::from_pointee(snapshot::Snapshot::default()),
                registry: Mutex::new(Registry::default()),
                published: Notify::new(),
                generation: AtomicU64::new(0),
                passive,
                hard_stop: CancellationToken::new(),
                access_log: OnceLock::new(),
                tls: tls::Tls::new(),
                dead: Mutex::default(),
            }),
        }
    }

    /// Validate + compile + atomically swap. On Err nothing changes and the previous
    /// snapshot keeps serving.
    pub fn publish(&self, spec: &RouteTableSpec) -> Result<(), RouteError> {
        let inner = &self.inner;
        let registry = lock(&inner.registry);
        let prev = inner.snapshot.load_full();
        let compiled = snapshot::compile(spec, &inner.env(&prev, &registry))?;
        inner.apply(registry, compiled);
        tracing::debug!(
            apps = spec.apps.len(),
            routes = spec.routes.len(),
            "route table published"
        );
        Ok(())
    }

    /// Publish a change to one app (`None` removes it), keeping every other app and
    /// the routes as currently published. The same validation and atomic swap as
    /// [`Proxy::publish`], but the cost does not grow with the other apps' specs: the
    /// controller changes one app at a time, and with 10,000 apps comparing the whole
    /// table on each change would dominate. Adding or removing an app rebuilds the
    /// router. On Err nothing changes.
    pub fn publish_app(&self, name: &str, spec: Option<&AppRouteSpec>) -> Result<(), RouteError> {
        let inner = &self.inner;
        let registry = lock(&inner.registry);
        let prev = inner.snapshot.load_full();
        let Some(compiled) = snapshot::compile_app(name, spec, &inner.env(&prev, &registry))?
        else {
            return Ok(());
        };
        inner.apply(registry, compiled);
        tracing::debug!(
            app = name,
            removed = spec.is_none(),
            "app routing published"
        );
        Ok(())
    }

    /// Log every request from now on to `log` (see [`AccessLogWriter`]). Set once;
    /// returns false (and changes nothing) when an access log was already set.
    pub fn set_access_log(&self, log: AccessLog) -> bool {
        self.inner.access_log.set(log).is_ok()
    }

    /// The settings in force.
    pub fn config(&self) -> Arc<ProxyConfig> {
        self.inner.config.load_full()
    }

    /// Replaces the settings (`baton reload`): requests routed from now on use the new
    /// timeouts and body limits, connections accepted from now on the new header limits,
    /// timeouts and trusted peers; open connections keep the ones they started with.
    /// Passive ejection (`eject_after`, `eject_time`) is fixed when the proxy is created
    /// and is kept as it is.
    pub fn set_config(&self, mut config: ProxyConfig) {
        let current = self.inner.config.load();
        config.eject_after = current.eject_after;
        config.eject_time = current.eject_time;
        drop(current);
        self.inner.config.store(Arc::new(config));
        tracing::info!("proxy settings replaced");
    }

    /// The table currently serving.
    pub fn current_spec(&self) -> Arc<RouteTableSpec> {
        self.inner.snapshot.load().spec()
    }

    /// Accept loop until `shutdown` resolves; then stop accepting and let open
    /// connections finish gracefully (at most 30 s), then close upgraded connections.
    /// Serves HTTP/1.1 and HTTP/2 prior-knowledge (h2c) on the same port.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        self.serve_scheme(listener, Scheme::Http, shutdown).await
    }

    /// [`Proxy::serve`] for either scheme. HTTPS: TLS 1.2/1.3 with the certificates of
    /// [`Proxy::set_certificates`] and [`Proxy::install_certificate`], then HTTP/1.1 or
    /// h2 as ALPN chose.
    pub async fn serve_scheme(
        &self,
        listener: tokio::net::TcpListener,
        scheme: Scheme,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        server::serve(self.inner.clone(), listener, scheme, shutdown).await
    }

    /// Replaces the certificates from files (whole; connections already open keep the
    /// certificate they were opened with).
    pub fn set_certificates(&self, table: CertTable) {
        tracing::info!(hosts = ?table.hosts(), default = table.has_default(), "TLS certificates loaded");
        self.inner.tls.set_files(table);
    }

    /// The certificates from files now served.
    pub fn certificates(&self) -> Arc<CertTable> {
        self.inner.tls.files()
    }

    /// Serves `key` for `names` from the next handshake on (ACME issued or renewed it).
    pub fn install_certificate(&self, names: &[String], key: Arc<CertifiedKey>) {
        self.inner.tls.install(names, key);
    }

    /// Connects the ACME side (challenge answers, on-demand issuance). Once; false if
    /// one was set before.
    pub fn set_acme(&self, acme: Arc<dyn AcmeResponder>) -> bool {
        self.inner.tls.set_acme(acme)
    }

    /// The backend must already be absent from the published snapshot. Closes its idle
    /// pooled connections at once, waits until its in-flight count is 0 or `timeout`;
    /// at the deadline ends WebSocket tunnels with a close handshake (1001; other
    /// upgrades with FIN), cancels requests still running, and waits briefly for both
    /// to finish. Idempotent; an unknown id returns at once.
    pub async fn drain(&self, backend_id: &str, timeout: Duration) -> DrainReport {
        let backend = lock(&self.inner.registry).backends.get(backend_id).cloned();
        let Some(backend) = backend else {
            return DrainReport::nothing();
        };
        let report = drain::drain(&backend, timeout).await;
        lock(&self.inner.registry).forget_idle();
        report
    }

    /// The backend was found dead (its health checks failed, e.g. its node is gone):
    /// its idle connections close, and requests still waiting for its response head that
    /// may be sent again (GET/HEAD, idempotent ones without a body) are sent to another
    /// backend of the same version at once instead of waiting out
    /// `upstream_header_timeout`. Other requests keep waiting (the instance may only be
    /// slow). An unknown id does nothing.
    pub fn abandon(&self, backend_id: &str) {
        if let Some(b) = lock(&self.inner.registry).backends.get(backend_id) {
            b.abandon();
            lock(&self.inner.dead).insert(b.id.clone(), std::time::Instant::now());
        }
    }

    /// The backends abandoned (`abandon`) in the last [`DEAD_KEPT`] and not routed
    /// again since, by id: what proxies on other nodes abandon too.
    pub fn abandoned(&self) -> Vec<String> {
        let mut dead = lock(&self.inner.dead);
        dead.retain(|_, at| at.elapsed() < DEAD_KEPT);
        let mut ids: Vec<String> = dead.keys().map(|id| id.to_string()).collect();
        ids.sort();
        ids
    }

    /// Forgets the metrics of every version the published table has not routed for
    /// `keep` (counted from the first call that found it unrouted): each deployment of a
    /// new version adds one (~7 KiB of counters, a `/metrics` series, a sample a second
    /// in the controller), which would otherwise stay for the life of the process. A
    /// version routed again later starts from zero. Returns what was forgotten, sorted.
    /// Called every 10 s by the controller's sampler and before each report (every
    /// second) by `baton proxy`. Serialized with publishing, so a version routed again by a
    /// publish racing this call keeps the counters its pool records into.
    pub fn retire_metrics(&self, keep: Duration) -> Vec<(String, String)> {
        let inner = &self.inner;
        let mut registry = lock(&inner.registry);
        let snapshot = inner.snapshot.load();
        let routed: std::collections::HashSet<(&str, &str)> = snapshot
            .apps
            .iter()
            .flat_map(|app| app.pools.iter().map(|p| (&*app.name, &*p.version)))
            .collect();
        let now = std::time::Instant::now();
        let mut unrouted = HashMap::new();
        let mut retired = Vec::new();
        for key in inner.metrics.versions() {
            if routed.contains(&(key.0.as_str(), key.1.as_str())) {
                continue;
            }
            let since = registry.unrouted.get(&key).copied().unwrap_or(now);
            if now.saturating_duration_since(since) >= keep {
                inner.metrics.remove_version(&key.0, &key.1);
                retired.push(key);
            } else {
                unrouted.insert(key, since);
            }
        }
        registry.unrouted = unrouted;
        retired
    }

    /// Requests (and upgraded connections) currently on this backend.
    pub fn in_flight(&self, backend_id: &str) -> u64 {
        lock(&self.inner.registry)
            .backends
            .get(backend_id)
            .map_or(0, |b| b.in_flight())
    }

    /// Removed backends that still have requests (or upgraded connections) in flight,
    /// with their counts: what a drain is still waiting for.
    pub fn lingering(&self) -> Vec<(String, u64)> {
        let mut registry = lock(&self.inner.registry);
        registry.forget_idle();
        registry
            .lingering
            .iter()
            .map(|b| (b.id.to_string(), b.in_flight()))
            .collect()
    }

    /// How many route snapshots this proxy has swapped in (a publish that changes
    /// nothing does not count).
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(SeqCst)
    }

    /// Resolves once a snapshot later than generation `seen` is serving (at once if
    /// one already is).
    pub async fn published_since(&self, seen: u64) {
        loop {
            let notified = self.inner.published.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.generation() != seen {
                return;
            }
            notified.await;
        }
    }

    /// Passive health signals (ejections / restorations) for the controller.
    pub fn subscribe_events(&self) -> broadcast::Receiver<PassiveEvent> {
        self.inner.passive.subscribe()
    }

    /// The per-version metrics this proxy records (canary analysis reads them).
    pub fn metrics(&self) -> &Arc<MetricsRegistry> {
        &self.inner.metrics
    }
}

impl Inner {
    /// Closes the idle upstream connections that outlived `upstream_idle_timeout`, of
    /// every backend (`pool::IdlePool::expire`); `server::serve` calls it every second.
    fn expire_idle_upstreams(&self) {
        let backends: Vec<Arc<Backend>> = lock(&self.registry).backends.values().cloned().collect();
        let idle = self.config.load().upstream_idle_timeout;
        for backend in backends {
            backend.idle.expire(idle);
        }
    }

    fn env<'a>(
        &'a self,
        prev: &'a snapshot::Snapshot,
        registry: &'a Registry,
    ) -> snapshot::Env<'a> {
        snapshot::Env {
            prev,
            registry: &registry.backends,
            metrics: &self.metrics,
            max_idle: self.config.load().max_idle_per_backend,
        }
    }

    /// Swap in a compiled snapshot and settle the backends it created, re-added and
    /// dropped. Holding the registry lock serialises publishers.
    fn apply(&self, mut registry: MutexGuard<'_, Registry>, compiled: snapshot::Compiled) {
        for b in &compiled.created {
            registry.backends.insert(b.id.clone(), b.clone());
        }
        if !compiled.created.is_empty() || !compiled.readded.is_empty() {
            let mut dead = lock(&self.dead);
            for b in compiled.created.iter().chain(&compiled.readded) {
                dead.remove(&b.id);
            }
        }
        for b in &compiled.readded {
            b.set_removed(false);
        }
        // Swap first, then mark removals: a request that sees a removed backend
        // re-reads the snapshot and must find the new one.
        self.snapshot.store(Arc::new(compiled.snapshot));
        for b in &compiled.dropped {
            b.set_removed(true);
        }
        registry.lingering.extend(compiled.dropped);
        registry.forget_idle();
        drop(registry);
        self.generation.fetch_add(1, SeqCst);
        self.published.notify_waiters();
    }
}

impl Registry {
    /// Drop removed backends that have nothing left in flight.
    fn forget_idle(&mut self) {
        let backends = &mut self.backends;
        self.lingering.retain(|b| {
            if !b.is_removed() {
                return false;
            }
            if b.in_flight() > 0 {
                return true;
            }
            if backends.get(&b.id).is_some_and(|r| Arc::ptr_eq(r, b)) {
                backends.remove(&b.id);
            }
            false
        });
    }
}

/// Lock a control-plane mutex; a poisoned lock still holds consistent data here
/// because every critical section only inserts or removes whole entries.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A request's future on the heap, allocated before the future is made so that it can
/// be built in its allocation. `Box::pin(make())` builds it on the stack first and then
/// copies all of it into the allocation: kilobytes per request (mostly room for states
/// the future has not reached), into memory that is not in cache.
#[inline(always)]
pub(crate) fn boxed_future<F: Future>(make: impl FnOnce() -> F) -> Pin<Box<F>> {
    Box::into_pin(Box::write(Box::new_uninit(), make()))
}

/// `boxed_future` for a future made once per request of a connection: built in the
/// allocation the connection's previous request used (kept in `slot`), so a
/// connection's requests after its first allocate nothing for their futures. What
/// stays in the slot between requests is a finished future, which holds nothing.
pub(crate) fn reboxed_future<F: Future>(
    slot: &mut Option<Pin<Box<F>>>,
    make: impl FnOnce() -> F,
) -> Pin<&mut F> {
    let boxed = match slot.take() {
        Some(mut boxed) => {
            boxed.set(make());
            boxed
        }
        None => boxed_future(make),
    };
    slot.insert(boxed).as_mut()
}

/// Boxes for the futures of one kind of task, kept when a task finishes for the next
/// one to be built in: the connection futures a listener spawns are kilobytes, too
/// large for the allocator's per-thread cache, and a fresh allocation and its free cost
/// ~700 instructions a connection.
/// At most `keep` boxes wait (each holds a finished future, which holds nothing).
pub(crate) struct BoxPool<F> {
    spare: Mutex<Vec<Pin<Box<F>>>>,
    keep: usize,
}

impl<F: Future> BoxPool<F> {
    pub fn new(keep: usize) -> Arc<BoxPool<F>> {
        Arc::new(BoxPool {
            spare: Mutex::new(Vec::new()),
            keep,
        })
    }

    /// The future `make` builds, in a spare box if there is one, as a future that gives
    /// its box back when it finishes.
    pub fn boxed(self: &Arc<Self>, make: impl FnOnce() -> F) -> Pooled<F> {
        let spare = lock(&self.spare).pop();
        let boxed = match spare {
            Some(mut boxed) => {
                boxed.set(make());
                boxed
            }
            None => boxed_future(make),
        };
        Pooled {
            boxed: Some(boxed),
            pool: self.clone(),
        }
    }
}

/// A future in a box of a `BoxPool`, given back to the pool when it finishes (a future
/// dropped before it finishes drops its box).
pub(crate) struct Pooled<F> {
    boxed: Option<Pin<Box<F>>>,
    pool: Arc<BoxPool<F>>,
}

impl<F: Future> Future for Pooled<F> {
    type Output = F::Output;

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        // `Pooled` is `Unpin` (it holds its future by a box), so it can be reached mutably.
        let this = &mut *self;
        let Some(boxed) = this.boxed.as_mut() else {
            // Polled after it finished, which a task never does.
            return std::task::Poll::Pending;
        };
        let out = std::task::ready!(boxed.as_mut().poll(cx));
        if let Some(boxed) = this.boxed.take() {
            let mut spare = lock(&this.pool.spare);
            if spare.len() < this.pool.keep {
                spare.push(boxed);
            }
        }
        std::task::Poll::Ready(out)
    }
}

/// A boxed future polled through a vtable, so that its poll is never inlined into its
/// caller's: a connection's rarer paths (TLS, HTTP/2, hyper's HTTP/1.1) then add nothing
/// to the stack frame of the poll every plain HTTP/1.1 request goes through (see the
/// text of `forward.rs`).
pub(crate) fn out_of_line<'a, F>(
    make: impl FnOnce() -> F,
) -> Pin<Box<dyn Future<Output = F::Output> + Send + 'a>>
where
    F: Future + Send + 'a,
{
    boxed_future(make)
}

#[cfg(test)]
mod box_pool_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn address<F>(pooled: &Pooled<F>) -> *const F {
        pooled.boxed.as_ref().map(|b| &**b as *const F).unwrap()
    }

    #[tokio::test]
    async fn a_finished_future_leaves_its_box_to_the_next_one() {
        let pool = BoxPool::new(1);
        let make = |n: u32| async move {
            if n == 0 {
                std::future::pending::<()>().await;
            }
            n
        };
        let first = pool.boxed(|| make(1));
        let first_box = address(&first);
        assert_eq!(first.await, 1);
        let second = pool.boxed(|| make(2));
        assert_eq!(address(&second), first_box, "built in the first one's box");
        assert_eq!(second.await, 2);

        // Dropped before it finished: its box is not kept (it may still hold things).
        let mut unfinished = pool.boxed(|| make(0));
        assert!(lock(&pool.spare).is_empty());
        let waker = std::task::Waker::noop();
        let polled = Pin::new(&mut unfinished).poll(&mut std::task::Context::from_waker(waker));
        assert!(polled.is_pending());
        drop(unfinished);
        assert!(lock(&pool.spare).is_empty());
    }

    #[tokio::test]
    async fn at_most_keep_boxes_wait() {
        let pool = BoxPool::new(2);
        let make = |n: u32| async move { n };
        let futures: Vec<_> = (0..5).map(|n| pool.boxed(|| make(n))).collect();
        for (n, f) in futures.into_iter().enumerate() {
            assert_eq!(f.await, n as u32);
        }
        assert_eq!(lock(&pool.spare).len(), 2);
    }
}
