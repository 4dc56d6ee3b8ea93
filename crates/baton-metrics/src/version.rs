//! Lock-free counters for one app version, and the plain snapshots read from them.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::histogram::{bucket_index, duration_micros, BUCKETS};
use crate::Histogram;

/// Prometheus `class` label for each index of [`MetricsSnapshot::by_class`].
pub const CLASS_LABELS: [&str; 6] = ["none", "1xx", "2xx", "3xx", "4xx", "5xx"];

/// Index into [`MetricsSnapshot::by_class`] for a status sent to the client.
///
/// `0` (no response: the client went away or the request was aborted) is class 0;
/// anything else is its hundreds digit, clamped into `1..=5` so a nonsense status
/// (e.g. 999) still counts somewhere rather than being lost.
pub fn status_class(status: u16) -> usize {
    match status {
        0 => 0,
        s => usize::from(s / 100).clamp(1, 5),
    }
}

/// Request metrics of one app version, updated on the proxy's hot path.
///
/// Every update is a relaxed atomic add: no lock, no allocation, no ordering between
/// fields. A [`snapshot`](Self::snapshot) taken while requests finish may therefore see one
/// field a request ahead of another; windows computed with [`MetricsSnapshot::delta`] even
/// this out. About 7 KiB per version.
pub struct VersionMetrics {
    /// Finished requests by status class; their sum is the request count (one add per request).
    by_class: [AtomicU64; 6],
    /// Requests started and not yet finished.
    in_flight: AtomicI64,
    /// Request body bytes received from clients.
    bytes_in: AtomicU64,
    /// Response body bytes sent to clients.
    bytes_out: AtomicU64,
    /// Exact sum of latencies in µs, for the mean and Prometheus `_sum`.
    latency_sum_micros: AtomicU64,
    /// Latency histogram, same bucket layout as [`Histogram`].
    latency: [AtomicU64; BUCKETS],
}

// === impl VersionMetrics ===

impl VersionMetrics {
    /// All counters at zero.
    pub fn new() -> Self {
        Self {
            by_class: std::array::from_fn(|_| AtomicU64::new(0)),
            in_flight: AtomicI64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            latency_sum_micros: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// A request was accepted for this version (`in_flight += 1`).
    pub fn request_started(&self) {
        self.in_flight.fetch_add(1, Relaxed);
    }

    /// A request ended (`in_flight -= 1`).
    ///
    /// `status` is the HTTP status sent to the client, `0` when no response was sent
    /// (client went away, request aborted). `latency` is measured by the caller.
    pub fn request_finished(&self, status: u16, latency: Duration, bytes_in: u64, bytes_out: u64) {
        let micros = duration_micros(latency);
        self.in_flight.fetch_sub(1, Relaxed);
        self.by_class[status_class(status)].fetch_add(1, Relaxed);
        self.latency[bucket_index(micros)].fetch_add(1, Relaxed);
        self.latency_sum_micros.fetch_add(micros, Relaxed);
        if bytes_in > 0 {
            self.bytes_in.fetch_add(bytes_in, Relaxed);
        }
        if bytes_out > 0 {
            self.bytes_out.fetch_add(bytes_out, Relaxed);
        }
    }

    /// Copies the current values (allocates; meant for the controller, not the hot path).
    pub fn snapshot(&self) -> MetricsSnapshot {
        let by_class = std::array::from_fn(|i| self.by_class[i].load(Relaxed));
        // Up to the last bucket with a count (the rest are empty): a version whose
        // latencies stay under a few milliseconds copies ~250 counts, not all 896.
        let used = self
            .latency
            .iter()
            .rposition(|c| c.load(Relaxed) > 0)
            .map_or(0, |i| i + 1);
        let counts = self.latency[..used]
            .iter()
            .map(|c| c.load(Relaxed))
            .collect();
        MetricsSnapshot {
            requests: by_class.iter().sum(),
            by_class,
            in_flight: self.in_flight.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            latency: Histogram::from_dense(counts, self.latency_sum_micros.load(Relaxed)),
        }
    }
}

impl Default for VersionMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for VersionMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("VersionMetrics")
            .field(&self.snapshot())
            .finish()
    }
}

/// Point-in-time copy of a version's metrics (cumulative since the version was created,
/// or over a window when produced by [`delta`](Self::delta)).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    /// Finished requests (sum of `by_class`).
    pub requests: u64,
    /// Finished requests by class: index 0 = no response, 1..=5 = 1xx..5xx.
    pub by_class: [u64; 6],
    /// Requests in progress when the snapshot was taken.
    pub in_flight: i64,
    /// Request body bytes received from clients.
    pub bytes_in: u64,
    /// Response body bytes sent to clients.
    pub bytes_out: u64,
    /// Latency of finished requests.
    pub latency: Histogram,
}

// === impl MetricsSnapshot ===

impl MetricsSnapshot {
    /// What happened between `earlier` and `self`: counters subtract (saturating),
    /// `in_flight` is `self`'s (a gauge, not a counter).
    pub fn delta(&self, earlier: &MetricsSnapshot) -> MetricsSnapshot {
        MetricsSnapshot {
            requests: self.requests.saturating_sub(earlier.requests),
            by_class: std::array::from_fn(|i| self.by_class[i].saturating_sub(earlier.by_class[i])),
            in_flight: self.in_flight,
            bytes_in: self.bytes_in.saturating_sub(earlier.bytes_in),
            bytes_out: self.bytes_out.saturating_sub(earlier.bytes_out),
            latency: self.latency.delta(&earlier.latency),
        }
    }

    /// Adds `other` to this snapshot: counters and the latency histogram add, and so
    /// does `in_flight` (requests in progress on either side). Several proxies' records
    /// of one version, summed, are the fleet's.
    pub fn merge(&mut self, other: &MetricsSnapshot) {
        self.requests = self.requests.saturating_add(other.requests);
        for (mine, theirs) in self.by_class.iter_mut().zip(other.by_class) {
            *mine = mine.saturating_add(theirs);
        }
        self.in_flight = self.in_flight.saturating_add(other.in_flight);
        self.bytes_in = self.bytes_in.saturating_add(other.bytes_in);
        self.bytes_out = self.bytes_out.saturating_add(other.bytes_out);
        self.latency.merge(&other.latency);
    }

    /// Failed requests: 5xx plus requests that got no response.
    pub fn errors(&self) -> u64 {
        self.by_class[0] + self.by_class[5]
    }

    /// `errors / requests`; 0.0 when there were no requests.
    pub fn error_rate(&self) -> f64 {
        match self.requests {
            0 => 0.0,
            n => self.errors() as f64 / n as f64,
        }
    }

    /// Latency `q`-quantile (bucket midpoint, ~3% error); zero when no requests finished.
    pub fn quantile(&self, q: f64) -> Duration {
        self.latency.quantile(q)
    }

    /// Exact mean latency; zero when no requests finished.
    pub fn mean_latency(&self) -> Duration {
        self.latency.mean()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn merged_snapshots_add_every_counter_and_the_latencies() {
        let (a, b) = (VersionMetrics::new(), VersionMetrics::new());
        a.request_started();
        a.request_finished(200, Duration::from_millis(2), 10, 100);
        a.request_started();
        b.request_started();
        b.request_finished(503, Duration::from_millis(40), 0, 5);
        b.request_started();
        b.request_finished(200, Duration::from_millis(3), 1, 1);
        let mut sum = a.snapshot();
        sum.merge(&b.snapshot());
        assert_eq!(sum.requests, 3);
        assert_eq!(sum.by_class[2], 2);
        assert_eq!(sum.by_class[5], 1);
        assert_eq!(sum.in_flight, 1);
        assert_eq!((sum.bytes_in, sum.bytes_out), (11, 106));
        assert_eq!(sum.latency.count(), 3);
        assert_eq!(sum.latency.sum_micros(), 45_000);
        assert_eq!(sum.errors(), 1);
    }

    #[test]
    fn classes() {
        assert_eq!(status_class(0), 0);
        assert_eq!(status_class(101), 1);
        assert_eq!(status_class(200), 2);
        assert_eq!(status_class(304), 3);
        assert_eq!(status_class(499), 4);
        assert_eq!(status_class(503), 5);
        assert_eq!(status_class(42), 1);
        assert_eq!(status_class(999), 5);
    }

    #[test]
    fn memory_stays_modest() {
        assert!(std::mem::size_of::<VersionMetrics>() < 16 * 1024);
    }

    #[test]
    fn records_one_request() {
        let m = VersionMetrics::new();
        m.request_started();
        m.request_started();
        assert_eq!(m.snapshot().in_flight, 2);
        m.request_finished(503, Duration::from_millis(12), 100, 2_000);
        let s = m.snapshot();
        assert_eq!(s.requests, 1);
        assert_eq!(s.by_class, [0, 0, 0, 0, 0, 1]);
        assert_eq!(s.in_flight, 1);
        assert_eq!((s.bytes_in, s.bytes_out), (100, 2_000));
        assert_eq!(s.mean_latency(), Duration::from_millis(12));
        let p50 = s.quantile(0.5).as_micros() as u64;
        assert!(p50.abs_diff(12_000) <= 12_000 / 32, "{p50}");
    }

    #[test]
    fn errors_count_5xx_and_no_response() {
        let s = MetricsSnapshot {
            requests: 10,
            by_class: [1, 0, 6, 0, 1, 2],
            ..Default::default()
        };
        assert_eq!(s.errors(), 3);
        assert!((s.error_rate() - 0.3).abs() < 1e-12);
        assert_eq!(MetricsSnapshot::default().error_rate(), 0.0);
        assert_eq!(MetricsSnapshot::default().quantile(0.99), Duration::ZERO);
        assert_eq!(MetricsSnapshot::default().mean_latency(), Duration::ZERO);
    }

    #[test]
    fn delta_is_the_window_between_snapshots() {
        let m = VersionMetrics::new();
        for _ in 0..3 {
            m.request_started();
            m.request_finished(200, Duration::from_millis(1), 10, 20);
        }
        let before = m.snapshot();
        m.request_started();
        m.request_finished(500, Duration::from_millis(40), 1, 2);
        m.request_started();
        let after = m.snapshot();
        let window = after.delta(&before);
        assert_eq!(window.requests, 1);
        assert_eq!(window.by_class, [0, 0, 0, 0, 0, 1]);
        assert_eq!(window.in_flight, 1);
        assert_eq!((window.bytes_in, window.bytes_out), (1, 2));
        assert_eq!(window.latency.count(), 1);
        assert_eq!(window.mean_latency(), Duration::from_millis(40));
        assert_eq!(window.error_rate(), 1.0);
        // Reversed order saturates at zero instead of wrapping around.
        let backwards = before.delta(&after);
        assert_eq!(backwards.requests, 0);
        assert_eq!(backwards.latency.count(), 0);
        assert_eq!(after.delta(&MetricsSnapshot::default()), after);
    }

    #[test]
    fn concurrent_recording_sums_exactly() {
        const THREADS: u64 = 4;
        const PER_THREAD: u64 = 50_000;
        let m = std::sync::Arc::new(VersionMetrics::new());
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for i in 0..PER_THREAD {
                        m.request_started();
                        let status = [200, 404, 503, 0][(i % 4) as usize];
                        m.request_finished(
                            status,
                            Duration::from_micros(t * 1_000 + i % 700),
                            3,
                            5,
                        );
                    }
                })
            })
            .collect();
        handles.into_iter().for_each(|h| h.join().unwrap());
        let s = m.snapshot();
        let total = THREADS * PER_THREAD;
        assert_eq!(s.requests, total);
        assert_eq!(
            s.by_class,
            [total / 4, 0, total / 4, 0, total / 4, total / 4]
        );
        assert_eq!(s.in_flight, 0);
        assert_eq!((s.bytes_in, s.bytes_out), (3 * total, 5 * total));
        assert_eq!(s.latency.count(), total);
        let expected_sum: u64 = (0..THREADS)
            .flat_map(|t| (0..PER_THREAD).map(move |i| t * 1_000 + i % 700))
            .sum();
        assert_eq!(s.latency.sum_micros(), expected_sum);
    }

    #[test]
    fn snapshot_serde_round_trip() {
        let m = VersionMetrics::new();
        m.request_started();
        m.request_finished(201, Duration::from_micros(777), 1, 1);
        let s = m.snapshot();
        let back: MetricsSnapshot =
            serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }
}
