//! Shared bookkeeping of one rollout: the instances it knows and their phases, the id
//! counter, the last published route, the single timer (frozen while paused) and the
//! commands produced by the current `handle` call.
//!
//! **Invariant:** the book is the only place that emits `Start`, `Stop` and `Route`, and it
//! does so in an order the controller can rely on: a route is computed from `Ready`
//! instances only, and stops queued during a step are emitted after that step's route.

use crate::{Command, Finish, Gate, InstanceId, PoolPlan, RolloutSpec, RoutePlan, Verdict};
use baton_core::{Millis, RuleSpec, StickySpec};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Which version an instance belongs to: the one serving before the deployment (`Old`,
/// including old-version instances started to restore capacity) or the one being
/// deployed (`New`). Sides, not version strings, tell instances apart, so redeploying the
/// same version works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Side {
    Old,
    New,
    /// The fair baseline: the old version, routed as its own pool (canary only). It is
    /// never kept by an ending.
    Baseline,
}

impl Side {
    /// The side an ending keeping `self` stops (`Baseline` is never kept).
    pub(crate) fn other(self) -> Side {
        match self {
            Side::Old | Side::Baseline => Side::New,
            Side::New => Side::Old,
        }
    }
}

/// One gate the machine asks about: which, and at which canary step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct GateAsk {
    pub gate: Gate,
    pub step: Option<usize>,
    /// The canary weight about to apply (fixed by gate and step).
    pub weight: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Phase {
    /// `Start` emitted, waiting for `Ready` or `Failed`.
    Starting,
    /// Healthy and routable.
    Ready,
    /// Reported failed and not yet asked to stop; never routed again.
    Failed,
    /// `Stop` emitted, waiting for `Stopped`.
    Stopping,
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Inst {
    pub id: InstanceId,
    pub side: Side,
    /// Started by this deployment (as opposed to handed over in `from_instances`).
    pub owned: bool,
    pub phase: Phase,
}

/// The one timer a strategy may run at a time (pause step, batch pause, auto-promote,
/// scale-down delay). Frozen while the operator pauses, so a pause does not eat it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Timer {
    Running { at: Millis },
    Frozen { left_ms: u64 },
}

/// What a `Failed` report meant for the book.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Not an instance of this deployment.
    Unknown,
    /// Already failed or stopped: nothing changes.
    Stale,
    /// We had asked it to stop; it is gone (a failed start never reports `Stopped`).
    WhileStopping,
    /// A starting or ready instance failed.
    Fresh { side: Side, owned: bool },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Book {
    deployment_id: String,
    old_version: Option<String>,
    new_version: String,
    /// Last `n` used in `"{deployment_id}-{n}"`; never reused.
    last_n: u32,
    insts: Vec<Inst>,
    last_route: Option<RoutePlan>,
    /// Hold requests while no backend is ready (recreate).
    hold: bool,
    timer: Option<Timer>,
    /// Paused by the operator.
    pub paused: bool,
    /// Latest analysis verdict.
    pub verdict: Option<Verdict>,
    /// Gates configured for this deployment (`RolloutSpec::gates`).
    #[serde(default)]
    gates: Vec<Gate>,
    /// The gate asked and not answered yet.
    #[serde(default)]
    gate_pending: Option<GateAsk>,
    /// Gates answered "go"; each is asked once.
    #[serde(default)]
    gates_passed: Vec<GateAsk>,
    finished: Option<Finish>,
    /// Commands of the current `handle` call (always empty between calls).
    #[serde(skip)]
    out: Vec<Command>,
    /// Stops queued during the current step, emitted after its route.
    #[serde(skip)]
    stops: Vec<InstanceId>,
}

// === impl Book ===

impl Book {
    pub(crate) fn new(spec: &RolloutSpec, hold: bool) -> Book {
        let insts = match spec.from_version {
            Some(_) => spec
                .from_instances
                .iter()
                .map(|id| Inst {
                    id: id.clone(),
                    side: Side::Old,
                    owned: false,
                    phase: Phase::Ready,
                })
                .collect(),
            None => Vec::new(),
        };
        Book {
            deployment_id: spec.deployment_id.clone(),
            old_version: spec.from_version.clone(),
            new_version: spec.to_version.clone(),
            last_n: 0,
            insts,
            last_route: None,
            hold,
            timer: None,
            paused: false,
            verdict: None,
            gates: spec.gates.clone(),
            gate_pending: None,
            gates_passed: Vec::new(),
            finished: None,
            out: Vec::new(),
            stops: Vec::new(),
        }
    }

    /// The version `side`'s instances run.
    pub(crate) fn version(&self, side: Side) -> Option<&str> {
        match side {
            Side::Old | Side::Baseline => self.old_version.as_deref(),
            Side::New => Some(&self.new_version),
        }
    }

    /// The name of `side`'s route pool: its version, or the baseline's own label.
    fn pool_name(&self, side: Side) -> Option<String> {
        match side {
            Side::Baseline => crate::baseline_label(self.old_version.as_deref()?),
            _ => self.version(side).map(str::to_string),
        }
    }

    pub(crate) fn insts(&self) -> &[Inst] {
        &self.insts
    }

    fn find_mut(&mut self, id: &str) -> Option<&mut Inst> {
        self.insts.iter_mut().find(|i| i.id == id)
    }

    // --- counting ---

    pub(crate) fn count(&self, side: Side, phase: Phase) -> u32 {
        self.insts
            .iter()
            .filter(|i| i.side == side && i.phase == phase)
            .count() as u32
    }

    pub(crate) fn ready(&self, side: Side) -> u32 {
        self.count(side, Phase::Ready)
    }

    pub(crate) fn starting(&self, side: Side) -> u32 {
        self.count(side, Phase::Starting)
    }

    /// Starting or ready: what will (or does) serve.
    pub(crate) fn live(&self, side: Side) -> u32 {
        self.ready(side) + self.starting(side)
    }

    /// Every instance that may still be running (not `Stopped`), on `side`.
    pub(crate) fn present(&self, side: Side) -> u32 {
        let n = self
            .insts
            .iter()
            .filter(|i| i.side == side && i.phase != Phase::Stopped);
        n.count() as u32
    }

    /// Every instance that may still be running, on both sides.
    pub(crate) fn total(&self) -> u32 {
        self.present(Side::Old) + self.present(Side::New)
    }

    pub(crate) fn ids(&self, side: Side, phase: Phase) -> Vec<InstanceId> {
        let it = self
            .insts
            .iter()
            .filter(|i| i.side == side && i.phase == phase);
        it.map(|i| i.id.clone()).collect()
    }

    // --- commands ---

    pub(crate) fn note(&mut self, message: impl Into<String>) {
        self.out.push(Command::Note {
            message: message.into(),
        });
    }

    /// Starts a new instance of `side`'s version; `None` if that side has no version
    /// (the old side of a first deploy).
    pub(crate) fn start(&mut self, side: Side) -> Option<InstanceId> {
        let version = self.version(side)?.to_string();
        let id = loop {
            self.last_n += 1;
            let id = format!("{}-{}", self.deployment_id, self.last_n);
            if !self.insts.iter().any(|i| i.id == id) {
                break id;
            }
        };
        self.insts.push(Inst {
            id: id.clone(),
            side,
            owned: true,
            phase: Phase::Starting,
        });
        self.out.push(Command::Start {
            instance: id.clone(),
            version,
        });
        Some(id)
    }

    /// Takes the instance out of routing and queues its `Stop` (emitted after this step's
    /// route). Stopping twice is a no-op.
    pub(crate) fn stop(&mut self, id: &str) {
        let Some(inst) = self.find_mut(id) else {
            return;
        };
        if matches!(inst.phase, Phase::Starting | Phase::Ready | Phase::Failed) {
            inst.phase = Phase::Stopping;
            self.stops.push(id.to_string());
        }
    }

    /// Stops every failed instance: they are never routed, so this is always safe.
    pub(crate) fn stop_failed(&mut self) {
        let failed: Vec<InstanceId> = self
            .insts
            .iter()
            .filter(|i| i.phase == Phase::Failed)
            .map(|i| i.id.clone())
            .collect();
        for id in failed {
            self.stop(&id);
        }
    }

    /// Publishes `plan` unless it is what the controller already has, then the queued
    /// stops. Order matters: the stops' instances are not `Ready`, so not in `plan`.
    pub(crate) fn publish(&mut self, plan: RoutePlan) {
        if self.last_route.as_ref() != Some(&plan) {
            self.last_route = Some(plan.clone());
            self.out.push(Command::Route(plan));
        }
        for id in std::mem::take(&mut self.stops) {
            self.out.push(Command::Stop { instance: id });
        }
    }

    pub(crate) fn finish(&mut self, finish: Finish) {
        self.finished = Some(finish.clone());
        self.timer = None;
        self.out.push(Command::Finish(finish));
    }

    pub(crate) fn finished(&self) -> Option<&Finish> {
        self.finished.as_ref()
    }

    pub(crate) fn last_route(&self) -> Option<&RoutePlan> {
        self.last_route.as_ref()
    }

    pub(crate) fn take_output(&mut self) -> Vec<Command> {
        std::mem::take(&mut self.out)
    }

    // --- routes ---

    /// A route from `(side, weight)` pairs, newest first. Sides without a ready instance
    /// are left out; two sides with the same version (a redeploy) share one pool.
    pub(crate) fn plan(
        &self,
        pools: &[(Side, u32)],
        rules: Vec<RuleSpec>,
        sticky: Option<StickySpec>,
    ) -> RoutePlan {
        let mut out: Vec<PoolPlan> = Vec::new();
        for &(side, weight) in pools {
            let Some(version) = self.pool_name(side) else {
                continue;
            };
            let instances = self.ids(side, Phase::Ready);
            if instances.is_empty() {
                continue;
            }
            match out.iter_mut().find(|p| p.version == version) {
                Some(pool) => {
                    pool.weight += weight;
                    pool.instances.extend(instances);
                }
                None => out.push(PoolPlan {
                    version,
                    weight,
                    instances,
                }),
            }
        }
        RoutePlan {
            pools: out,
            rules,
            sticky,
            hold: self.hold,
        }
    }

    // --- gates ---

    /// Whether the deployment may go past `gate` (at canary `step`): yes when the gate is
    /// not configured or was answered "go". Otherwise it asks (once: `Command::Gate`) and
    /// answers no; the strategy waits and calls again on a later input.
    pub(crate) fn gate(&mut self, gate: Gate, step: Option<usize>, weight: Option<u32>) -> bool {
        let ask = GateAsk { gate, step, weight };
        if !self.gates.contains(&gate) || self.gates_passed.contains(&ask) {
            return true;
        }
        if self.gate_pending != Some(ask) {
            self.gate_pending = Some(ask);
            self.out.push(Command::Gate { gate, step, weight });
        }
        false
    }

    /// The gate being waited at, if any.
    pub(crate) fn gate_pending(&self) -> Option<GateAsk> {
        self.gate_pending
    }

    /// An answer for `ask`: `None` if the machine is not waiting at it (stale answer),
    /// else whether it said go (then it is remembered as passed).
    pub(crate) fn on_gate(&mut self, gate: Gate, step: Option<usize>, ok: bool) -> Option<bool> {
        let ask = self
            .gate_pending
            .filter(|a| a.gate == gate && a.step == step)?;
        self.gate_pending = None;
        if ok {
            self.gates_passed.push(ask);
        }
        Some(ok)
    }

    /// The deployment is decided: no gate is waited for any more.
    pub(crate) fn clear_gate(&mut self) {
        self.gate_pending = None;
    }

    // --- inputs ---

    /// `Ready` for a starting instance; anything else (late, after a failure or a stop,
    /// unknown) is ignored. Returns whether it changed anything.
    pub(crate) fn on_ready(&mut self, id: &str) -> bool {
        match self.find_mut(id) {
            Some(inst) if inst.phase == Phase::Starting => {
                inst.phase = Phase::Ready;
                true
            }
            _ => false,
        }
    }

    pub(crate) fn on_failed(&mut self, id: &str) -> Failure {
        let Some(inst) = self.find_mut(id) else {
            return Failure::Unknown;
        };
        match inst.phase {
            Phase::Starting | Phase::Ready => {
                inst.phase = Phase::Failed;
                Failure::Fresh {
                    side: inst.side,
                    owned: inst.owned,
                }
            }
            Phase::Stopping => {
                inst.phase = Phase::Stopped;
                Failure::WhileStopping
            }
            Phase::Failed | Phase::Stopped => Failure::Stale,
        }
    }

    /// `Stopped` ends any phase: an instance stopped behind our back is gone too.
    /// Returns the phase it was in, `None` if unknown.
    pub(crate) fn on_stopped(&mut self, id: &str) -> Option<Phase> {
        let inst = self.find_mut(id)?;
        let was = inst.phase;
        inst.phase = Phase::Stopped;
        Some(was)
    }

    // --- the timer ---

    pub(crate) fn arm(&mut self, now: Millis, d: Duration) {
        self.timer = Some(if self.paused {
            Timer::Frozen {
                left_ms: d.as_millis() as u64,
            }
        } else {
            Timer::Running { at: now.plus(d) }
        });
    }

    pub(crate) fn disarm(&mut self) {
        self.timer = None;
    }

    /// No timer, or a running one that has expired.
    pub(crate) fn timer_done(&self, now: Millis) -> bool {
        match self.timer {
            None => true,
            Some(Timer::Running { at }) => now >= at,
            Some(Timer::Frozen { .. }) => false,
        }
    }

    pub(crate) fn deadline(&self) -> Option<Millis> {
        match self.timer {
            Some(Timer::Running { at }) if self.finished.is_none() => Some(at),
            _ => None,
        }
    }

    pub(crate) fn pause(&mut self, now: Millis) {
        self.paused = true;
        if let Some(Timer::Running { at }) = self.timer {
            self.timer = Some(Timer::Frozen {
                left_ms: at.0.saturating_sub(now.0),
            });
        }
    }

    pub(crate) fn resume(&mut self, now: Millis) {
        self.paused = false;
        if let Some(Timer::Frozen { left_ms }) = self.timer {
            self.timer = Some(Timer::Running {
                at: Millis(now.0.saturating_add(left_ms)),
            });
        }
    }
}
