//! canary: walk the steps in order. A weight step first makes sure enough canary
//! instances are ready for that share, then moves the weight (the proxy splits traffic by
//! weight, not by instance count). A timed pause waits; a manual pause waits for
//! `promote` or `resume`. After the last step the canary is scaled to `replicas`, gets
//! 100%, and the stable version is stopped.
//!
//! Analysis hook: `Verdict::Fail` aborts (in `machine`); an `Inconclusive` latest verdict
//! holds a timed pause at its end until a later verdict says otherwise.
//!
//! Gates: `step` before each weight step (before its instances start), `pre_promote`
//! before the full rollout. Baseline: started with the first weight step, which waits for
//! it; it gets the canary's weight (at most what the canary leaves to stable).

use super::{ready_of, rules, Cx, Next, Progress, Refusal};
use crate::book::{Book, Side};
use crate::converge::{Converge, RevertShape};
use crate::{
    CanarySpec, CanaryStep, Gate, Outcome, PauseSpec, RolloutSpec, RoutePlan, StrategySpec, Verdict,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Canary {
    /// Index into the steps; `steps.len()` is the final full rollout.
    step: usize,
    /// The canary weight in force; `None` before the first weight step.
    weight: Option<u32>,
    /// The timer belongs to the current (timed pause) step.
    armed: bool,
    /// The current pause is over but held by an inconclusive verdict.
    held: Option<String>,
    /// The fair baseline was started (it is started once, never replaced).
    #[serde(default)]
    baseline_started: bool,
}

fn canary(spec: &RolloutSpec) -> CanarySpec {
    match &spec.strategy {
        StrategySpec::Canary(c) => c.clone(),
        _ => CanarySpec::default(),
    }
}

/// Canary instances needed to carry `weight`% of the traffic of `replicas`.
fn needed(replicas: u32, weight: u32) -> u32 {
    let n = (u64::from(replicas) * u64::from(weight)).div_ceil(100);
    (n as u32).max(1)
}

fn describe(step: &CanaryStep) -> String {
    match step {
        CanaryStep::Weight { weight } => format!("weight {}%", weight.min(&100)),
        CanaryStep::Pause {
            pause: PauseSpec::For(d),
        } => format!("pause {d}"),
        CanaryStep::Pause {
            pause: PauseSpec::Manual,
        } => "pause until promote".into(),
    }
}

/// The steps' labels, as `Canary::progress` counts them: the configured steps, then
/// the full rollout.
pub(crate) fn step_labels(spec: &RolloutSpec) -> Vec<String> {
    let mut out: Vec<String> = canary(spec).steps.iter().map(describe).collect();
    out.push(format!("full rollout of {}", spec.to_version));
    out
}

// === impl Canary ===

impl Canary {
    pub(crate) fn new() -> Canary {
        Canary {
            step: 0,
            weight: None,
            armed: false,
            held: None,
            baseline_started: false,
        }
    }

    pub(crate) fn reconcile(&mut self, cx: &mut Cx<'_>) -> Next {
        let spec = canary(cx.spec);
        if let Err(e) = rules(&spec.rules, &cx.spec.to_version) {
            let reason = format!("invalid canary config: {e}");
            return Next::End(Converge::revert(
                cx.book,
                RevertShape::UNTOUCHED,
                Outcome::Failed,
                reason,
            ));
        }
        let Some(step) = spec.steps.get(self.step) else {
            return self.full_rollout(cx);
        };
        match step {
            CanaryStep::Weight { weight } => self.weight_step((*weight).min(100), cx),
            CanaryStep::Pause {
                pause: PauseSpec::For(d),
            } => {
                if !self.armed {
                    cx.book.arm(cx.now, d.get());
                    self.armed = true;
                }
                if !cx.book.timer_done(cx.now) {
                    return Next::Idle;
                }
                cx.book.disarm();
                if let Some(Verdict::Inconclusive { reason }) = &cx.book.verdict {
                    self.held = Some(reason.clone());
                    return Next::Idle;
                }
                self.advance(cx)
            }
            CanaryStep::Pause {
                pause: PauseSpec::Manual,
            } => Next::Idle,
        }
    }

    fn weight_step(&mut self, weight: u32, cx: &mut Cx<'_>) -> Next {
        if !cx.book.gate(Gate::Step, Some(self.step), Some(weight)) {
            return Next::Idle;
        }
        let need = needed(cx.spec.replicas, weight);
        while cx.book.present(Side::New) < need {
            cx.book.start(Side::New);
        }
        if cx.spec.baseline && !self.baseline_started {
            self.baseline_started = true;
            match cx.spec.from_version.as_deref().map(crate::baseline_label) {
                Some(Some(_)) => {
                    cx.book.start(Side::Baseline);
                }
                _ => cx.book.note(
                    "no fair baseline: the version label is too long for its pool name; analysis compares with the stable fleet",
                ),
            }
        }
        if cx.book.ready(Side::New) < need || cx.book.starting(Side::Baseline) > 0 {
            return Next::Idle;
        }
        self.weight = Some(weight);
        cx.book
            .note(format!("canary {} at {weight}%", cx.spec.to_version));
        self.advance(cx)
    }

    fn advance(&mut self, cx: &mut Cx<'_>) -> Next {
        self.step += 1;
        self.armed = false;
        self.held = None;
        let steps = canary(cx.spec).steps;
        if let Some(next) = steps.get(self.step) {
            let total = steps.len() + 1;
            cx.book.note(format!(
                "step {}/{total}: {}",
                self.step + 1,
                describe(next)
            ));
        }
        Next::Again
    }

    /// After the last step: scale the canary to `replicas`, then give it everything.
    fn full_rollout(&mut self, cx: &mut Cx<'_>) -> Next {
        if !cx.book.gate(Gate::PrePromote, None, Some(100)) {
            return Next::Idle;
        }
        while cx.book.present(Side::New) < cx.spec.replicas {
            cx.book.start(Side::New);
        }
        if cx.book.ready(Side::New) < cx.spec.replicas {
            return Next::Idle;
        }
        cx.book.note(format!(
            "{} at full size; switching 100%",
            cx.spec.to_version
        ));
        Next::End(Converge::succeed(None))
    }

    pub(crate) fn promote(&mut self, cx: &mut Cx<'_>) -> Result<Next, Refusal> {
        let total = canary(cx.spec).steps.len();
        if self.step >= total {
            return Err("already rolling out to full size".into());
        }
        self.step = total;
        self.armed = false;
        self.held = None;
        cx.book.disarm();
        cx.book
            .note("promote: skipping the remaining steps; rolling out to full size");
        Ok(Next::Again)
    }

    pub(crate) fn resume(&mut self, cx: &mut Cx<'_>) -> Result<Next, Refusal> {
        let steps = canary(cx.spec).steps;
        match steps.get(self.step) {
            Some(CanaryStep::Pause {
                pause: PauseSpec::Manual,
            }) => {
                cx.book.note("resume: continuing after the manual pause");
                Ok(self.advance(cx))
            }
            _ => Err("not paused: nothing to resume".into()),
        }
    }

    pub(crate) fn waiting(&self, spec: &RolloutSpec) -> Option<String> {
        let steps = canary(spec).steps;
        match steps.get(self.step) {
            Some(CanaryStep::Pause {
                pause: PauseSpec::Manual,
            }) => Some(format!(
                "waiting for promote: manual pause step; `baton promote {}` finishes, `baton resume {}` goes to the next step",
                spec.app, spec.app
            )),
            _ => None,
        }
    }

    /// Canary first (it owns the low hash range, so its users keep it as it grows).
    /// Rules and stickiness apply once the canary has a weight.
    pub(crate) fn route(&self, spec: &RolloutSpec, book: &Book) -> RoutePlan {
        let Some(w) = self.weight else {
            return book.plan(&[(Side::Old, 100)], Vec::new(), None);
        };
        let c = canary(spec);
        let rules = rules(&c.rules, &spec.to_version).unwrap_or_default();
        let b = if book.ready(Side::Baseline) > 0 {
            w.min(100 - w)
        } else {
            0
        };
        let pools = [
            (Side::New, w),
            (Side::Baseline, b),
            (Side::Old, 100 - w - b),
        ];
        book.plan(&pools, rules, c.sticky)
    }

    pub(crate) fn progress(&self, spec: &RolloutSpec, book: &Book) -> Progress {
        let steps = canary(spec).steps;
        let total = steps.len() + 1;
        let what = match steps.get(self.step) {
            Some(s) => describe(s),
            None => format!("full rollout: {}", ready_of(book, Side::New, spec.replicas)),
        };
        Progress {
            step: format!("step {}/{total}: {what}", self.step + 1),
            index: self.step,
            total,
            reason: self
                .held
                .as_ref()
                .map(|r| format!("held: analysis inconclusive: {r}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::needed;

    #[test]
    fn canary_size_follows_the_weight_and_is_at_least_one() {
        assert_eq!(needed(4, 10), 1);
        assert_eq!(needed(4, 50), 2);
        assert_eq!(needed(4, 51), 3);
        assert_eq!(needed(4, 100), 4);
        assert_eq!(needed(3, 0), 1);
        assert_eq!(needed(0, 50), 1);
    }
}
