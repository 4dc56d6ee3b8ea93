//! The one way every deployment ends: converge on one side (the new version on success,
//! the old one on failure, abort or rollback). Route the kept side, stop the other side
//! (keeping its ready instances only while capacity needs them), optionally start
//! old-version instances again to restore the count, and `Finish` once every other
//! instance is stopped.
//!
//! **Invariant:** the kept side is routed before anything of the other side is stopped,
//! and `Finish` comes only when nothing but ready kept instances is left running.

use crate::book::{Book, Phase, Side};
use crate::{Finish, Outcome, RoutePlan, Warm};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Converge {
    pub keep: Side,
    pub outcome: Outcome,
    pub reason: Option<String>,
    /// Start kept-side instances until this many are live (recreate and rolling stopped
    /// old instances on purpose, so a revert brings them back).
    pub restore: Option<Restore>,
    /// Ready instances of the other side stay routed while stopping one would drop the
    /// ready total below this (rolling's `replicas - max_unavailable`).
    pub min_ready: u32,
    /// Never run both sides at once (recreate): restore only once the other side is gone.
    pub exclusive: bool,
    /// Blue/green's warm hand-over: the other side's ready instances are unrouted but
    /// left running, and handed to the controller in `Finish::warm` for this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Restore {
    pub to: u32,
    /// Never more instances in total than this while restoring.
    pub max_total: u32,
    /// Starts left: one attempt per missing instance. A restore instance that fails is
    /// not retried here (the controller keeps the stable count after the deployment).
    pub budget: u32,
}

/// How a strategy reverts (goes back to the old side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RevertShape {
    pub restore_to: Option<u32>,
    pub max_total: u32,
    pub min_ready: u32,
    pub exclusive: bool,
}

impl RevertShape {
    /// The old side was left untouched (blue/green, canary, A/B): back at once.
    pub(crate) const UNTOUCHED: RevertShape = RevertShape {
        restore_to: None,
        max_total: u32::MAX,
        min_ready: 0,
        exclusive: false,
    };
}

// === impl Converge ===

impl Converge {
    /// Keep the new version: the deployment succeeded.
    pub(crate) fn succeed(reason: Option<String>) -> Converge {
        Converge::keep(Side::New, Outcome::Succeeded, reason)
    }

    /// Keep the new version and leave the old side's ready instances running, out of
    /// routing, for the controller to keep warm for `keep_for_ms`.
    pub(crate) fn succeed_warm(keep_for_ms: u64) -> Converge {
        Converge {
            warm_ms: Some(keep_for_ms),
            ..Converge::succeed(None)
        }
    }

    /// Keep one side with nothing to restore.
    pub(crate) fn keep(keep: Side, outcome: Outcome, reason: Option<String>) -> Converge {
        Converge {
            keep,
            outcome,
            reason,
            restore: None,
            min_ready: 0,
            exclusive: false,
            warm_ms: None,
        }
    }

    /// Go back to the old side in `shape`'s way.
    pub(crate) fn revert(
        book: &Book,
        shape: RevertShape,
        outcome: Outcome,
        reason: String,
    ) -> Converge {
        let restore = match (shape.restore_to, book.version(Side::Old)) {
            (Some(to), Some(_)) => Some(Restore {
                to,
                max_total: shape.max_total,
                budget: to,
            }),
            _ => None,
        };
        Converge {
            keep: Side::Old,
            outcome,
            reason: Some(reason),
            restore,
            min_ready: shape.min_ready,
            exclusive: shape.exclusive,
            warm_ms: None,
        }
    }

    pub(crate) fn reconcile(&mut self, book: &mut Book) {
        // The baseline only exists for the comparison: every ending stops it at once.
        for phase in [Phase::Starting, Phase::Ready, Phase::Failed] {
            for id in book.ids(Side::Baseline, phase) {
                book.stop(&id);
            }
        }
        let other = self.keep.other();
        for id in book.ids(other, Phase::Starting) {
            book.stop(&id);
        }
        if self.warm_ms.is_some() {
            // Handed over warm in `finish`: unrouted, not stopped.
            return;
        }
        while book.ready(other) > 0 {
            let capacity_ok = book.ready(self.keep) + book.ready(other) > self.min_ready;
            if !capacity_ok && self.waiting_for_capacity(book) {
                break;
            }
            let ids = book.ids(other, Phase::Ready);
            if let Some(id) = ids.first() {
                book.stop(id);
            }
        }
        self.restore(book);
    }

    /// Kept-side capacity is still on its way (starting, or about to be restored).
    fn waiting_for_capacity(&self, book: &Book) -> bool {
        if book.starting(self.keep) > 0 {
            return true;
        }
        let Some(r) = &self.restore else {
            return false;
        };
        let wants = r.budget > 0 && book.live(self.keep) < r.to;
        let stopping =
            book.count(Side::Old, Phase::Stopping) + book.count(Side::New, Phase::Stopping);
        wants && (book.total() < r.max_total || stopping > 0)
    }

    fn restore(&mut self, book: &mut Book) {
        let other_present = book.present(self.keep.other());
        let Some(r) = &mut self.restore else {
            return;
        };
        if self.exclusive && other_present > 0 {
            return;
        }
        while r.budget > 0 && book.live(self.keep) < r.to && book.total() < r.max_total {
            if book.start(self.keep).is_none() {
                return;
            }
            r.budget -= 1;
        }
    }

    pub(crate) fn route(&self, book: &Book) -> RoutePlan {
        let other = self.keep.other();
        if book.ready(other) == 0 || self.warm_ms.is_some() {
            return book.plan(&[(self.keep, 100)], Vec::new(), None);
        }
        let pools = [
            (Side::New, book.ready(Side::New)),
            (Side::Old, book.ready(Side::Old)),
        ];
        book.plan(&pools, Vec::new(), None)
    }

    /// Everything but ready kept instances (and, handing over warm, the other side's
    /// ready ones) has stopped, and nothing more will start.
    pub(crate) fn done(&self, book: &Book) -> bool {
        let warm = self.warm_ms.is_some();
        book.insts().iter().all(|i| {
            i.phase == Phase::Stopped
                || (i.phase == Phase::Ready
                    && (i.side == self.keep || (warm && i.side != Side::Baseline)))
        })
    }

    pub(crate) fn finish(&self, book: &Book) -> Finish {
        let other = self.keep.other();
        let warm = match (self.warm_ms, book.version(other)) {
            (Some(keep_for_ms), Some(version)) if book.ready(other) > 0 => Some(Warm {
                version: version.to_string(),
                instances: book.ids(other, Phase::Ready),
                keep_for_ms,
            }),
            _ => None,
        };
        Finish {
            outcome: self.outcome,
            stable_version: book.version(self.keep).map(str::to_string),
            instances: book.ids(self.keep, Phase::Ready),
            reason: self.reason.clone(),
            warm,
        }
    }

    pub(crate) fn describe(&self, book: &Book) -> String {
        let keep = book.version(self.keep).unwrap_or("nothing");
        let other = self.keep.other();
        let leaving = book.present(other);
        let other_v = book.version(other).unwrap_or("nothing");
        let verb = match self.outcome {
            Outcome::Succeeded => "finishing",
            Outcome::Failed => "rolling back",
            Outcome::Aborted => "aborting",
            Outcome::RolledBack => "rolling back",
        };
        let mut s = format!("{verb}: {} of {keep} ready", book.ready(self.keep));
        if let Some(r) = &self.restore {
            s.push_str(&format!(" (restoring to {})", r.to));
        }
        if leaving > 0 {
            s.push_str(&format!(", stopping {leaving} of {other_v}"));
        }
        s
    }
}
