//! The set of all app versions' metrics, keyed by app then version.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::{MetricsSnapshot, VersionMetrics};

/// App name -> version -> metrics, ordered for stable output.
type Versions = BTreeMap<String, BTreeMap<String, Arc<VersionMetrics>>>;

/// Every version's [`VersionMetrics`], shared by the proxy and the controller.
///
/// The mutex is taken when a route table is published (to fetch the `Arc`s the proxy will
/// hold) and when metrics are read, never per request: the proxy records through the
/// `Arc<VersionMetrics>` it got from [`version`](Self::version).
#[derive(Debug, Default)]
pub struct MetricsRegistry {
    versions: Mutex<Versions>,
    /// Request bodies cut because the client sent nothing for the body read timeout.
    /// Proxy-wide: a body can stall before its request is routed to a version.
    body_timeouts: AtomicU64,
    /// Access log lines lost: `[0]` the writer's queue was full, `[1]` the write failed
    /// (a full or failing disk). Requests are never slowed to keep a line.
    access_log_dropped: [AtomicU64; 2],
}

/// Why an access log line was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogDrop {
    /// The bounded queue to the writer was full (the writer is behind: a slow disk).
    QueueFull,
    /// Writing the line failed (no space left, an I/O error).
    WriteFailed,
}

// === impl MetricsRegistry ===

impl MetricsRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The metrics of `app`/`version`, created at zero on first use.
    pub fn version(&self, app: &str, version: &str) -> Arc<VersionMetrics> {
        let mut apps = self.lock();
        let versions = match apps.get_mut(app) {
            Some(versions) => versions,
            None => apps.entry(app.to_owned()).or_default(),
        };
        if let Some(metrics) = versions.get(version) {
            return metrics.clone();
        }
        versions.entry(version.to_owned()).or_default().clone()
    }

    /// Snapshots of every version as `(app, version, snapshot)`, sorted by app then version.
    pub fn snapshot_all(&self) -> Vec<(String, String, MetricsSnapshot)> {
        let metrics: Vec<_> = self
            .lock()
            .iter()
            .flat_map(|(app, versions)| {
                versions
                    .iter()
                    .map(move |(version, m)| (app.clone(), version.clone(), m.clone()))
            })
            .collect();
        // Copy the atomics outside the lock: readers never hold up a publish.
        metrics
            .into_iter()
            .map(|(app, version, m)| (app, version, m.snapshot()))
            .collect()
    }

    /// Every version registered, as `(app, version)`, sorted.
    pub fn versions(&self) -> Vec<(String, String)> {
        self.lock()
            .iter()
            .flat_map(|(app, versions)| versions.keys().map(move |v| (app.clone(), v.clone())))
            .collect()
    }

    /// Snapshot of one version, `None` if it was never registered (or was removed).
    pub fn snapshot(&self, app: &str, version: &str) -> Option<MetricsSnapshot> {
        let metrics = self.lock().get(app)?.get(version)?.clone();
        Some(metrics.snapshot())
    }

    /// Forgets every version of `app` (e.g. when the app is deleted from the config).
    ///
    /// Proxies still holding an `Arc` keep recording into it; those updates are no longer
    /// visible here, and a later [`version`](Self::version) call starts from zero.
    pub fn remove_app(&self, app: &str) {
        self.lock().remove(app);
    }

    /// Forgets one version of `app` (e.g. a canary that was aborted and cleaned up).
    pub fn remove_version(&self, app: &str, version: &str) {
        let mut apps = self.lock();
        if let Some(versions) = apps.get_mut(app) {
            versions.remove(version);
            if versions.is_empty() {
                apps.remove(app);
            }
        }
    }

    /// A request body was cut because the client stalled (`body_read_timeout`).
    pub fn request_body_timed_out(&self) {
        self.body_timeouts.fetch_add(1, Relaxed);
    }

    /// Request bodies cut so far because their client stalled.
    pub fn request_body_timeouts(&self) -> u64 {
        self.body_timeouts.load(Relaxed)
    }

    /// `n` access log lines were lost for `why`.
    pub fn access_log_dropped(&self, why: AccessLogDrop, n: u64) {
        self.access_log_dropped[why as usize].fetch_add(n, Relaxed);
    }

    /// Access log lines lost so far for `why`.
    pub fn access_log_drops(&self, why: AccessLogDrop) -> u64 {
        self.access_log_dropped[why as usize].load(Relaxed)
    }

    /// Appends the Prometheus text exposition (format 0.0.4) of every version, then the
    /// proxy-wide counters, to `out`.
    pub fn render_prometheus(&self, out: &mut String) {
        crate::prometheus::render(&self.snapshot_all(), out);
        crate::prometheus::render_proxy(self.request_body_timeouts(), out);
        crate::prometheus::render_access_log(
            self.access_log_drops(AccessLogDrop::QueueFull),
            self.access_log_drops(AccessLogDrop::WriteFailed),
            out,
        );
    }

    /// Locks the map; a panic elsewhere while holding it cannot leave it half-updated
    /// (every update is a single map operation), so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, Versions> {
        self.versions.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn version_returns_the_same_metrics_each_time() {
        let r = MetricsRegistry::new();
        let a = r.version("web", "v1");
        let b = r.version("web", "v1");
        assert!(Arc::ptr_eq(&a, &b));
        a.request_started();
        a.request_finished(200, Duration::from_millis(1), 0, 0);
        assert_eq!(r.snapshot("web", "v1").unwrap().requests, 1);
        assert!(r.snapshot("web", "v2").is_none());
        assert!(r.snapshot("api", "v1").is_none());
    }

    #[test]
    fn snapshot_all_is_sorted() {
        let r = MetricsRegistry::new();
        for (app, version) in [("web", "v2"), ("api", "v9"), ("web", "v1"), ("api", "v10")] {
            r.version(app, version);
        }
        let keys: Vec<_> = r
            .snapshot_all()
            .into_iter()
            .map(|(a, v, _)| format!("{a}/{v}"))
            .collect();
        assert_eq!(keys, ["api/v10", "api/v9", "web/v1", "web/v2"]);
    }

    #[test]
    fn remove_forgets_versions() {
        let r = MetricsRegistry::new();
        let old = r.version("web", "v1");
        r.version("web", "v2");
        r.version("api", "v1");
        r.remove_version("web", "v2");
        assert!(r.snapshot("web", "v2").is_none());
        r.remove_app("web");
        assert!(r.snapshot("web", "v1").is_none());
        assert_eq!(r.snapshot_all().len(), 1);
        old.request_started();
        assert_eq!(r.version("web", "v1").snapshot().in_flight, 0);
        r.remove_version("web", "v1");
        r.remove_version("api", "v1");
        assert!(r.snapshot_all().is_empty());
    }

    #[test]
    fn body_timeouts_are_counted_and_exported() {
        let r = MetricsRegistry::new();
        r.request_body_timed_out();
        r.request_body_timed_out();
        assert_eq!(r.request_body_timeouts(), 2);
        let mut out = String::new();
        r.render_prometheus(&mut out);
        assert!(
            out.contains("# TYPE baton_request_body_timeouts_total counter\nbaton_request_body_timeouts_total 2\n"),
            "{out}"
        );
    }
}
