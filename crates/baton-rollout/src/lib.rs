//! Deployment strategies as pure, deterministic state machines.
//!
//! A [`Rollout`] is created from a [`RolloutSpec`], then driven by [`Rollout::handle`]
//! with [`Input`]s and the current time; it answers with [`Command`]s for the controller
//! to carry out. It performs no I/O, reads no clock and holds no handles, and it is
//! `Serialize` so the controller can store it after every step and resume it after a
//! crash.
//!
//! Contract with the controller (the reconciler):
//! - `Command::Route` is the complete desired routing of the app. The controller
//!   publishes it at once, restricted to instances that are currently healthy.
//! - `Command::Start` asks for a new instance; the controller answers later with
//!   `Input::Ready` (healthy) or `Input::Failed` (start error, exit, startup timeout,
//!   unhealthy).
//! - `Command::Stop` is only ever emitted after a `Route` that no longer sends traffic to
//!   that instance; the controller drains it, stops it and answers `Input::Stopped`.
//! - `Command::Finish` ends the deployment; afterwards `handle` emits nothing.
//! - `Input::Tick` is sent at least at [`Rollout::next_deadline`].
//! - A `Stop` is answered by `Stopped`, or by `Failed` when the instance's start failed
//!   after the stop was asked (both mean: gone). Each instance is stopped at most once.
//!
//! Decisions the strategies' definitions leave open:
//! - Every ending goes through one path (`converge`): route the side that stays, stop the
//!   other, restore the old count if the strategy had stopped old instances (recreate,
//!   rolling), `Finish` once nothing else runs. Rolling reverts as a rolling update under
//!   the same surge/unavailable bounds, so a failure never drops capacity further.
//! - A new-version instance failing fails the deployment until it is decided; after the
//!   commit point (canary/rolling/recreate at full size) it is noted and stopped, and the
//!   controller's healing replaces it.
//! - Blue/green finishes at the switch: the deployment is over for the operator (the new
//!   version is stable, history has the switch time, the next deploy is accepted). With a
//!   `scale_down_delay` the previous version's ready instances are handed over in
//!   `Finish::warm` instead of being stopped; the controller keeps them warm (a failure
//!   of the new version, a `rollback` or a deploy of the warm version switches back at
//!   once) and drains and stops them when the delay ends or another version deploys.
//! - A stable instance failing is not the deployment's doing: noted, unrouted, stopped,
//!   and the deployment goes on.
//! - Pause freezes progress and timers; it does not apply once a deployment is decided.
//!   `promote` and `abort` lift it. A restore instance that fails is not retried.
//! - With no running instance of the previous version, any strategy starts the new
//!   version directly (nothing to shift traffic from).
//! - External gates (`RolloutSpec::gates`): the machine emits `Command::Gate` and waits,
//!   doing nothing else on its own, until `Input::GateResult` answers that very gate.
//!   `pre_rollout` comes before anything starts (a failure changes nothing), `step`
//!   before each canary weight step, `pre_promote` before the final full rollout, the
//!   blue/green switch or an A/B promotion of the new variant. A failed gate reverts.
//!   `post_promote` and `rollback` happen after the machine is finished: the controller
//!   calls those itself.
//! - A fair baseline (`RolloutSpec::baseline`, canary only): one extra instance of the
//!   previous version, routed as its own pool named [`baseline_label`] with the canary's
//!   share (at most the rest when the canary is above 50%), so analysis compares like with
//!   like. It is started with the first weight step, never replaced if it fails (analysis
//!   then compares with the whole stable fleet) and stopped by every ending.

mod book;
mod converge;
mod error;
mod machine;
pub mod spec;
mod strategies;

pub use error::SpecError;
pub use machine::{Rollout, RolloutStatus};
pub use spec::*;

use baton_core::{RuleSpec, StickySpec};
use serde::{Deserialize, Serialize};

/// Identifies an instance across the controller, runtime, proxy and store.
pub type InstanceId = String;

/// What happened, as told to the state machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "input")]
pub enum Input {
    /// Time passed (also the first input after `Rollout::new` and after a restart).
    Tick,
    /// The instance passed its health checks and may receive traffic.
    Ready {
        instance: InstanceId,
    },
    /// The instance failed to start, exited, missed `startup_timeout` or turned
    /// unhealthy. `reason` is for people ("exited with status 1: <last log line>").
    Failed {
        instance: InstanceId,
        reason: String,
    },
    /// The instance was drained and stopped after a `Command::Stop`.
    Stopped {
        instance: InstanceId,
    },
    /// Operator: skip the remaining pauses and finish (canary, blue/green), or choose the
    /// winning variant (`to`, ab_test).
    Promote {
        to: Option<String>,
    },
    /// Operator: back to stable now.
    Abort {
        reason: String,
    },
    Pause,
    Resume,
    /// Operator: flip traffic back to the previous version while it still runs. Only a
    /// blue/green deployment stored by an older baton in its warm phase accepts it;
    /// since then a blue/green deployment finishes at the switch and the controller
    /// keeps the previous version warm itself ([`Finish::warm`]).
    Rollback,
    /// An analysis verdict.
    Verdict(Verdict),
    /// The answer to `Command::Gate` (the webhook's reply, or its timeout). An answer for
    /// a gate the machine is not waiting at is noted and ignored.
    GateResult {
        gate: Gate,
        step: Option<usize>,
        ok: bool,
        reason: Option<String>,
    },
}

/// The points where an external check (a webhook) may stop a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gate {
    /// Before anything starts.
    PreRollout,
    /// Before each canary weight step applies.
    Step,
    /// Before the final full rollout, the blue/green switch or an A/B promotion.
    PrePromote,
    /// After a successful finish (the controller's, not the machine's).
    PostPromote,
    /// When a deployment goes back to the previous version (notification only).
    Rollback,
}

impl Gate {
    pub fn name(self) -> &'static str {
        match self {
            Gate::PreRollout => "pre_rollout",
            Gate::Step => "step",
            Gate::PrePromote => "pre_promote",
            Gate::PostPromote => "post_promote",
            Gate::Rollback => "rollback",
        }
    }
}

/// The route pool name (and metrics label) of the fair baseline of `version`. `None` when
/// it would not be a valid version label (too long), in which case no baseline runs.
pub fn baseline_label(version: &str) -> Option<String> {
    let label = format!("{version}.baseline");
    baton_core::validate_version(&label).ok().map(|_| label)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "verdict")]
pub enum Verdict {
    Pass,
    Fail { reason: String },
    Inconclusive { reason: String },
}

/// What the controller must do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "command")]
pub enum Command {
    /// Start a new instance of `version` with this id.
    Start {
        instance: InstanceId,
        version: String,
    },
    /// Drain and stop this instance (already out of routing).
    Stop { instance: InstanceId },
    /// Publish this routing for the app.
    Route(RoutePlan),
    /// Something worth telling people (goes to events and history).
    Note { message: String },
    /// Ask the external check at `gate` and answer with `Input::GateResult`; the
    /// deployment waits there until then. `weight` is the canary weight about to apply.
    Gate {
        gate: Gate,
        step: Option<usize>,
        weight: Option<u32>,
    },
    /// The deployment is over.
    Finish(Finish),
}

/// Desired routing of one app, in terms of instance ids.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RoutePlan {
    /// In hash-range order: the newest version first (see `baton_core::AppRouteSpec`).
    pub pools: Vec<PoolPlan>,
    pub rules: Vec<RuleSpec>,
    pub sticky: Option<StickySpec>,
    /// Hold requests while no pool has a ready instance (recreate).
    pub hold: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolPlan {
    pub version: String,
    pub weight: u32,
    pub instances: Vec<InstanceId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finish {
    pub outcome: Outcome,
    /// The version serving after this deployment, and its instances.
    pub stable_version: Option<String>,
    pub instances: Vec<InstanceId>,
    pub reason: Option<String>,
    /// Blue/green with a `scale_down_delay`: the previous version's instances are left
    /// running, out of routing, for the controller to keep warm (an instant switch back)
    /// and then drain and stop. Every other ending leaves nothing behind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm: Option<Warm>,
}

/// Instances a finished deployment leaves running outside routing (see [`Finish::warm`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Warm {
    pub version: String,
    pub instances: Vec<InstanceId>,
    /// How long the controller keeps them before draining and stopping them.
    pub keep_for_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    /// Failed on its own (instance failure, failed analysis) and rolled back.
    Failed,
    /// Stopped by the operator and rolled back.
    Aborted,
    /// Succeeded, then flipped back by `rollback` while the old version was warm.
    RolledBack,
}

/// The state reported to people and scripts (`status --json` → `deployment.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Running,
    Paused,
    Succeeded,
    Failed,
    Aborted,
}
