//! One task per app: the only writer of that app's record. It feeds the rollout state
//! machine with what happened (health, exits, operator actions, time) and carries out
//! the commands it answers — publishing routes first, then draining and stopping.
//!
//! **Invariant:** the record is stored before the commands of a step take effect, so a
//! crash at any point leaves a record that a restarted baton can resume from.
//!
//! `events.rs`: what happened (health, exits, background work); `exec.rs`: one step
//! of the rollout and carrying out its commands; `routing.rs`: publishing routes,
//! self-healing and bookkeeping; `warm.rs`: blue/green's warm window after a switch.

mod analysis;
mod events;
mod exec;
mod reconfigure;
mod routing;
mod warm;

use crate::model::{AppRecord, DeploymentRecord, HistoryEntry};
use crate::shared::Shared;
use crate::status::AppView;
use crate::ControlError;
use baton_config::AppConfig;
use baton_core::Millis;
use baton_health::{HealthEvent, MonitorHandle};
use baton_rollout::{Input, Outcome, Rollout};
use baton_runtime::{InstanceHandle, Runtime, RuntimeEvent};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// Operator requests routed to an app's actor.
pub enum Msg {
    Deploy {
        req: DeployRequest,
        reply: oneshot::Sender<Result<String, ControlError>>,
    },
    Op {
        op: Op,
        reply: oneshot::Sender<Result<(), ControlError>>,
    },
    /// `baton reload`: the app's new settings (`reconfigure.rs`).
    Reconfigure {
        cfg: Box<AppConfig>,
        reply: oneshot::Sender<Result<(), ControlError>>,
    },
    /// `baton reload` removed the app: drain and stop every instance and store the app
    /// as retired (`reconfigure.rs`); answers the instances stopped. The actor ends when
    /// its inbox closes.
    Retire {
        reply: oneshot::Sender<Result<Vec<String>, ControlError>>,
    },
}

#[derive(Debug, Clone)]
pub struct DeployRequest {
    pub version: String,
    pub strategy: Option<baton_config::StrategyKind>,
    pub targets: Vec<std::net::SocketAddr>,
}

#[derive(Debug, Clone)]
pub enum Op {
    Promote { to: Option<String> },
    Abort,
    Pause,
    Resume,
    Rollback,
}

/// Results of background work, reported back to the actor.
enum Done {
    Started {
        id: String,
        result: Result<InstanceHandle, String>,
    },
    Stopped {
        id: String,
    },
    /// An external gate answered (`Err`: why it refused).
    Gate {
        gate: baton_rollout::Gate,
        step: Option<usize>,
        result: Result<(), String>,
    },
    /// An analysis round whose Prometheus checks are done.
    Analysis(Box<analysis::Round>),
    /// A `post_promote` / `rollback` notification answered.
    Notified {
        gate: baton_rollout::Gate,
        deployment: String,
        result: Result<(), String>,
    },
}

pub struct AppActor {
    pub(crate) name: String,
    pub(crate) cfg: AppConfig,
    pub(crate) record: AppRecord,
    pub(crate) runtime: Arc<dyn Runtime>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) healthy: BTreeSet<String>,
    monitors: HashMap<String, MonitorHandle>,
    /// Instances being drained/stopped (no second stop, no Failed for them).
    stopping: HashSet<String>,
    /// Stop requested while the instance was still starting.
    stop_after_start: HashSet<String>,
    /// Instances whose Ready was already fed to the current rollout.
    reported_ready: HashSet<String>,
    /// Replacement instances (outside deployments) whose start has not reported yet.
    healing: HashSet<String>,
    /// No replacement is attempted before this (backoff after a failed replacement).
    heal_after: Millis,
    last_finished: Option<HistoryEntry>,
    /// Canary analysis / A/B comparison of the running deployment.
    analysis: analysis::AnalysisRun,
    /// Effects of rollout steps waiting for their record to be stored.
    pending: exec::Effects,
    /// The last store failure, until a store succeeds (shown in `status`).
    store_error: Option<String>,
    /// The routing last handed to the proxy (ahead of it, `record.route` may hold a step
    /// whose record is not stored yet): `status` reports these weights.
    published: baton_rollout::RoutePlan,
    view: watch::Sender<AppView>,
    health_tx: mpsc::Sender<HealthEvent>,
    health_rx: mpsc::Receiver<HealthEvent>,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
}

impl AppActor {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: String,
        cfg: AppConfig,
        record: AppRecord,
        runtime: Arc<dyn Runtime>,
        shared: Arc<Shared>,
        healthy: BTreeSet<String>,
        last_finished: Option<HistoryEntry>,
        view: watch::Sender<AppView>,
    ) -> Self {
        let (health_tx, health_rx) = mpsc::channel(256);
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        AppActor {
            name,
            cfg,
            record,
            runtime,
            shared,
            healthy,
            monitors: HashMap::new(),
            stopping: HashSet::new(),
            stop_after_start: HashSet::new(),
            // Empty even after a restart: the monitors' first Healthy re-reports every
            // adopted instance, and the rollout treats a repeated Ready as a no-op.
            reported_ready: HashSet::new(),
            healing: HashSet::new(),
            heal_after: Millis(0),
            last_finished,
            analysis: analysis::AnalysisRun::default(),
            pending: exec::Effects::default(),
            store_error: None,
            published: baton_rollout::RoutePlan::default(),
            view,
            health_tx,
            health_rx,
            done_tx,
            done_rx,
        }
    }

    /// Runs until the inbox closes. `lost` are instances that vanished while baton was
    /// down; they are reported to the rollout (or replaced) once the loop starts.
    pub async fn run(
        mut self,
        mut inbox: mpsc::Receiver<Msg>,
        mut runtime_rx: mpsc::UnboundedReceiver<RuntimeEvent>,
        lost: Vec<(String, String)>,
    ) {
        // Stops interrupted by a crash: finish those still running; the rollout hears
        // about the ones already gone through `lost` (a failure while stopping = stopped).
        let mut resume_stops = std::mem::take(&mut self.record.stopping);
        resume_stops.retain(|id| self.record.instance(id).is_some());
        for h in self.record.instances.clone() {
            if !resume_stops.contains(&h.id) {
                self.watch_health(&h);
            }
        }
        self.publish();
        for (id, reason) in lost {
            self.instance_gone(&id, reason).await;
        }
        for id in resume_stops {
            self.stop_instance(&id);
        }
        if self.record.deployment.is_some() {
            self.feed(Input::Tick).await;
            // The answer to a gate asked before the restart was lost: ask again.
            let pending = self
                .record
                .deployment
                .as_ref()
                .and_then(|d| d.rollout.pending_gate());
            if let Some((gate, step, weight)) = pending {
                self.ask_gate(gate, step, weight);
            }
        } else {
            self.heal().await;
        }
        self.share();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = inbox.recv() => match msg {
                    Some(msg) => self.on_msg(msg).await,
                    None => break,
                },
                Some(ev) = self.health_rx.recv() => self.on_health(ev).await,
                Some(ev) = runtime_rx.recv() => self.on_runtime(ev).await,
                Some(done) = self.done_rx.recv() => self.on_done(done).await,
                _ = tick.tick() => {
                    // Effects held back by a failed store: store again, then carry out.
                    self.flush().await;
                    if self.record.deployment.is_some() {
                        self.feed(Input::Tick).await;
                        self.analyze().await;
                    } else {
                        self.expire_warm().await;
                        self.heal().await;
                    }
                }
            }
            self.share();
        }
    }

    // === operator requests ===

    async fn on_msg(&mut self, msg: Msg) {
        match msg {
            Msg::Deploy { req, reply } => {
                let r = self.deploy(req).await;
                let _ = reply.send(r);
            }
            Msg::Op { op, reply } => {
                let r = self.op(op).await;
                let _ = reply.send(r);
            }
            Msg::Reconfigure { cfg, reply } => {
                let r = self.reconfigure(*cfg).await;
                let _ = reply.send(r);
            }
            Msg::Retire { reply } => {
                let r = self.retire().await;
                let _ = reply.send(r);
            }
        }
    }

    async fn deploy(&mut self, req: DeployRequest) -> Result<String, ControlError> {
        if let Some(d) = &self.record.deployment {
            let s = d.rollout.status();
            return Err(ControlError::InProgress {
                app: self.name.clone(),
                id: d.id.clone(),
                version: d.version.clone(),
                strategy: d.strategy.clone(),
                state: format!("{:?}", s.state).to_lowercase(),
            });
        }
        baton_core::validate_version(&req.version)
            .map_err(|e| ControlError::BadRequest(e.to_string()))?;
        let operator_targets = self.runtime.operator_targets();
        if operator_targets && req.targets.is_empty() {
            return Err(ControlError::BadRequest(format!(
                "app {} uses the static runtime: pass the instances with --target HOST:PORT (once per instance)",
                self.name
            )));
        }
        if !operator_targets && !req.targets.is_empty() {
            return Err(ControlError::BadRequest(format!(
                "--target is only for apps with runtime = \"static\"; {} uses runtime = \"{}\"",
                self.name,
                self.runtime.kind()
            )));
        }
        if self.can_switch_to_warm(&req.version) && self.targets_are_warm(&req.targets) {
            let reason = format!("{} was still warm: switched back at once", req.version);
            let keep_for = self.cfg.blue_green.scale_down_delay.get();
            if let Some(id) = self
                .switch_to_warm(Outcome::Succeeded, reason, Some(keep_for))
                .await
            {
                return Ok(id);
            }
        }
        let kind = req.strategy.unwrap_or(self.cfg.strategy);
        let strategy = self.cfg.strategy_spec(kind);
        let is_canary = matches!(strategy, baton_rollout::StrategySpec::Canary(_));
        let replicas = if operator_targets {
            req.targets.len() as u32
        } else {
            self.cfg.replicas
        };
        let seq = self.record.seq + 1;
        let id = format!("{}-{seq}", self.name);
        let from_instances = self.stable_instances();
        let spec = baton_rollout::RolloutSpec {
            app: self.name.clone(),
            deployment_id: id.clone(),
            from_version: self.record.stable_version.clone(),
            from_instances,
            to_version: req.version.clone(),
            replicas,
            strategy,
            gates: self.configured_gates(),
            baseline: self.analysis_active() && self.cfg.analysis.baseline && is_canary,
        };
        spec.validate()
            .map_err(|e| ControlError::BadRequest(e.to_string()))?;
        // Another version replaces the serving one: the warm version's time is over.
        let why = format!("deploying {}", req.version);
        self.end_warm(&why).await;
        let before = self.record.clone();
        self.record.seq = seq;
        let now = Millis::now();
        let strategy_name = spec.strategy.name().to_string();
        self.record.deployment = Some(DeploymentRecord {
            id: id.clone(),
            version: req.version.clone(),
            strategy: strategy_name.clone(),
            started_at: now,
            rollout: Rollout::new(spec, now),
            targets: req.targets,
            pending_starts: Vec::new(),
        });
        // The deployment exists once it is stored; if it cannot be, nothing changed.
        if let Err(error) = self.persist(None, Vec::new()).await {
            self.record = before;
            return Err(ControlError::StoreFailed(format!(
                "{error}; the deployment was not started and nothing changed (fix the store, e.g. free disk space, and deploy again)"
            )));
        }
        self.reported_ready.clear();
        let from = self
            .record
            .stable_version
            .clone()
            .unwrap_or_else(|| "nothing".into());
        let msg = format!("deploying {} (from {from}) by {strategy_name}", req.version);
        self.feed_with(Input::Tick, vec![self.event("started", msg)])
            .await;
        self.analysis_started().await;
        Ok(id)
    }

    async fn op(&mut self, op: Op) -> Result<(), ControlError> {
        if self.record.deployment.is_none() {
            return self.op_after_deployment(op).await;
        }
        if let Op::Rollback = op {
            let warm = self
                .record
                .deployment
                .as_ref()
                .is_some_and(|d| d.rollout.can_roll_back_instantly());
            if !warm {
                return Err(ControlError::BadRequest(format!(
                    "a deployment of {} is running: use `baton abort {}` to go back to the stable version",
                    self.name, self.name
                )));
            }
        }
        let (input, what) = match op {
            Op::Promote { to } => (Input::Promote { to }, "promote"),
            Op::Abort => (
                Input::Abort {
                    reason: "aborted by operator".into(),
                },
                "abort",
            ),
            Op::Pause => (Input::Pause, "pause"),
            Op::Resume => (Input::Resume, "resume"),
            Op::Rollback => (Input::Rollback, "rollback"),
        };
        let ev = self.event("operator", format!("{what} requested"));
        self.feed_with(input, vec![ev]).await;
        Ok(())
    }

    /// Operator requests with no deployment running: `rollback` switches back to the
    /// warm version, or deploys the previous one; `promote` ends the warm window now.
    async fn op_after_deployment(&mut self, op: Op) -> Result<(), ControlError> {
        match op {
            Op::Rollback => {
                let Some(prev) = self.record.previous_version.clone() else {
                    return Err(ControlError::NothingToRollBack {
                        app: self.name.clone(),
                    });
                };
                if self.can_switch_to_warm(&prev) {
                    let reason = format!("rolled back to {prev} by the operator");
                    if self
                        .switch_to_warm(Outcome::RolledBack, reason, None)
                        .await
                        .is_some()
                    {
                        return Ok(());
                    }
                }
                if self.runtime.operator_targets() {
                    return Err(ControlError::BadRequest(format!(
                        "{} uses the static runtime and {prev} is no longer running: `baton deploy {} {prev} --target ...`",
                        self.name, self.name
                    )));
                }
                self.deploy(DeployRequest {
                    version: prev,
                    strategy: None,
                    targets: Vec::new(),
                })
                .await
                .map(|_| ())
            }
            Op::Promote { .. } if self.record.warm.is_some() => {
                self.end_warm("promote").await;
                Ok(())
            }
            _ => Err(ControlError::NoDeployment {
                app: self.name.clone(),
            }),
        }
    }

    /// For the static runtime, a deploy of the warm version switches back only when it
    /// names exactly the warm instances' addresses.
    fn targets_are_warm(&self, targets: &[std::net::SocketAddr]) -> bool {
        if targets.is_empty() {
            return true;
        }
        let mut warm: Vec<std::net::SocketAddr> = self
            .record
            .warm
            .iter()
            .flat_map(|w| w.instances.iter())
            .filter_map(|id| self.record.instance(id))
            .map(|h| h.addr)
            .collect();
        let mut want = targets.to_vec();
        warm.sort();
        want.sort();
        warm.dedup();
        want.dedup();
        warm == want
    }
}
