//! The status view scripts depend on (`baton status APP --json`). Field
//! names here are a public contract.

use crate::model::{AppRecord, HistoryEntry, HookRun, WarmSet};
use crate::sampler::Sampler;
use baton_core::Millis;
use baton_rollout::{Outcome, RolloutStatus, State};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AppStatus {
    pub app: String,
    pub stable_version: Option<String>,
    pub previous_version: Option<String>,
    pub instances: Vec<InstanceStatus>,
    /// Target weights by version (what the proxy splits by).
    pub weights: BTreeMap<String, u32>,
    /// The running deployment, or the last finished one, or null.
    pub deployment: Option<DeploymentStatus>,
    /// Live per-version traffic over the last few seconds.
    pub traffic: Vec<VersionTraffic>,
    /// During an ab_test with `[apps.X.analysis]`: each variant's figures and whether
    /// it differs significantly from the control (the current version). Null otherwise.
    #[serde(default)]
    pub experiment: Option<ExperimentStatus>,
    /// Blue/green after a switch: the previous version kept warm (out of routing) until
    /// `until`; `rollback` or a deploy of that version switches back at once.
    #[serde(default)]
    pub warm: Option<WarmSet>,
    /// Why the app's record could not be stored, while that lasts. Nothing that depends
    /// on a new record (a deployment step, a new deployment) happens meanwhile; traffic
    /// keeps its current routing.
    #[serde(default)]
    pub store_error: Option<String>,
}

/// An A/B experiment as `status` shows it (refreshed every analysis `interval`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExperimentStatus {
    /// The version every variant is compared with (the one serving before the test).
    pub control: String,
    /// When the variant first received traffic: the figures count from here.
    pub since: Millis,
    pub confidence: f64,
    /// The error-rate difference the sample size is computed for (0.01 = 1 point).
    pub mde_error_rate: f64,
    /// Requests, error rate and latency percentiles of each variant, control first.
    pub variants: Vec<baton_analysis::VariantStats>,
    /// Each non-control variant against the control: p-values, confidence intervals,
    /// significance, and the sample still needed per variant.
    pub comparisons: Vec<baton_analysis::VariantComparison>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InstanceStatus {
    pub id: String,
    pub version: String,
    pub address: String,
    pub healthy: bool,
    pub in_flight: u64,
    pub started_at: Millis,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeploymentStatus {
    pub id: String,
    pub version: String,
    pub from_version: Option<String>,
    pub strategy: String,
    pub state: State,
    pub step: String,
    pub step_index: usize,
    pub total_steps: usize,
    /// A label for each step of the running deployment, in order (`step_index` points
    /// into it); empty once it finished.
    #[serde(default)]
    pub steps: Vec<String>,
    pub reason: Option<String>,
    pub started_at: Millis,
    pub finished_at: Option<Millis>,
    /// The latest canary-analysis verdict of the running deployment, if any.
    #[serde(default)]
    pub verdict: Option<baton_rollout::Verdict>,
    /// Its release step cannot be undone: automatic rollbacks freeze it instead, and
    /// `abort` / `rollback` need `--force`.
    #[serde(default)]
    pub irreversible: bool,
    /// Why the rollout is frozen (it would have gone back on its own), while it is.
    #[serde(default)]
    pub frozen: Option<String>,
    /// Its hooks (the release hook while it runs), with the tail of their output.
    #[serde(default)]
    pub hooks: Vec<HookRun>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VersionTraffic {
    pub version: String,
    /// Requests per second over the window.
    pub rps: f64,
    pub requests: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub in_flight: i64,
}

/// The state of a finished deployment as `status` reports it.
pub fn outcome_state(outcome: Outcome) -> State {
    match outcome {
        Outcome::Succeeded => State::Succeeded,
        Outcome::Failed => State::Failed,
        Outcome::Aborted | Outcome::RolledBack => State::Aborted,
    }
}

/// Everything an app actor shares with readers after each change.
#[derive(Debug, Clone)]
pub struct AppView {
    pub record: AppRecord,
    pub healthy: BTreeSet<String>,
    pub rollout: Option<RolloutStatus>,
    pub last_finished: Option<HistoryEntry>,
    /// The running A/B experiment's comparison (the actor refreshes it).
    pub experiment: Option<ExperimentStatus>,
    /// The last store failure, until a store succeeds.
    pub store_error: Option<String>,
    /// The routing the proxy was last given (its weights are what `status` reports).
    pub published: baton_rollout::RoutePlan,
}

impl AppView {
    pub fn status(&self, in_flight: impl Fn(&str) -> u64, sampler: &Sampler) -> AppStatus {
        let r = &self.record;
        let instances = r
            .instances
            .iter()
            .map(|h| InstanceStatus {
                id: h.id.clone(),
                version: h.version.clone(),
                address: h.addr.to_string(),
                healthy: self.healthy.contains(&h.id),
                in_flight: in_flight(&h.id),
                started_at: h.started_at,
            })
            .collect();
        let weights = self
            .published
            .pools
            .iter()
            .map(|p| (p.version.clone(), p.weight))
            .collect();
        let deployment = match (&r.deployment, &self.rollout, &self.last_finished) {
            (Some(d), Some(s), _) => Some(DeploymentStatus {
                id: d.id.clone(),
                version: d.version.clone(),
                from_version: d.rollout.spec().from_version.clone(),
                strategy: d.strategy.clone(),
                state: s.state,
                step: s.step.clone(),
                step_index: s.step_index,
                total_steps: s.total_steps,
                steps: d.rollout.step_labels(),
                reason: s.reason.clone(),
                started_at: d.started_at,
                finished_at: None,
                verdict: s.verdict.clone(),
                irreversible: d.irreversible,
                frozen: d.frozen.clone(),
                hooks: d.release.iter().cloned().collect(),
            }),
            (_, _, Some(h)) => Some(DeploymentStatus {
                id: h.id.clone(),
                version: h.to_version.clone(),
                from_version: h.from_version.clone(),
                strategy: h.strategy.clone(),
                state: outcome_state(h.outcome),
                step: "finished".into(),
                step_index: 0,
                total_steps: 0,
                steps: Vec::new(),
                reason: h.reason.clone(),
                started_at: h.started_at,
                finished_at: Some(h.finished_at),
                verdict: None,
                irreversible: h.irreversible,
                frozen: None,
                hooks: h.hooks.clone(),
            }),
            _ => None,
        };
        // Route pools too: the fair baseline is a pool of its own (`v1.baseline`).
        let mut versions: Vec<String> = r
            .instances
            .iter()
            .map(|h| h.version.clone())
            .chain(r.route.pools.iter().map(|p| p.version.clone()))
            .collect();
        versions.sort();
        versions.dedup();
        let traffic = versions
            .into_iter()
            .filter_map(|v| {
                let (span, snap) = sampler.window(&r.name, &v, Duration::from_secs(5))?;
                let secs = span.as_secs_f64().max(1.0);
                Some(VersionTraffic {
                    rps: snap.requests as f64 / secs,
                    requests: snap.requests,
                    errors: snap.errors(),
                    error_rate: snap.error_rate(),
                    p50_ms: snap.quantile(0.5).as_secs_f64() * 1000.0,
                    p99_ms: snap.quantile(0.99).as_secs_f64() * 1000.0,
                    in_flight: snap.in_flight,
                    version: v,
                })
            })
            .collect();
        AppStatus {
            app: r.name.clone(),
            stable_version: r.stable_version.clone(),
            previous_version: r.previous_version.clone(),
            instances,
            weights,
            deployment,
            traffic,
            experiment: self
                .experiment
                .clone()
                .filter(|_| self.record.deployment.is_some()),
            warm: r.warm.clone(),
            store_error: self.store_error.clone(),
        }
    }
}
