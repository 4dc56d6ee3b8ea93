//! ab_test: start a full set of the new variant; once all of it is ready, split traffic
//! (variant `weight`%, the current version the rest) with rules and stickiness, until
//! the operator picks the winner with `promote --to VARIANT`.

use super::{ready_of, rules, Cx, Next, Progress, Refusal};
use crate::book::{Book, Side};
use crate::converge::{Converge, RevertShape};
use crate::{AbTestSpec, Gate, Outcome, RolloutSpec, RoutePlan, StrategySpec};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct AbTest {
    /// The variant is fully ready and traffic is split.
    testing: bool,
    /// `promote --to` the new variant came: it wins once the `pre_promote` gate says go.
    #[serde(default)]
    promoting: bool,
}

fn ab(spec: &RolloutSpec) -> AbTestSpec {
    match &spec.strategy {
        StrategySpec::AbTest(a) => a.clone(),
        _ => AbTestSpec::default(),
    }
}

/// The steps' labels, as `AbTest::progress` counts them.
pub(crate) fn step_labels(spec: &RolloutSpec) -> Vec<String> {
    vec![
        format!("start variant {}", spec.to_version),
        format!("test {}", variants(spec)),
        "promote the winner".into(),
    ]
}

fn variants(spec: &RolloutSpec) -> String {
    match &spec.from_version {
        Some(from) => format!("{from} or {}", spec.to_version),
        None => spec.to_version.clone(),
    }
}

// === impl AbTest ===

impl AbTest {
    pub(crate) fn new() -> AbTest {
        AbTest {
            testing: false,
            promoting: false,
        }
    }

    pub(crate) fn reconcile(&mut self, cx: &mut Cx<'_>) -> Next {
        let spec = ab(cx.spec);
        if let Err(e) = rules(&spec.rules, &cx.spec.to_version) {
            let reason = format!("invalid ab_test config: {e}");
            return Next::End(Converge::revert(
                cx.book,
                RevertShape::UNTOUCHED,
                Outcome::Failed,
                reason,
            ));
        }
        while cx.book.present(Side::New) < cx.spec.replicas {
            cx.book.start(Side::New);
        }
        if !self.testing && cx.book.ready(Side::New) >= cx.spec.replicas {
            self.testing = true;
            let w = spec.weight.min(100);
            cx.book.note(format!(
                "variant {} ready: {w}% to it, {}% to {}; `baton promote {} --to VARIANT` picks the winner",
                cx.spec.to_version,
                100 - w,
                cx.spec.from_version.as_deref().unwrap_or("the current version"),
                cx.spec.app
            ));
        }
        if self.promoting {
            return self.promote_new(cx);
        }
        Next::Idle
    }

    /// The new variant wins, once the `pre_promote` gate (if any) says go.
    fn promote_new(&mut self, cx: &mut Cx<'_>) -> Next {
        if !cx.book.gate(Gate::PrePromote, None, Some(100)) {
            return Next::Idle;
        }
        self.promoting = false;
        let reason = format!("{} won the A/B test", cx.spec.to_version);
        cx.book.note(reason.clone());
        Next::End(Converge::succeed(Some(reason)))
    }

    pub(crate) fn promote(&mut self, cx: &mut Cx<'_>, to: Option<&str>) -> Result<Next, Refusal> {
        let Some(winner) = to else {
            return Err(format!(
                "ab_test needs --to VARIANT: `baton promote {} --to {}`",
                cx.spec.app,
                variants(cx.spec)
            ));
        };
        if winner == cx.spec.to_version {
            if !self.testing {
                return Err(format!(
                    "variant {winner} is still starting ({}); promote it once it is ready",
                    ready_of(cx.book, Side::New, cx.spec.replicas)
                ));
            }
            self.promoting = true;
            return Ok(self.promote_new(cx));
        }
        if cx.spec.from_version.as_deref() == Some(winner) {
            let reason = format!(
                "{winner} won the A/B test; {} is stopped",
                cx.spec.to_version
            );
            cx.book.note(reason.clone());
            return Ok(Next::End(Converge::keep(
                Side::Old,
                Outcome::Succeeded,
                Some(reason),
            )));
        }
        Err(format!(
            "{winner} is not a variant of this test: choose {}",
            variants(cx.spec)
        ))
    }

    /// Variant first (newest first, as everywhere); rules and stickiness once split.
    pub(crate) fn route(&self, spec: &RolloutSpec, book: &Book) -> RoutePlan {
        if !self.testing {
            return book.plan(&[(Side::Old, 100)], Vec::new(), None);
        }
        let a = ab(spec);
        let w = a.weight.min(100);
        let rules = rules(&a.rules, &spec.to_version).unwrap_or_default();
        book.plan(&[(Side::New, w), (Side::Old, 100 - w)], rules, a.sticky)
    }

    pub(crate) fn progress(&self, spec: &RolloutSpec, book: &Book) -> Progress {
        let (index, step) = if self.testing {
            (
                1,
                format!(
                    "testing {}: waiting for promote --to VARIANT",
                    variants(spec)
                ),
            )
        } else {
            (
                0,
                format!(
                    "starting variant {}: {}",
                    spec.to_version,
                    ready_of(book, Side::New, spec.replicas)
                ),
            )
        };
        Progress {
            step,
            index,
            total: 3,
            reason: None,
        }
    }
}
