//! Deployment strategies as pure, deterministic state machines (SPEC §3).
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
//! Decisions where SPEC §3 is silent:
//! - Every ending goes through one path (`converge`): route the side that stays, stop the
//!   other, restore the old count if the strategy had stopped old instances (recreate,
//!   rolling), `Finish` once nothing else runs. Rolling reverts as a rolling update under
//!   the same surge/unavailable bounds, so a failure never drops capacity further.
//! - A new-version instance failing fails the deployment until it is decided; after the
//!   commit point (canary/rolling/recreate at full size) it is noted and stopped, and the
//!   controller's healing replaces it. Blue/green's warm phase is not committed: a green
//!   failure (or a failed verdict) flips back to blue.
//! - A stable instance failing is not the deployment's doing: noted, unrouted, stopped,
//!   and the deployment goes on.
//! - Pause freezes progress and timers; it does not apply once a deployment is decided.
//!   `promote` and `abort` lift it. A restore instance that fails is not retried.
//! - With no running instance of the previous version, any strategy starts the new
//!   version directly (nothing to shift traffic from).

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
    /// Operator: after a successful switch, while the previous version is still warm
    /// (blue/green `scale_down_delay`), flip traffic back.
    Rollback,
    /// An analysis verdict (issue 6 plugs in here).
    Verdict(Verdict),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Running,
    Paused,
    Succeeded,
    Failed,
    Aborted,
}
