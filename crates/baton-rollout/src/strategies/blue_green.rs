//! blue_green: start a full set of green beside blue (which keeps 100%), wait for all of
//! it to be ready, then for `auto_promote_after` or a manual `promote`, switch 100% at
//! once and finish. With a `scale_down_delay`, blue's instances are handed to the
//! controller warm (`Finish::warm`) so a switch back is instant; without one they are
//! drained and stopped before the deployment finishes.

use super::{ready_of, Cx, Next, Progress, Refusal};
use crate::book::{Book, Side};
use crate::converge::Converge;
use crate::{BlueGreenSpec, Gate, Outcome, RolloutSpec, RoutePlan, StrategySpec};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct BlueGreen {
    phase: Phase,
    /// `promote` came while green was still starting: switch as soon as it is ready.
    promote_early: bool,
    /// `promote` came while green waited: switch once the `pre_promote` gate says go.
    #[serde(default)]
    switching: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Phase {
    /// Green starting; blue serves.
    Starting,
    /// Green ready; switching after `auto_promote_after` (the timer).
    AutoWait,
    /// Green ready; waiting for `promote`.
    ManualWait,
    /// Green serves; blue kept warm until the timer. Only deployments stored by an older
    /// baton are in this phase (the switch now finishes the deployment); it is honoured
    /// by handing blue over warm for the rest of the delay.
    Warm,
}

fn bg(spec: &RolloutSpec) -> BlueGreenSpec {
    match &spec.strategy {
        StrategySpec::BlueGreen(b) => b.clone(),
        _ => BlueGreenSpec::default(),
    }
}

/// The steps' labels, as `BlueGreen::progress` counts them.
pub(crate) fn step_labels(spec: &RolloutSpec) -> Vec<String> {
    let from = spec
        .from_version
        .as_deref()
        .unwrap_or("the previous version");
    vec![
        format!("start green ({})", spec.to_version),
        format!("switch 100% to {}", spec.to_version),
        format!("keep {from} warm for rollback"),
        format!("stop {from}"),
    ]
}

// === impl BlueGreen ===

impl BlueGreen {
    pub(crate) fn new() -> BlueGreen {
        BlueGreen {
            phase: Phase::Starting,
            promote_early: false,
            switching: false,
        }
    }

    pub(crate) fn reconcile(&mut self, cx: &mut Cx<'_>) -> Next {
        match self.phase {
            Phase::Starting => self.start_green(cx),
            Phase::AutoWait if cx.book.timer_done(cx.now) => {
                // No deadline left behind while the `pre_promote` gate is asked.
                cx.book.disarm();
                self.switch(cx)
            }
            Phase::AutoWait | Phase::ManualWait if self.switching => self.switch(cx),
            Phase::AutoWait | Phase::ManualWait => Next::Idle,
            Phase::Warm => {
                let left = cx
                    .book
                    .deadline()
                    .map_or(0, |d| d.0.saturating_sub(cx.now.0));
                cx.book.disarm();
                Next::End(Converge::succeed_warm(left))
            }
        }
    }

    fn start_green(&mut self, cx: &mut Cx<'_>) -> Next {
        while cx.book.present(Side::New) < cx.spec.replicas {
            cx.book.start(Side::New);
        }
        if cx.book.ready(Side::New) < cx.spec.replicas {
            return Next::Idle;
        }
        let spec = bg(cx.spec);
        if self.promote_early {
            return self.switch(cx);
        }
        if spec.auto_promote {
            cx.book.arm(cx.now, spec.auto_promote_after.get());
            self.phase = Phase::AutoWait;
            return Next::Again;
        }
        self.phase = Phase::ManualWait;
        cx.book.note(format!(
            "green ({}) is ready; waiting for `baton promote {}` to switch traffic",
            cx.spec.to_version, cx.spec.app
        ));
        Next::Idle
    }

    /// All traffic to green at once (once the `pre_promote` gate, if any, says go), and
    /// the deployment is over; blue is handed over warm for the scale-down delay.
    fn switch(&mut self, cx: &mut Cx<'_>) -> Next {
        if !cx.book.gate(Gate::PrePromote, None, Some(100)) {
            return Next::Idle;
        }
        let delay = bg(cx.spec).scale_down_delay;
        let from = cx
            .spec
            .from_version
            .as_deref()
            .unwrap_or("the previous version");
        let to = &cx.spec.to_version;
        let keep_for_ms = delay.get().as_millis() as u64;
        if keep_for_ms == 0 {
            cx.book
                .note(format!("switched 100% to {to}; stopping {from}"));
            return Next::End(Converge::succeed(None));
        }
        cx.book.note(format!(
            "switched 100% to {to}; {from} stays warm for {delay}: `baton rollback {app}` or `baton deploy {app} {from}` switches back at once",
            app = cx.spec.app
        ));
        Next::End(Converge::succeed_warm(keep_for_ms))
    }

    pub(crate) fn promote(&mut self, cx: &mut Cx<'_>) -> Next {
        match self.phase {
            Phase::Starting => {
                self.promote_early = true;
                cx.book.note("promote: switching as soon as green is ready");
                Next::Idle
            }
            Phase::AutoWait | Phase::ManualWait => {
                cx.book.disarm();
                self.switching = true;
                self.switch(cx)
            }
            Phase::Warm => {
                cx.book.disarm();
                cx.book.note("promote: stopping the previous version now");
                Next::End(Converge::succeed(None))
            }
        }
    }

    pub(crate) fn rollback(&mut self, cx: &mut Cx<'_>) -> Result<Next, Refusal> {
        if self.phase != Phase::Warm {
            return Err("traffic has not switched yet: `abort` keeps the current version".into());
        }
        cx.book.disarm();
        let from = cx
            .spec
            .from_version
            .as_deref()
            .unwrap_or("the previous version");
        let reason = format!("rolled back to {from} by the operator");
        cx.book.note(reason.clone());
        Ok(Next::End(Converge::keep(
            Side::Old,
            Outcome::RolledBack,
            Some(reason),
        )))
    }

    pub(crate) fn switched(&self) -> bool {
        self.phase == Phase::Warm
    }

    pub(crate) fn waiting_for_promote(&self) -> bool {
        self.phase == Phase::ManualWait && !self.switching
    }

    pub(crate) fn waiting(&self, spec: &RolloutSpec) -> Option<String> {
        self.waiting_for_promote().then(|| {
            format!(
                "waiting for promote: green ({}) is ready; `baton promote {}` switches traffic",
                spec.to_version, spec.app
            )
        })
    }

    pub(crate) fn route(&self, book: &Book) -> RoutePlan {
        let side = if self.phase == Phase::Warm {
            Side::New
        } else {
            Side::Old
        };
        book.plan(&[(side, 100)], Vec::new(), None)
    }

    pub(crate) fn progress(&self, spec: &RolloutSpec, book: &Book) -> Progress {
        let from = spec
            .from_version
            .as_deref()
            .unwrap_or("the previous version");
        let (index, step) = match self.phase {
            Phase::Starting => (
                0,
                format!(
                    "starting green ({}): {}",
                    spec.to_version,
                    ready_of(book, Side::New, spec.replicas)
                ),
            ),
            Phase::AutoWait => (1, "green ready; switching soon".to_string()),
            Phase::ManualWait => (1, "green ready; waiting for promote".to_string()),
            Phase::Warm => (2, format!("switched; keeping {from} warm for rollback")),
        };
        Progress {
            step,
            index,
            total: 4,
            reason: None,
        }
    }
}
