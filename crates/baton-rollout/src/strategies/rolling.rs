//! rolling: replace instances in batches as Kubernetes does, bounded by `max_surge`
//! (instances above `replicas`) and `max_unavailable` (ready instances below `replicas`).
//!
//! **Invariant:** this strategy never starts an instance while `replicas + surge` may be
//! running (stopping instances count until `Stopped`: in-place really is in place), and
//! never stops a ready instance that would leave fewer than `replicas - unavailable`
//! ready. A revert is a rolling update back to the old version under the same bounds.

use super::{Cx, Next, Progress, Refusal};
use crate::book::{Book, Side};
use crate::converge::{Converge, RevertShape};
use crate::{RollingSpec, RolloutSpec, RoutePlan, StrategySpec};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Rolling {
    /// `max_surge` resolved against `replicas` (rounded up).
    surge: u32,
    /// `max_unavailable` resolved against `replicas` (rounded down).
    unavailable: u32,
    /// Ready new instances when the last batch pause began.
    batch_mark: u32,
    /// The timer is the batch pause.
    in_batch_pause: bool,
    /// `promote` skipped the remaining batch pauses.
    skip_pauses: bool,
}

fn rolling(spec: &RolloutSpec) -> RollingSpec {
    match &spec.strategy {
        StrategySpec::Rolling(r) => r.clone(),
        _ => RollingSpec::default(),
    }
}

/// `(surge, unavailable)` for `replicas`, as Kubernetes resolves them: surge rounds up,
/// unavailable rounds down, and both zero means a surge of one.
pub(crate) fn bounds(spec: &RollingSpec, replicas: u32) -> (u32, u32) {
    let surge = spec.max_surge.resolve(replicas, true);
    let unavailable = spec.max_unavailable.resolve(replicas, false);
    if surge == 0 && unavailable == 0 {
        (1, 0)
    } else {
        (surge, unavailable)
    }
}

/// The steps' labels, as `Rolling::progress` counts them: one per replaced instance.
pub(crate) fn step_labels(spec: &RolloutSpec) -> Vec<String> {
    let n = spec.replicas;
    (1..=n)
        .map(|i| format!("replace instance {i} of {n}"))
        .collect()
}

// === impl Rolling ===

impl Rolling {
    pub(crate) fn new(spec: &RollingSpec, replicas: u32) -> Rolling {
        let (surge, unavailable) = bounds(spec, replicas);
        Rolling {
            surge,
            unavailable,
            batch_mark: 0,
            in_batch_pause: false,
            skip_pauses: false,
        }
    }

    fn min_ready(&self, replicas: u32) -> u32 {
        replicas.saturating_sub(self.unavailable)
    }

    fn max_total(&self, replicas: u32) -> u32 {
        replicas.saturating_add(self.surge)
    }

    pub(crate) fn reconcile(&mut self, cx: &mut Cx<'_>) -> Next {
        let replicas = cx.spec.replicas;
        if self.in_batch_pause {
            if !cx.book.timer_done(cx.now) {
                return Next::Idle;
            }
            cx.book.disarm();
            self.in_batch_pause = false;
        }
        if cx.book.ready(Side::New) >= replicas {
            return Next::End(Converge::succeed(None));
        }
        let pause = rolling(cx.spec).batch_pause.get();
        let batching = !pause.is_zero() && !self.skip_pauses;
        let new_starting = cx.book.starting(Side::New) > 0;
        if batching && !new_starting && cx.book.ready(Side::New) > self.batch_mark {
            self.batch_mark = cx.book.ready(Side::New);
            self.in_batch_pause = true;
            cx.book.arm(cx.now, pause);
            cx.book.note(format!(
                "batch ready ({}/{replicas} replaced); pausing {} before the next",
                self.batch_mark,
                rolling(cx.spec).batch_pause
            ));
            return Next::Idle;
        }
        // With batch pauses, a batch's replacements wait until the whole batch is ready.
        if !(batching && new_starting) {
            self.stop_old(cx.book, replicas);
        }
        while cx.book.total() < self.max_total(replicas) && cx.book.present(Side::New) < replicas {
            cx.book.start(Side::New);
        }
        Next::Idle
    }

    /// Stops ready old instances, oldest first, while the ready total stays at or above
    /// `replicas - unavailable`.
    fn stop_old(&self, book: &mut Book, replicas: u32) {
        let min_ready = self.min_ready(replicas);
        while book.ready(Side::Old) > 0 && book.ready(Side::Old) + book.ready(Side::New) > min_ready
        {
            let ids = book.ids(Side::Old, crate::book::Phase::Ready);
            if let Some(id) = ids.first() {
                book.stop(id);
            }
        }
    }

    pub(crate) fn promote(&mut self, cx: &mut Cx<'_>) -> Result<Next, Refusal> {
        if rolling(cx.spec).batch_pause.get().is_zero() {
            return Err(
                "rolling without `batch_pause` has no pause to skip: it finishes on its own".into(),
            );
        }
        if self.skip_pauses {
            return Err("batch pauses are already skipped".into());
        }
        self.skip_pauses = true;
        if self.in_batch_pause {
            self.in_batch_pause = false;
            cx.book.disarm();
        }
        cx.book.note("promote: skipping the remaining batch pauses");
        Ok(Next::Again)
    }

    /// Back to the old version's full count, as a rolling update under the same bounds.
    pub(crate) fn revert_shape(&self, spec: &RolloutSpec) -> RevertShape {
        RevertShape {
            restore_to: Some(spec.replicas),
            max_total: self.max_total(spec.replicas),
            min_ready: self.min_ready(spec.replicas),
            exclusive: false,
        }
    }

    /// New first; weights are ready counts so every instance gets the same share.
    pub(crate) fn route(&self, book: &Book) -> RoutePlan {
        let pools = [
            (Side::New, book.ready(Side::New)),
            (Side::Old, book.ready(Side::Old)),
        ];
        book.plan(&pools, Vec::new(), None)
    }

    pub(crate) fn progress(&self, spec: &RolloutSpec, book: &Book) -> Progress {
        let done = book.ready(Side::New);
        let mut step = format!(
            "{done}/{} replaced (surge {}, unavailable {})",
            spec.replicas, self.surge, self.unavailable
        );
        if self.in_batch_pause {
            step.push_str("; pausing between batches");
        }
        Progress {
            step,
            index: done as usize,
            total: spec.replicas as usize,
            reason: None,
        }
    }
}
