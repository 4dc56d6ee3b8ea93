//! What the controller stores per app: enough to rebuild routing and resume a deployment
//! after `kill -9`. These are the JSON values in `baton-store`.

use baton_core::Millis;
use baton_rollout::{Outcome, Rollout, RoutePlan};
use baton_runtime::InstanceHandle;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// The durable state of one app.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppRecord {
    pub name: String,
    /// The version serving when no deployment runs.
    pub stable_version: Option<String>,
    /// The version that served before the last successful deployment (for `rollback`).
    pub previous_version: Option<String>,
    /// Every instance baton started and has not stopped yet, whatever its version.
    pub instances: Vec<InstanceHandle>,
    /// The routing last asked for (published restricted to healthy instances).
    pub route: RoutePlan,
    pub deployment: Option<DeploymentRecord>,
    /// Instances being drained and stopped; a restarted baton finishes these stops.
    #[serde(default)]
    pub stopping: Vec<String>,
    /// Sequence for deployment ids (`{app}-{seq}`) and replacement instances.
    pub seq: u64,
    /// Blue/green after its switch: the previous version, out of routing, kept running
    /// so that switching back is instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm: Option<WarmSet>,
}

/// The previous version's instances a blue/green switch left running outside routing.
/// `rollback`, a deploy of that version, or a failure of the new version switches back
/// to them at once; at `until`, or when another version deploys, they are drained and
/// stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WarmSet {
    pub version: String,
    pub instances: Vec<String>,
    pub until: Millis,
    /// The deployment whose switch left them warm.
    pub deployment: String,
    /// That deployment's release step cannot be undone: a failure of the new version
    /// does not switch back on its own.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub irreversible: bool,
}

impl AppRecord {
    pub fn new(name: &str) -> Self {
        AppRecord {
            name: name.to_string(),
            stable_version: None,
            previous_version: None,
            instances: Vec::new(),
            route: RoutePlan::default(),
            deployment: None,
            stopping: Vec::new(),
            seq: 0,
            warm: None,
        }
    }

    pub fn instance(&self, id: &str) -> Option<&InstanceHandle> {
        self.instances.iter().find(|i| i.id == id)
    }

    /// Whether `id` is kept warm (running, never routed by the steady route).
    pub fn is_warm(&self, id: &str) -> bool {
        self.warm
            .as_ref()
            .is_some_and(|w| w.instances.iter().any(|i| i == id))
    }
}

/// A deployment in progress: the state machine itself plus what it was started with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeploymentRecord {
    pub id: String,
    pub version: String,
    pub strategy: String,
    pub started_at: Millis,
    pub rollout: Rollout,
    /// `--target` addresses for the static runtime.
    pub targets: Vec<SocketAddr>,
    /// Instances the rollout asked to start whose start has not been confirmed yet.
    pub pending_starts: Vec<String>,
    /// The release hook (`[apps.X.hooks] release`): no instance of the new version starts
    /// before it succeeded. Stored as started before it runs and as finished after, so
    /// a restarted baton re-runs it only if it had not finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<HookRun>,
    /// The operator (`--irreversible`) or the config (`reversible = false`) said the
    /// release step cannot be undone.
    #[serde(default)]
    pub irreversible_requested: bool,
    /// The release step ran and cannot be undone: an automatic rollback freezes the
    /// rollout instead of sending traffic back; `abort` / `rollback` need `--force`.
    #[serde(default)]
    pub irreversible: bool,
    /// Why the rollout is frozen (an automatic rollback was refused), while it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen: Option<String>,
}

impl DeploymentRecord {
    /// Whether the release hook has yet to succeed: the rollout waits.
    pub fn release_pending(&self) -> bool {
        self.release
            .as_ref()
            .is_some_and(|r| r.state != HookState::Succeeded)
    }
}

/// Where one hook run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HookState {
    /// Recorded, not begun.
    Pending,
    /// Stored as started; not known to have finished.
    Running,
    Succeeded,
    Failed,
}

/// A hook of a deployment: how far it got and what it said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HookRun {
    pub hook: baton_config::HookKind,
    pub command: String,
    pub state: HookState,
    /// Runs begun: more than 1 when baton was restarted while it ran.
    pub attempts: u32,
    pub exit_code: Option<i32>,
    /// "exit 0", "exit 3", "timed out after 5m", or why it could not run.
    pub result: Option<String>,
    /// The last lines of its output.
    #[serde(default)]
    pub output: Vec<String>,
}

/// One line of `baton history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    pub id: String,
    pub app: String,
    pub from_version: Option<String>,
    pub to_version: String,
    pub strategy: String,
    pub outcome: Outcome,
    pub started_at: Millis,
    pub finished_at: Millis,
    /// From the start to the end of the deployment; for blue/green, to the switch.
    pub duration_ms: u64,
    pub reason: Option<String>,
    /// Blue/green: until when the previous version was kept warm after the switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_until: Option<Millis>,
    /// The last analysis verdict with its figures (canary analysis), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<String>,
    /// The hooks the deployment ran, with the tail of their output.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookRun>,
    /// Its release step could not be undone: `baton rollback` needs `--force`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub irreversible: bool,
}

/// A deployment event, streamed over SSE and stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    pub at: Millis,
    pub app: String,
    pub deployment: Option<String>,
    pub kind: String,
    pub message: String,
}
