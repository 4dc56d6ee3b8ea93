//! The proxies on other nodes (`[cluster]`, `baton proxy`), as the controller knows them
//! from their reports: which route table each serves, its per-version metrics, and its
//! requests still in flight on backends the table no longer routes to. The sampler adds
//! their metrics to this process's own, so the canary judge and the status see the
//! fleet's traffic; a drain waits for every proxy that reported lately, not only for the
//! proxy in this process.
//!
//! A proxy that has not reported for [`STALE`] no longer holds a drain up (it may be gone
//! for good, or cut off from the controller: then it keeps serving its last table, and its
//! own passive checks and retries cover instances that stop meanwhile). Its counters stay
//! in the sum, which therefore only grows; a proxy that restarts starts counting from zero,
//! so what its previous run counted is carried over (`carried`).

use baton_metrics::MetricsSnapshot;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// A proxy silent for this long is out of the drain's count (it reports every second,
/// and at once after taking a new table).
pub const STALE: Duration = Duration::from_secs(3);

/// Where a proxy is in the controller's stream of route tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct Position {
    /// The controller process that published the table (a new one starts over).
    pub epoch: u64,
    /// The controller proxy's generation of that table.
    pub generation: u64,
}

/// The route table the controller serves, at its position.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoutesFrame {
    pub position: Position,
    pub table: baton_core::RouteTableSpec,
    /// Instances found dead by the controller's health checks (and not routed again):
    /// a proxy sends the requests it has waiting on them elsewhere, as the controller's
    /// own proxy did (`Proxy::abandon`).
    #[serde(default)]
    pub abandoned: Vec<String>,
}

/// One version's counters as a proxy counted them since it started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionCounters {
    pub app: String,
    pub version: String,
    pub metrics: MetricsSnapshot,
}

/// What a proxy tells the controller, every second and after each new table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProxyReport {
    /// The proxy's name (`[cluster] name`, else host name and pid).
    pub name: String,
    /// Its process's start (a new value = it restarted and counts from zero).
    pub boot: u64,
    /// The table it serves now.
    pub serving: Position,
    /// Everything it counted since it started.
    pub versions: Vec<VersionCounters>,
    /// Backends its table no longer routes to that still have requests in flight.
    pub lingering: Vec<(String, u64)>,
}

/// What the controller knows of one proxy, for `baton status` and the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProxyView {
    pub name: String,
    pub serving: Position,
    /// Milliseconds since its last report.
    pub last_report_ms: u64,
    /// Reported within [`STALE`].
    pub live: bool,
    /// Requests it counted since it started, all versions.
    pub requests: u64,
}

struct Member {
    boot: u64,
    serving: Position,
    seen: Instant,
    latest: BTreeMap<(String, String), MetricsSnapshot>,
    /// What its earlier runs counted (a restart resets its counters).
    carried: BTreeMap<(String, String), MetricsSnapshot>,
    lingering: BTreeMap<String, u64>,
}

/// The proxies following this controller.
pub struct Fleet {
    /// This controller process (`Position::epoch` of what it publishes).
    epoch: u64,
    members: Mutex<BTreeMap<String, Member>>,
    reported: Notify,
}

impl Fleet {
    pub fn new(epoch: u64) -> Fleet {
        Fleet {
            epoch,
            members: Mutex::default(),
            reported: Notify::new(),
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    fn members(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Member>> {
        self.members.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a proxy's report.
    pub fn report(&self, report: ProxyReport, now: Instant) {
        let latest: BTreeMap<_, _> = report
            .versions
            .into_iter()
            .map(|v| ((v.app, v.version), v.metrics))
            .collect();
        let mut members = self.members();
        let member = members.entry(report.name.clone()).or_insert_with(|| {
            tracing::info!(proxy = %report.name, "a proxy joined");
            Member {
                boot: report.boot,
                serving: report.serving,
                seen: now,
                latest: BTreeMap::new(),
                carried: BTreeMap::new(),
                lingering: BTreeMap::new(),
            }
        });
        if member.boot != report.boot {
            tracing::info!(proxy = %report.name, "the proxy restarted; its earlier counts are kept");
            for (key, snap) in std::mem::take(&mut member.latest) {
                member.carried.entry(key).or_default().merge(&snap);
            }
            member.boot = report.boot;
        }
        member.latest = latest;
        member.serving = report.serving;
        member.seen = now;
        member.lingering = report.lingering.into_iter().collect();
        drop(members);
        self.reported.notify_waiters();
    }

    /// Every version the proxies counted, summed over them (and over their restarts).
    /// `in_flight` only counts proxies that are live.
    pub fn counters(&self, now: Instant) -> BTreeMap<(String, String), MetricsSnapshot> {
        let members = self.members();
        let mut sum: BTreeMap<(String, String), MetricsSnapshot> = BTreeMap::new();
        for m in members.values() {
            let live = now.saturating_duration_since(m.seen) < STALE;
            for (key, snap) in m.carried.iter().chain(&m.latest) {
                let total = sum.entry(key.clone()).or_default();
                if live {
                    total.merge(snap);
                } else {
                    let mut counted = snap.clone();
                    counted.in_flight = 0;
                    total.merge(&counted);
                }
            }
        }
        sum
    }

    /// Forgets what every proxy counted for these `(app, version)`s: their metrics were
    /// retired here ([`baton_proxy::Proxy::retire_metrics`]), and the proxies on other
    /// nodes, following the same table, retire them too. Counts kept from a proxy's
    /// earlier run and those of a proxy gone for good would otherwise stay forever.
    pub fn forget(&self, versions: &[(String, String)]) {
        if versions.is_empty() {
            return;
        }
        for m in self.members().values_mut() {
            for key in versions {
                m.latest.remove(key);
                m.carried.remove(key);
            }
        }
    }

    /// The proxies, by name.
    pub fn view(&self, now: Instant) -> Vec<ProxyView> {
        self.members()
            .iter()
            .map(|(name, m)| {
                let since = now.saturating_duration_since(m.seen);
                ProxyView {
                    name: name.clone(),
                    serving: m.serving,
                    last_report_ms: u64::try_from(since.as_millis()).unwrap_or(u64::MAX),
                    live: since < STALE,
                    requests: m.latest.values().map(|s| s.requests).sum(),
                }
            })
            .collect()
    }

    /// The live proxies that still route to `backend` or still have requests on it:
    /// those serving a table older than `generation` (this controller's table without
    /// it), or reporting it in flight.
    pub fn holding(&self, backend: &str, generation: u64, now: Instant) -> Vec<String> {
        self.members()
            .iter()
            .filter(|(_, m)| now.saturating_duration_since(m.seen) < STALE)
            .filter(|(_, m)| {
                let behind = m.serving.epoch != self.epoch || m.serving.generation < generation;
                behind || m.lingering.get(backend).is_some_and(|n| *n > 0)
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Waits until no live proxy routes to `backend` or has a request on it (see
    /// [`Fleet::holding`]), or `timeout`. Returns the proxies still holding it at the
    /// deadline (empty when all let go).
    pub async fn drained(&self, backend: &str, generation: u64, timeout: Duration) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let reported = self.reported.notified();
            tokio::pin!(reported);
            reported.as_mut().enable();
            let holding = self.holding(backend, generation, Instant::now());
            if holding.is_empty() {
                return holding;
            }
            // A proxy that goes silent lets go after STALE: look again then at the latest.
            let wake = (tokio::time::Instant::now() + Duration::from_millis(500)).min(deadline);
            tokio::select! {
                _ = reported => {}
                _ = tokio::time::sleep_until(wake) => {
                    if tokio::time::Instant::now() >= deadline {
                        return self.holding(backend, generation, Instant::now());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn counted(requests: u64, in_flight: i64) -> MetricsSnapshot {
        let mut s = MetricsSnapshot {
            requests,
            in_flight,
            ..Default::default()
        };
        s.by_class[2] = requests;
        for _ in 0..requests {
            s.latency.record(1_000);
        }
        s
    }

    fn report(name: &str, boot: u64, generation: u64, requests: u64) -> ProxyReport {
        ProxyReport {
            name: name.into(),
            boot,
            serving: Position {
                epoch: 7,
                generation,
            },
            versions: vec![VersionCounters {
                app: "web".into(),
                version: "v2".into(),
                metrics: counted(requests, 1),
            }],
            lingering: vec![],
        }
    }

    #[test]
    fn counters_add_up_over_proxies_and_over_a_proxys_restarts() {
        let fleet = Fleet::new(7);
        let t0 = Instant::now();
        fleet.report(report("a", 1, 3, 10), t0);
        fleet.report(report("b", 1, 3, 5), t0);
        let key = ("web".to_string(), "v2".to_string());
        let sum = fleet.counters(t0);
        assert_eq!(sum[&key].requests, 15);
        assert_eq!(sum[&key].latency.count(), 15);
        assert_eq!(sum[&key].in_flight, 2);
        // `a` counts on, then restarts and counts from zero: its first run is kept.
        fleet.report(report("a", 1, 3, 40), t0);
        fleet.report(report("a", 2, 3, 4), t0);
        assert_eq!(fleet.counters(t0)[&key].requests, 40 + 4 + 5);
        // A silent proxy's counts stay, its in-flight gauge does not.
        let later = t0 + STALE + Duration::from_secs(1);
        let sum = fleet.counters(later);
        assert_eq!(sum[&key].requests, 49);
        assert_eq!(sum[&key].in_flight, 0);
        let view = fleet.view(later);
        assert_eq!(view.len(), 2);
        assert!(view.iter().all(|p| !p.live));
        // Retired: neither the kept counts nor the silent proxy's last report stay.
        fleet.forget(std::slice::from_ref(&key));
        assert!(!fleet.counters(later).contains_key(&key));
    }

    #[test]
    fn a_backend_is_held_by_live_proxies_behind_the_table_or_with_requests_on_it() {
        let fleet = Fleet::new(7);
        let t0 = Instant::now();
        fleet.report(report("behind", 1, 4, 0), t0);
        let mut busy = report("busy", 1, 5, 0);
        busy.lingering = vec![("web-1".into(), 2)];
        fleet.report(busy, t0);
        fleet.report(report("done", 1, 6, 0), t0);
        assert_eq!(fleet.holding("web-1", 5, t0), ["behind", "busy"]);
        assert_eq!(fleet.holding("web-2", 5, t0), ["behind"]);
        // A table from another controller process is behind whatever its generation.
        let mut other = report("other-epoch", 1, 99, 0);
        other.serving.epoch = 6;
        fleet.report(other, t0);
        assert!(fleet
            .holding("web-2", 5, t0)
            .contains(&"other-epoch".to_string()));
        // Silent proxies hold nothing.
        assert!(fleet
            .holding("web-1", 5, t0 + STALE + Duration::from_millis(1))
            .is_empty());
    }

    #[tokio::test]
    async fn a_drain_ends_when_the_last_proxy_lets_go_or_at_the_deadline() {
        let fleet = std::sync::Arc::new(Fleet::new(7));
        fleet.report(report("a", 1, 4, 0), Instant::now());
        // Nobody catches up: the deadline ends it and names who held on.
        let held = fleet.drained("web-1", 5, Duration::from_millis(100)).await;
        assert_eq!(held, ["a"]);
        let f = fleet.clone();
        let waiter =
            tokio::spawn(async move { f.drained("web-1", 5, Duration::from_secs(60)).await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        fleet.report(report("a", 1, 5, 0), Instant::now());
        assert!(waiter.await.unwrap().is_empty());
    }
}
