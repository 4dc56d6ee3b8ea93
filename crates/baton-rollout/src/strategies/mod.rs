//! Per-strategy logic behind one enum. Each strategy is level-triggered: `reconcile`
//! looks at the book (what is starting, ready, stopping) and its own phase, and does the
//! next thing; `route` is a pure function of the same state. Endings (success, failure,
//! abort, rollback) are handed to [`crate::converge`].

mod ab_test;
mod blue_green;
mod canary;
mod recreate;
mod rolling;

use crate::book::Book;
use crate::converge::{Converge, RevertShape};
use crate::{CanaryRule, RolloutSpec, RoutePlan, StrategySpec};
use baton_core::{Millis, RuleSpec};
use serde::{Deserialize, Serialize};

pub(crate) use ab_test::AbTest;
pub(crate) use blue_green::BlueGreen;
pub(crate) use canary::Canary;
pub(crate) use recreate::Recreate;
pub(crate) use rolling::Rolling;

/// What a strategy step needs: the deployment, the book, and the time.
pub(crate) struct Cx<'a> {
    pub spec: &'a RolloutSpec,
    pub book: &'a mut Book,
    pub now: Millis,
}

/// What to do after a strategy step.
#[derive(Debug)]
pub(crate) enum Next {
    /// Nothing more until the next input.
    Idle,
    /// The strategy advanced; run it again (a zero-length pause, a satisfied step).
    Again,
    /// The strategy is over: converge.
    End(Converge),
}

/// An operator request a strategy turned down, with the reason for people.
pub(crate) type Refusal = String;

/// Where a strategy is, for `status`.
pub(crate) struct Progress {
    pub step: String,
    pub index: usize,
    pub total: usize,
    /// Why the step does not advance on its own, when the state does not say it.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "plan")]
pub(crate) enum Plan {
    Recreate(Recreate),
    BlueGreen(BlueGreen),
    Rolling(Rolling),
    Canary(Canary),
    AbTest(AbTest),
}

// === impl Plan ===

impl Plan {
    /// The plan for `spec`. With no running instance of the previous version (first
    /// deploy, or all gone) there is no traffic to shift, whatever the strategy: start the
    /// new version and route it as it gets ready (recreate's fill phase).
    pub(crate) fn new(spec: &RolloutSpec) -> Plan {
        if spec.from_version.is_none() || spec.from_instances.is_empty() {
            return Plan::Recreate(Recreate::fresh());
        }
        match &spec.strategy {
            StrategySpec::Recreate(_) => Plan::Recreate(Recreate::new()),
            StrategySpec::BlueGreen(_) => Plan::BlueGreen(BlueGreen::new()),
            StrategySpec::Rolling(r) => Plan::Rolling(Rolling::new(r, spec.replicas)),
            StrategySpec::Canary(_) => Plan::Canary(Canary::new()),
            StrategySpec::AbTest(_) => Plan::AbTest(AbTest::new()),
        }
    }

    pub(crate) fn reconcile(&mut self, cx: &mut Cx<'_>) -> Next {
        match self {
            Plan::Recreate(s) => s.reconcile(cx),
            Plan::BlueGreen(s) => s.reconcile(cx),
            Plan::Rolling(s) => s.reconcile(cx),
            Plan::Canary(s) => s.reconcile(cx),
            Plan::AbTest(s) => s.reconcile(cx),
        }
    }

    pub(crate) fn route(&self, spec: &RolloutSpec, book: &Book) -> RoutePlan {
        match self {
            Plan::Recreate(s) => s.route(book),
            Plan::BlueGreen(s) => s.route(book),
            Plan::Rolling(s) => s.route(book),
            Plan::Canary(s) => s.route(spec, book),
            Plan::AbTest(s) => s.route(spec, book),
        }
    }

    /// `promote`: skip pauses, switch, or pick the A/B winner.
    pub(crate) fn promote(&mut self, cx: &mut Cx<'_>, to: Option<&str>) -> Result<Next, Refusal> {
        if let (Some(v), false) = (to, matches!(self, Plan::AbTest(_))) {
            if v != cx.spec.to_version {
                return Err(format!(
                    "`--to {v}` ignored: only ab_test deployments choose a variant, and this one deploys {}",
                    cx.spec.to_version
                ));
            }
        }
        match self {
            Plan::Recreate(_) => {
                Err("recreate has no pause to skip: it finishes on its own".into())
            }
            Plan::BlueGreen(s) => Ok(s.promote(cx)),
            Plan::Rolling(s) => s.promote(cx),
            Plan::Canary(s) => s.promote(cx),
            Plan::AbTest(s) => s.promote(cx, to),
        }
    }

    /// `resume` when the operator had not paused: continues a manual canary pause.
    pub(crate) fn resume(&mut self, cx: &mut Cx<'_>) -> Result<Next, Refusal> {
        match self {
            Plan::Canary(s) => s.resume(cx),
            Plan::BlueGreen(s) if s.waiting_for_promote() => Err(
                "blue/green is waiting for `promote` to switch traffic (nothing is paused)".into(),
            ),
            _ => Err("not paused: nothing to resume".into()),
        }
    }

    /// `rollback`: only blue/green keeps the old version warm after the switch.
    pub(crate) fn rollback(&mut self, cx: &mut Cx<'_>) -> Result<Next, Refusal> {
        match self {
            Plan::BlueGreen(s) => s.rollback(cx),
            _ => Err(
                "the deployment is still running: `abort` goes back to the stable version".into(),
            ),
        }
    }

    /// After blue/green's switch the new version serves: the deployment has succeeded
    /// and only keeps the old version warm; pause and abort no longer apply.
    pub(crate) fn switched(&self) -> bool {
        matches!(self, Plan::BlueGreen(s) if s.switched())
    }

    /// Why the strategy itself waits for an operator, if it does.
    pub(crate) fn waiting(&self, spec: &RolloutSpec) -> Option<String> {
        match self {
            Plan::BlueGreen(s) => s.waiting(spec),
            Plan::Canary(s) => s.waiting(spec),
            _ => None,
        }
    }

    pub(crate) fn revert_shape(&self, spec: &RolloutSpec) -> RevertShape {
        match self {
            Plan::Recreate(_) => RevertShape {
                restore_to: Some(spec.replicas),
                max_total: u32::MAX,
                min_ready: 0,
                exclusive: true,
            },
            Plan::Rolling(s) => s.revert_shape(spec),
            Plan::BlueGreen(_) | Plan::Canary(_) | Plan::AbTest(_) => RevertShape::UNTOUCHED,
        }
    }

    /// One label per step, in order: `Progress::index` points into it and
    /// `Progress::total` is its length.
    pub(crate) fn step_labels(&self, spec: &RolloutSpec) -> Vec<String> {
        match self {
            Plan::Recreate(s) => s.step_labels(spec),
            Plan::BlueGreen(_) => blue_green::step_labels(spec),
            Plan::Rolling(_) => rolling::step_labels(spec),
            Plan::Canary(_) => canary::step_labels(spec),
            Plan::AbTest(_) => ab_test::step_labels(spec),
        }
    }

    pub(crate) fn progress(&self, spec: &RolloutSpec, book: &Book) -> Progress {
        match self {
            Plan::Recreate(s) => s.progress(spec, book),
            Plan::BlueGreen(s) => s.progress(spec, book),
            Plan::Rolling(s) => s.progress(spec, book),
            Plan::Canary(s) => s.progress(spec, book),
            Plan::AbTest(s) => s.progress(spec, book),
        }
    }
}

/// Data-plane rules for config rules sending matching requests to `version`.
pub(crate) fn rules(rules: &[CanaryRule], version: &str) -> Result<Vec<RuleSpec>, String> {
    rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            r.to_rule(version)
                .map_err(|e| format!("targeting rule {}: {e}", i + 1))
        })
        .collect()
}

/// Ready/needed text, e.g. `"2/3 ready"`.
pub(crate) fn ready_of(book: &Book, side: crate::book::Side, of: u32) -> String {
    format!("{}/{of} ready", book.ready(side))
}
