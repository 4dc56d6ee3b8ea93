//! The admin API's request and response bodies, defined once: the server decodes and
//! encodes them, the CLI's client sends and reads them, and the OpenAPI document is
//! generated from them. JSON field names are a public contract (`baton status --json`).

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

pub use baton_config::{AppChange, ConfigDiff, KeyChange, Takes};
pub use baton_controller::delivery::{Delivery, DeliveryStats};
pub use baton_controller::model::{Event, HistoryEntry, HookRun, HookState};
pub use baton_controller::status::{
    AppStatus, DeploymentStatus, ExperimentStatus, InstanceStatus, VersionTraffic,
};
pub use baton_controller::PlanReport;

/// Every error answer: what is wrong and what to do about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    /// `POST /v1/upgrade` only: the last lines the new process wrote to stderr.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr: Option<Vec<String>>,
}

impl ErrorBody {
    pub fn new(error: impl Into<String>) -> Self {
        ErrorBody {
            error: error.into(),
            stderr: None,
        }
    }
}

/// The body of `POST /v1/apps/{app}/deployments`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// The version to deploy (letters, digits, `.`, `_`, `-`).
    pub version: String,
    /// `recreate`, `blue_green`, `rolling`, `canary` or `ab_test`; the app's configured
    /// strategy when absent.
    #[serde(default)]
    pub strategy: Option<String>,
    /// `HOST:PORT` addresses of already running instances (runtime = "static").
    #[serde(default)]
    pub targets: Vec<String>,
    /// The release step cannot be undone (e.g. a schema migration the previous version
    /// cannot use): once it ran, an automatic rollback freezes the rollout instead of
    /// sending traffic back, and `abort` / `rollback` need `force`. Default false (the
    /// app's `[apps.X.hooks] reversible = false` says the same for every deploy).
    #[serde(default)]
    pub irreversible: bool,
}

/// The body of `POST /v1/apps/{app}/abort` and `.../rollback` (optional).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForceRequest {
    /// Go back to the previous version even after an irreversible release step (refused
    /// without it).
    #[serde(default)]
    pub force: bool,
}

/// A deployment that was accepted and started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeployCreated {
    /// Its id, as `deployment.id` in the app's status and `id` in its history.
    pub id: String,
}

/// The body of `POST /v1/apps/{app}/promote` (optional).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromoteRequest {
    /// An A/B test only: the variant that wins.
    #[serde(default)]
    pub to: Option<String>,
}

/// The recent output of one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InstanceLogs {
    pub instance: String,
    pub version: String,
    pub lines: Vec<String>,
}

/// The body of `POST /v1/upgrade` (all optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpgradeRequest {
    /// How long the new process may take to report ready, e.g. `"30s"`.
    #[serde(default)]
    pub timeout: Option<String>,
}

/// A handover that happened: the old process now drains and exits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UpgradeDone {
    pub old_pid: u32,
    pub new_pid: u32,
    pub binary: String,
}

/// The body of `POST /v1/reload` (optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReloadRequest {
    /// Only compute and return the difference; change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// What `POST /v1/reload` found in the configuration file and what it did with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReloadReport {
    /// The file read: the one the server was started with.
    pub path: String,
    pub dry_run: bool,
    /// From the configuration in force to the file.
    pub diff: ConfigDiff,
    /// Whether anything was changed (false for a dry run, and when nothing a reload can
    /// apply differs).
    pub applied: bool,
    /// Changes a reload does not apply: each needs `baton upgrade` or a restart.
    pub not_applied: Vec<String>,
    /// Apps removed, with the instances that were drained and stopped for each.
    pub stopped: std::collections::BTreeMap<String, Vec<String>>,
    /// A dry run only: why applying the file would be refused now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// What went wrong after the reload was under way (everything else was applied).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// `GET /v1/apps/{app}/history`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// The most recent deployments to list (default 50).
    pub limit: Option<usize>,
}

/// `GET /v1/apps/{app}/logs`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Only the instances of this version.
    pub version: Option<String>,
    /// Lines per instance (default 100).
    pub lines: Option<usize>,
}

/// `GET /v1/apps/{app}/plan`.
#[derive(Debug, Clone, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PlanQuery {
    /// The version the planned deployment would deploy.
    pub version: String,
    /// The strategy to plan with; the app's configured one when absent.
    pub strategy: Option<String>,
}

/// `GET /v1/events`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only the events of this app.
    pub app: Option<String>,
}

/// `GET /v1/apps/{app}/events`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AppEventsQuery {
    /// The most recent events to return (default 100, at most 1000).
    pub limit: Option<usize>,
}
