//! Keeps a short history of per-version metrics snapshots so the controller can report
//! live rates and hand analysis windows of samples without touching the hot path. The
//! samples are the fleet's: this process's proxy and the proxies on other nodes.

use crate::fleet::Fleet;
use baton_core::Millis;
use baton_metrics::{MetricsRegistry, MetricsSnapshot};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How much history is kept per version (as long as the proxy keeps the metrics of a
/// version it no longer routes).
const KEEP: Duration = baton_proxy::METRICS_KEPT;

/// Samples between two sweeps for versions no longer routed.
const RETIRE_EVERY: u64 = 10;

/// Snapshots of one version, oldest first. A snapshot equal to the one before it (a
/// version without traffic) is the same allocation.
type Series = VecDeque<(Millis, Arc<MetricsSnapshot>)>;

#[derive(Default)]
pub struct Sampler {
    /// Keyed by (app, version).
    series: Mutex<BTreeMap<(String, String), Series>>,
}

impl Sampler {
    /// Takes one sample of every version (called about once a second): what this
    /// process's proxy counted plus what the proxies on other nodes reported.
    pub fn sample(&self, metrics: &MetricsRegistry, fleet: &Fleet, now: Millis) {
        let mut all = fleet.counters(std::time::Instant::now());
        for (app, version, snap) in metrics.snapshot_all() {
            all.entry((app, version)).or_default().merge(&snap);
        }
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        // A version no proxy counts any more (its metrics were retired, see
        // `Proxy::retire_metrics`) has nothing more to say.
        series.retain(|key, _| all.contains_key(key));
        for ((app, version), snap) in all {
            let ring = series.entry((app, version)).or_default();
            let snap = match ring.back() {
                Some((_, last)) if **last == snap => last.clone(),
                _ => Arc::new(snap),
            };
            ring.push_back((now, snap));
            while ring
                .front()
                .is_some_and(|(t, _)| now.since(*t) > KEEP && ring.len() > 2)
            {
                ring.pop_front();
            }
        }
    }

    /// What happened to `app`/`version` over the last `window` (or since the first sample).
    pub fn window(
        &self,
        app: &str,
        version: &str,
        window: Duration,
    ) -> Option<(Duration, MetricsSnapshot)> {
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let ring = series.get(&(app.to_string(), version.to_string()))?;
        let newest = ring.back()?;
        let (last_t, last) = newest;
        let (first_t, first) = ring
            .iter()
            .find(|(t, _)| last_t.since(*t) <= window)
            .unwrap_or(newest);
        Some((last_t.since(*first_t), last.delta(first)))
    }

    /// Everything recorded for `app`/`version` since `since` (a deployment's start).
    pub fn since(&self, app: &str, version: &str, since: Millis) -> Option<MetricsSnapshot> {
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let ring = series.get(&(app.to_string(), version.to_string()))?;
        let (_, last) = ring.back()?;
        let base = ring.iter().rev().find(|(t, _)| *t <= since).map(|(_, s)| s);
        Some(match base {
            Some(b) => last.delta(b),
            None => (**last).clone(),
        })
    }
}

/// Samples every second. Every [`RETIRE_EVERY`] samples, first, the proxy forgets the
/// metrics of versions it has not routed for [`baton_proxy::METRICS_KEPT`] (as long as
/// samples are kept here).
pub fn spawn(
    proxy: baton_proxy::Proxy,
    metrics: Arc<MetricsRegistry>,
    fleet: Arc<Fleet>,
    sampler: Arc<Sampler>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        for n in 0u64.. {
            tick.tick().await;
            // It walks every version and every routed pool under the lock publishing
            // takes; the 10-minute clock needs no finer tick than this.
            let retired = if n % RETIRE_EVERY == 0 {
                proxy.retire_metrics(baton_proxy::METRICS_KEPT)
            } else {
                Vec::new()
            };
            for (app, version) in &retired {
                tracing::debug!(%app, %version, "metrics of a version no longer routed forgotten");
            }
            fleet.forget(&retired);
            sampler.sample(&metrics, &fleet, Millis::now());
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn one_request(m: &baton_metrics::VersionMetrics) {
        m.request_started();
        m.request_finished(200, Duration::from_micros(300), 0, 0);
    }

    #[test]
    fn samples_without_traffic_share_one_copy_and_a_retired_version_goes() {
        let metrics = MetricsRegistry::new();
        let fleet = Fleet::new(1);
        let sampler = Sampler::default();
        let v1 = metrics.version("web", "v1");
        one_request(&v1);
        metrics.version("web", "v2");
        for t in 1..=3 {
            sampler.sample(&metrics, &fleet, Millis(t * 1_000));
        }
        let key = ("web".to_string(), "v1".to_string());
        {
            let series = sampler.series.lock().unwrap();
            let ring = &series[&key];
            assert_eq!(ring.len(), 3);
            assert!(Arc::ptr_eq(&ring[0].1, &ring[2].1), "unchanged: one copy");
        }
        one_request(&v1);
        sampler.sample(&metrics, &fleet, Millis(4_000));
        {
            let series = sampler.series.lock().unwrap();
            let ring = &series[&key];
            assert!(!Arc::ptr_eq(&ring[2].1, &ring[3].1));
            assert_eq!(ring[3].1.requests, 2);
        }
        let (span, last) = sampler.window("web", "v1", Duration::from_secs(1)).unwrap();
        assert_eq!((span, last.requests), (Duration::from_secs(1), 1));
        assert_eq!(
            sampler.since("web", "v1", Millis(1_000)).unwrap().requests,
            1
        );
        // Its metrics retired: its samples go with them; v2's stay.
        metrics.remove_version("web", "v1");
        sampler.sample(&metrics, &fleet, Millis(5_000));
        assert!(sampler
            .window("web", "v1", Duration::from_secs(60))
            .is_none());
        assert!(sampler
            .window("web", "v2", Duration::from_secs(60))
            .is_some());
    }
}
