//! The `Rollout` state machine: applies an input to the book, lets the strategy (or the
//! ending) react until nothing changes, publishes the route and then the stops, and
//! checks its invariants. Operator actions (promote, abort, pause, resume, rollback) and
//! the analysis verdict hook are handled here, the same way for every strategy.

mod invariants;
mod status;

use crate::book::{Book, Failure, Phase, Side};
use crate::converge::{Converge, RevertShape};
use crate::strategies::{Cx, Next, Plan};
use crate::{Command, Gate, Input, InstanceId, Outcome, RolloutSpec, State, StrategySpec, Verdict};
use baton_core::Millis;
use serde::{Deserialize, Serialize};

/// One deployment in progress. `Serialize` so it can be stored after every step and
/// resumed from the stored copy (it holds no handles and reads no clock).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    spec: RolloutSpec,
    book: Book,
    plan: Plan,
    /// Set once the deployment is decided: converging on one side.
    ending: Option<Converge>,
}

/// A read-only view for `status`, the progress display and the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutStatus {
    pub state: State,
    /// Human description of the current step, e.g. `"step 3/4: weight 50%"`.
    pub step: String,
    /// Index of the current step (0-based; strategies without steps count phases).
    pub step_index: usize,
    pub total_steps: usize,
    /// Current target weights by version (percent of the weighted traffic), newest first.
    pub weights: Vec<(String, u32)>,
    /// Why it failed / was aborted / is waiting.
    pub reason: Option<String>,
    /// Instances this deployment started or still owns, with their version.
    pub instances: Vec<(InstanceId, String)>,
    /// The latest analysis verdict, if any (the analysis hook).
    #[serde(default)]
    pub verdict: Option<Verdict>,
}

/// Strategy steps per `handle` are bounded; each canary step takes at most two rounds.
const BASE_ROUNDS: usize = 64;

// === impl Rollout ===

impl Rollout {
    pub fn new(spec: RolloutSpec, _now: Millis) -> Rollout {
        let hold = matches!(spec.strategy, StrategySpec::Recreate(_));
        let book = Book::new(&spec, hold);
        let plan = Plan::new(&spec);
        Rollout {
            spec,
            book,
            plan,
            ending: None,
        }
    }

    /// A label for each step of this deployment, in order; `status().step_index`
    /// points into it.
    pub fn step_labels(&self) -> Vec<String> {
        self.plan.step_labels(&self.spec)
    }

    pub fn spec(&self) -> &RolloutSpec {
        &self.spec
    }

    /// Applies one input at time `now` and returns what the controller must do, in
    /// order. After `Finish` it returns nothing.
    pub fn handle(&mut self, input: Input, now: Millis) -> Vec<Command> {
        if self.is_finished() {
            return Vec::new();
        }
        let before = self.book.last_route().cloned();
        if before.is_none() {
            self.first_notes();
        }
        self.apply(input, now);
        self.settle(now);
        let out = self.book.take_output();
        self.check_invariants(before.as_ref(), &out);
        out
    }

    /// When the controller must send `Input::Tick` at the latest (`None`: no timer, or
    /// paused).
    pub fn next_deadline(&self) -> Option<Millis> {
        self.book.deadline()
    }

    pub fn is_finished(&self) -> bool {
        self.book.finished().is_some()
    }

    /// The gate the deployment waits at, with its step and weight: after a restart the
    /// controller asks it again (the answer to the first ask was lost with the process).
    pub fn pending_gate(&self) -> Option<(Gate, Option<usize>, Option<u32>)> {
        self.book.gate_pending().map(|a| (a.gate, a.step, a.weight))
    }

    /// Whether the deployment is decided and going back to the previous version (failed,
    /// aborted or rolled back), or already finished that way.
    pub fn is_reverting(&self) -> bool {
        match (&self.ending, self.book.finished()) {
            (Some(c), _) => c.outcome != Outcome::Succeeded,
            (None, Some(f)) => f.outcome != Outcome::Succeeded,
            (None, None) => false,
        }
    }

    /// Blue/green after the switch while the previous version still runs:
    /// `Input::Rollback` now flips traffic back at once, with nothing to start.
    pub fn can_roll_back_instantly(&self) -> bool {
        !self.is_finished() && self.ending.is_none() && self.plan.switched()
    }

    // --- one step ---

    /// Said once, on the first input: when the strategy cannot apply as configured.
    fn first_notes(&mut self) {
        if let (Some(from), true) = (&self.spec.from_version, self.spec.from_instances.is_empty()) {
            self.book.note(format!(
                "no running instance of {from}: starting {} directly, there is no traffic to shift",
                self.spec.to_version
            ));
        }
    }

    fn apply(&mut self, input: Input, now: Millis) {
        match input {
            Input::Tick => {}
            Input::Ready { instance } => {
                self.book.on_ready(&instance);
            }
            Input::Stopped { instance } => self.on_stopped(&instance),
            Input::Failed { instance, reason } => self.on_failed(&instance, &reason),
            Input::Promote { to } => self.on_promote(to.as_deref(), now),
            Input::Abort { reason } => self.on_abort(reason),
            Input::Pause => self.on_pause(now),
            Input::Resume => self.on_resume(now),
            Input::Rollback => self.on_rollback(now),
            Input::Verdict(v) => self.on_verdict(v),
            Input::GateResult {
                gate,
                step,
                ok,
                reason,
            } => self.on_gate_result(gate, step, ok, reason),
        }
    }

    /// Lets the strategy (or the ending) act until it has nothing more to do, then
    /// stops failed instances, publishes the route, the stops, and `Finish` if done.
    fn settle(&mut self, now: Millis) {
        let rounds = BASE_ROUNDS + 2 * self.step_count();
        for _ in 0..rounds {
            let next = match &mut self.ending {
                Some(c) => {
                    c.reconcile(&mut self.book);
                    Next::Idle
                }
                None if self.book.paused => Next::Idle,
                None if !self.book.gate(Gate::PreRollout, None, None) => Next::Idle,
                None => {
                    let mut cx = Cx {
                        spec: &self.spec,
                        book: &mut self.book,
                        now,
                    };
                    self.plan.reconcile(&mut cx)
                }
            };
            match next {
                Next::Idle => break,
                Next::Again => {}
                Next::End(c) => self.end(c),
            }
        }
        self.book.stop_failed();
        let route = match &self.ending {
            Some(c) => c.route(&self.book),
            None => self.plan.route(&self.spec, &self.book),
        };
        self.book.publish(route);
        if let Some(c) = &self.ending {
            if c.done(&self.book) {
                let finish = c.finish(&self.book);
                self.book.finish(finish);
            }
        }
    }

    fn step_count(&self) -> usize {
        match &self.spec.strategy {
            StrategySpec::Canary(c) => c.steps.len(),
            _ => 0,
        }
    }

    /// The deployment is decided: nothing pauses or times it any more.
    fn end(&mut self, c: Converge) {
        self.book.paused = false;
        self.book.disarm();
        self.book.clear_gate();
        self.ending = Some(c);
    }

    /// Go back to the old version the strategy's way.
    fn revert(&mut self, outcome: Outcome, reason: String) {
        let back_to = self
            .spec
            .from_version
            .as_deref()
            .unwrap_or("nothing (first deploy)");
        self.book.note(format!("{reason}; going back to {back_to}"));
        let shape = self.plan.revert_shape(&self.spec);
        let c = Converge::revert(&self.book, shape, outcome, reason);
        self.end(c);
    }

    /// Runs `f` on the strategy with its context.
    fn with_plan<R>(&mut self, now: Millis, f: impl FnOnce(&mut Plan, &mut Cx<'_>) -> R) -> R {
        let mut cx = Cx {
            spec: &self.spec,
            book: &mut self.book,
            now,
        };
        f(&mut self.plan, &mut cx)
    }

    /// An operator request the strategy accepted (or refused, with a note).
    fn operator(&mut self, result: Result<Next, String>, now: Millis) {
        match result {
            Err(refusal) => self.book.note(refusal),
            Ok(next) => {
                if self.book.paused {
                    self.book.resume(now);
                }
                if let Next::End(c) = next {
                    self.end(c);
                }
            }
        }
    }

    // --- inputs ---

    fn on_stopped(&mut self, id: &str) {
        match self.book.on_stopped(id) {
            None | Some(Phase::Stopping | Phase::Stopped) => {}
            Some(was) => self.book.note(format!(
                "{id} stopped without being asked (it was {was:?}); it is no longer counted"
            )),
        }
    }

    /// A new-version instance failing fails the deployment unless it is already decided.
    /// An instance of the stable version failing is not this deployment's doing: it is
    /// noted, taken out of routing and stopped (the controller keeps the stable count
    /// after the deployment), and the deployment goes on. Rolling and recreate replace
    /// old instances anyway; canary, blue/green and A/B keep serving with the rest.
    fn on_failed(&mut self, id: &str, reason: &str) {
        match self.book.on_failed(id) {
            Failure::Unknown => self.book.note(format!(
                "ignored a failure of {id}, which this deployment does not know: {reason}"
            )),
            Failure::Stale | Failure::WhileStopping => {}
            Failure::Fresh {
                side: Side::New, ..
            } if self.ending.is_none() => {
                self.revert(
                    Outcome::Failed,
                    format!("{id} ({}) failed: {reason}", self.spec.to_version),
                );
            }
            Failure::Fresh {
                side: Side::New, ..
            } => {
                self.book.note(format!(
                    "{id} ({}) failed: {reason}; it is stopped",
                    self.spec.to_version
                ));
            }
            Failure::Fresh {
                side: Side::Baseline,
                ..
            } => {
                self.book.note(format!(
                    "baseline instance {id} failed: {reason}; it is stopped and analysis compares the canary with the stable fleet"
                ));
            }
            Failure::Fresh {
                side: Side::Old,
                owned,
            } => {
                let v = self.spec.from_version.as_deref().unwrap_or("?");
                let what = if owned { "restoring" } else { "stable" };
                self.book.note(format!(
                    "{what} instance {id} ({v}) failed: {reason}; it is stopped and the deployment goes on"
                ));
                if self.book.ready(Side::Old) == 0 && self.ending.is_none() && !self.plan.switched()
                {
                    self.book.note(format!("no ready instance of {v} is left"));
                }
            }
        }
    }

    fn on_promote(&mut self, to: Option<&str>, now: Millis) {
        if self.ending.is_some() {
            self.book
                .note("nothing to promote: the deployment is already finishing");
            return;
        }
        let result = self.with_plan(now, |plan, cx| plan.promote(cx, to));
        self.operator(result, now);
    }

    fn on_abort(&mut self, reason: String) {
        if self.ending.is_some() {
            self.book
                .note("nothing to abort: the deployment is already finishing");
        } else if self.plan.switched() {
            let from = self.spec.from_version.as_deref().unwrap_or("?");
            self.book.note(format!(
                "traffic already switched: `rollback` flips back to {from}, `promote` finishes now"
            ));
        } else {
            self.revert(Outcome::Aborted, reason);
        }
    }

    fn on_pause(&mut self, now: Millis) {
        if self.ending.is_some() || self.plan.switched() {
            self.book
                .note("nothing to pause: the deployment is finishing");
        } else if self.book.paused {
            self.book.note("already paused");
        } else {
            self.book.pause(now);
            self.book.note("paused: no new step starts until `resume`");
        }
    }

    fn on_resume(&mut self, now: Millis) {
        if self.ending.is_some() {
            self.book
                .note("nothing to resume: the deployment is finishing");
        } else if self.book.paused {
            self.book.resume(now);
            self.book.note("resumed");
        } else {
            let result = self.with_plan(now, |plan, cx| plan.resume(cx));
            self.operator(result, now);
        }
    }

    fn on_rollback(&mut self, now: Millis) {
        if self.ending.is_some() {
            self.book
                .note("nothing to roll back now: the deployment is already finishing");
            return;
        }
        let result = self.with_plan(now, |plan, cx| plan.rollback(cx));
        self.operator(result, now);
    }

    /// The answer of an external gate: go on, or fail the deployment. A refused
    /// `pre_rollout` changes nothing (nothing has started).
    fn on_gate_result(
        &mut self,
        gate: Gate,
        step: Option<usize>,
        ok: bool,
        reason: Option<String>,
    ) {
        let name = gate.name();
        let why = reason.unwrap_or_else(|| "no reason given".into());
        if self.ending.is_some() {
            self.book.note(format!(
                "{name} gate answered after the deployment was decided; ignored"
            ));
            return;
        }
        match self.book.on_gate(gate, step, ok) {
            None => self.book.note(format!(
                "ignored a {name} gate answer: the deployment is not waiting at it"
            )),
            Some(true) => self.book.note(format!("{name} gate passed")),
            Some(false) if gate == Gate::PreRollout => {
                let reason = format!("{name} gate refused the deployment: {why}");
                self.book.note(format!("{reason}; nothing was changed"));
                let c =
                    Converge::revert(&self.book, RevertShape::UNTOUCHED, Outcome::Failed, reason);
                self.end(c);
            }
            Some(false) => {
                let at = step
                    .map(|s| format!(" (step {})", s + 1))
                    .unwrap_or_default();
                self.revert(Outcome::Failed, format!("{name} gate{at} failed: {why}"));
            }
        }
    }

    /// The analysis hook: `Fail` fails the deployment (back to stable) unless it is
    /// already decided; `Pass` / `Inconclusive` are recorded (a canary pause holds on an
    /// inconclusive latest verdict).
    fn on_verdict(&mut self, v: Verdict) {
        self.book.verdict = Some(v.clone());
        if let Verdict::Fail { reason } = v {
            if self.ending.is_none() {
                self.revert(Outcome::Failed, format!("analysis failed: {reason}"));
            } else {
                self.book.note(format!(
                    "analysis failed after the deployment was decided: {reason}"
                ));
            }
        }
    }
}
