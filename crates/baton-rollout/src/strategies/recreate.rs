//! recreate: stop every old instance (the proxy holds requests meanwhile), then start the
//! new version and route each instance as it gets ready. Also the plan of a first deploy
//! (nothing to stop). Never runs two versions at once, not even while reverting.

use super::{ready_of, Cx, Next, Progress};
use crate::book::{Book, Side};
use crate::converge::Converge;
use crate::{RolloutSpec, RoutePlan};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Recreate {
    phase: Phase,
    /// Nothing was serving when the deployment began: no stop phase.
    fresh: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Phase {
    StopOld,
    Fill,
}

// === impl Recreate ===

impl Recreate {
    pub(crate) fn new() -> Recreate {
        Recreate {
            phase: Phase::StopOld,
            fresh: false,
        }
    }

    pub(crate) fn fresh() -> Recreate {
        Recreate {
            phase: Phase::Fill,
            fresh: true,
        }
    }

    pub(crate) fn reconcile(&mut self, cx: &mut Cx<'_>) -> Next {
        match self.phase {
            Phase::StopOld => {
                for inst in cx.book.insts().to_vec() {
                    if inst.side == Side::Old {
                        cx.book.stop(&inst.id);
                    }
                }
                if cx.book.present(Side::Old) > 0 {
                    return Next::Idle;
                }
                self.phase = Phase::Fill;
                cx.book.note(format!(
                    "all instances of the previous version stopped; starting {} of {}",
                    cx.spec.replicas, cx.spec.to_version
                ));
                Next::Again
            }
            Phase::Fill => fill(cx),
        }
    }

    pub(crate) fn route(&self, book: &Book) -> RoutePlan {
        book.plan(&[(Side::New, 100)], Vec::new(), None)
    }

    /// The steps' labels, as `progress` counts them.
    pub(crate) fn step_labels(&self, spec: &RolloutSpec) -> Vec<String> {
        let start = format!("start {} × {}", spec.replicas, spec.to_version);
        if self.fresh {
            return vec![start];
        }
        let from = spec
            .from_version
            .as_deref()
            .unwrap_or("the previous version");
        vec![format!("stop {from} (requests held)"), start]
    }

    pub(crate) fn progress(&self, spec: &RolloutSpec, book: &Book) -> Progress {
        let start = format!(
            "starting {} of {} ({})",
            spec.replicas,
            spec.to_version,
            ready_of(book, Side::New, spec.replicas)
        );
        match (self.fresh, self.phase) {
            (true, _) => Progress {
                step: start,
                index: 0,
                total: 1,
                reason: None,
            },
            (false, Phase::StopOld) => Progress {
                step: format!(
                    "stopping {} instance(s) of {} (requests are held)",
                    spec.from_instances.len(),
                    spec.from_version
                        .as_deref()
                        .unwrap_or("the previous version")
                ),
                index: 0,
                total: 2,
                reason: None,
            },
            (false, Phase::Fill) => Progress {
                step: start,
                index: 1,
                total: 2,
                reason: None,
            },
        }
    }
}

/// Start `replicas` new instances; succeed when all are ready. A failure reverts (see
/// `Plan::revert_shape`), so a failed instance is never replaced here.
fn fill(cx: &mut Cx<'_>) -> Next {
    while cx.book.present(Side::New) < cx.spec.replicas {
        cx.book.start(Side::New);
    }
    if cx.book.ready(Side::New) >= cx.spec.replicas {
        return Next::End(Converge::succeed(None));
    }
    Next::Idle
}
