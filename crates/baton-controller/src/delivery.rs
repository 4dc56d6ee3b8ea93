//! Delivery figures of one app from its deployment history: how often it deploys, how
//! often a change fails, and how long restoring the previous version takes (the four
//! "DORA" measures without lead time, which baton cannot see). Pure: the history and
//! `now` come in.
//!
//! The rules, in the history's own terms:
//! - a *deployment* is every entry except a switch back (`outcome = rolled_back`) and a
//!   redeploy of the version the previous entry replaced (`baton rollback` without a
//!   warm set): those restore, they do not change anything;
//! - a *failed change* is a deployment that ended `failed` or `aborted` (traffic went
//!   back before it finished), or one that succeeded and was then restored by the next
//!   entry;
//! - its *time to restore* runs from when the new version could first be hurting users to
//!   when the previous version served again: start to end of a failed or aborted
//!   deployment; end of the succeeded deployment to end of the restoring entry.

use crate::model::HistoryEntry;
use baton_core::Millis;
use baton_rollout::Outcome;
use serde::{Deserialize, Serialize};

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// The figures over one window that ends now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeliveryStats {
    /// The window's length in days.
    pub days: u32,
    /// Deployments that finished in the window (restoring entries excluded).
    pub deployments: u32,
    /// `deployments / days`.
    pub per_day: f64,
    pub failed_changes: u32,
    /// `failed_changes / deployments`; null without deployments.
    pub change_failure_rate: Option<f64>,
    /// Mean time to restore over the failed changes restored in the window; null when
    /// there were none.
    pub mean_time_to_restore_ms: Option<u64>,
}

/// The same figures over the last 7 and the last 30 days.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Delivery {
    pub app: String,
    pub last_7_days: DeliveryStats,
    pub last_30_days: DeliveryStats,
}

/// Whether `e` restores what the entry before it changed rather than changing anything.
fn restores(e: &HistoryEntry, before: Option<&HistoryEntry>) -> bool {
    e.outcome == Outcome::RolledBack
        || (e.outcome == Outcome::Succeeded
            && before.is_some_and(|b| {
                b.outcome == Outcome::Succeeded
                    && b.from_version.as_deref() == Some(e.to_version.as_str())
            }))
}

/// The figures of `history` (oldest first, as the store returns it) over the `days`
/// before `now`.
pub fn stats(history: &[HistoryEntry], now: Millis, days: u32) -> DeliveryStats {
    let from = now.0.saturating_sub(u64::from(days) * DAY_MS);
    let mut deployments = 0u32;
    let mut failed = 0u32;
    let mut restore_ms: Vec<u64> = Vec::new();
    for (i, e) in history.iter().enumerate() {
        let before = i.checked_sub(1).and_then(|j| history.get(j));
        if restores(e, before) {
            continue;
        }
        if e.finished_at.0 < from || e.finished_at.0 > now.0 {
            continue;
        }
        deployments += 1;
        match e.outcome {
            Outcome::Failed | Outcome::Aborted => {
                failed += 1;
                restore_ms.push(e.finished_at.0.saturating_sub(e.started_at.0));
            }
            Outcome::Succeeded => {
                if let Some(next) = history.get(i + 1).filter(|n| restores(n, Some(e))) {
                    failed += 1;
                    restore_ms.push(next.finished_at.0.saturating_sub(e.finished_at.0));
                }
            }
            Outcome::RolledBack => {}
        }
    }
    DeliveryStats {
        days,
        deployments,
        per_day: f64::from(deployments) / f64::from(days.max(1)),
        failed_changes: failed,
        change_failure_rate: (deployments > 0).then(|| f64::from(failed) / f64::from(deployments)),
        mean_time_to_restore_ms: (!restore_ms.is_empty())
            .then(|| restore_ms.iter().sum::<u64>() / restore_ms.len() as u64),
    }
}

/// The 7- and 30-day figures of `app`.
pub fn delivery(app: &str, history: &[HistoryEntry], now: Millis) -> Delivery {
    Delivery {
        app: app.to_string(),
        last_7_days: stats(history, now, 7),
        last_30_days: stats(history, now, 30),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(from: Option<&str>, to: &str, outcome: Outcome, start: u64, end: u64) -> HistoryEntry {
        HistoryEntry {
            id: format!("web-{start}"),
            app: "web".into(),
            from_version: from.map(str::to_string),
            to_version: to.into(),
            strategy: "canary".into(),
            outcome,
            started_at: Millis(start),
            finished_at: Millis(end),
            duration_ms: end - start,
            reason: None,
            warm_until: None,
            analysis: None,
            hooks: Vec::new(),
            irreversible: false,
        }
    }

    const NOW: u64 = 100 * DAY_MS;

    #[test]
    fn no_history_has_no_rates() {
        let s = stats(&[], Millis(NOW), 7);
        assert_eq!(s.deployments, 0);
        assert_eq!(s.per_day, 0.0);
        assert_eq!(s.change_failure_rate, None);
        assert_eq!(s.mean_time_to_restore_ms, None);
    }

    #[test]
    fn failed_and_aborted_deployments_restore_at_their_end() {
        let d = NOW - DAY_MS;
        let h = [
            entry(None, "v1", Outcome::Succeeded, d, d + 1_000),
            entry(Some("v1"), "v2", Outcome::Failed, d + 2_000, d + 62_000),
            entry(Some("v1"), "v3", Outcome::Aborted, d + 70_000, d + 90_000),
            entry(
                Some("v1"),
                "v4",
                Outcome::Succeeded,
                d + 100_000,
                d + 110_000,
            ),
        ];
        let s = stats(&h, Millis(NOW), 7);
        assert_eq!(s.deployments, 4);
        assert_eq!(s.failed_changes, 2);
        assert_eq!(s.change_failure_rate, Some(0.5));
        assert_eq!(s.mean_time_to_restore_ms, Some((60_000 + 20_000) / 2));
        assert!((s.per_day - 4.0 / 7.0).abs() < 1e-12);
    }

    #[test]
    fn a_switch_back_or_a_redeploy_of_the_previous_version_is_a_restore_not_a_deployment() {
        let d = NOW - DAY_MS;
        let h = [
            entry(None, "v1", Outcome::Succeeded, d, d + 1_000),
            // v2 succeeds, then the operator switches back to the warm v1 5 s later.
            entry(Some("v1"), "v2", Outcome::Succeeded, d + 2_000, d + 3_000),
            entry(Some("v2"), "v1", Outcome::RolledBack, d + 8_000, d + 8_000),
            // v3 succeeds, then `baton rollback` redeploys v1 (done 40 s later).
            entry(Some("v1"), "v3", Outcome::Succeeded, d + 10_000, d + 20_000),
            entry(Some("v3"), "v1", Outcome::Succeeded, d + 30_000, d + 60_000),
        ];
        let s = stats(&h, Millis(NOW), 7);
        assert_eq!(s.deployments, 3, "v1, v2, v3");
        assert_eq!(s.failed_changes, 2, "v2 and v3 were restored");
        assert_eq!(s.mean_time_to_restore_ms, Some((5_000 + 40_000) / 2));
    }

    #[test]
    fn the_window_counts_what_finished_in_it() {
        let h = [
            entry(
                None,
                "v1",
                Outcome::Succeeded,
                NOW - 20 * DAY_MS,
                NOW - 20 * DAY_MS,
            ),
            entry(
                Some("v1"),
                "v2",
                Outcome::Failed,
                NOW - 10 * DAY_MS,
                NOW - 10 * DAY_MS + 5,
            ),
            entry(
                Some("v1"),
                "v3",
                Outcome::Succeeded,
                NOW - DAY_MS,
                NOW - DAY_MS,
            ),
        ];
        let week = stats(&h, Millis(NOW), 7);
        assert_eq!((week.deployments, week.failed_changes), (1, 0));
        assert_eq!(week.change_failure_rate, Some(0.0));
        assert_eq!(week.mean_time_to_restore_ms, None);
        let month = delivery("web", &h, Millis(NOW)).last_30_days;
        assert_eq!((month.deployments, month.failed_changes), (3, 1));
        assert_eq!(month.mean_time_to_restore_ms, Some(5));
    }
}
