//! Keeps a short history of per-version metrics snapshots so the controller can report
//! live rates and hand analysis windows of samples without touching the hot path. The
//! samples are the fleet's: this process's proxy and the proxies on other nodes.

use crate::fleet::Fleet;
use baton_core::Millis;
use baton_metrics::{MetricsRegistry, MetricsSnapshot};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How much history is kept per version.
const KEEP: Duration = Duration::from_secs(600);

/// Snapshots of one version, oldest first.
type Series = VecDeque<(Millis, MetricsSnapshot)>;

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
        for ((app, version), snap) in all {
            let ring = series.entry((app, version)).or_default();
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
            None => last.clone(),
        })
    }
}

pub fn spawn(
    metrics: Arc<MetricsRegistry>,
    fleet: Arc<Fleet>,
    sampler: Arc<Sampler>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            sampler.sample(&metrics, &fleet, Millis::now());
        }
    })
}
