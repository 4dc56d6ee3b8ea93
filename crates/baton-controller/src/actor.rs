//! One task per app: the only writer of that app's record. It feeds the rollout state
//! machine with what happened (health, exits, operator actions, time) and carries out
//! the commands it answers — publishing routes first, then draining and stopping.
//!
//! **Invariant:** the record is stored before the commands of a step take effect, so a
//! crash at any point leaves a record that a restarted baton can resume from.

use crate::model::{AppRecord, DeploymentRecord, Event, HistoryEntry};
use crate::shared::Shared;
use crate::status::AppView;
use crate::ControlError;
use baton_config::AppConfig;
use baton_core::{AppRouteSpec, BackendSpec, HoldSpec, Millis, PoolSpec};
use baton_health::{spawn_monitor, HealthEvent, MonitorHandle};
use baton_rollout::{Command, Finish, Input, Outcome, PoolPlan, Rollout, RoutePlan, State};
use baton_runtime::{InstanceHandle, Runtime, RuntimeEvent, StartRequest};
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
                    if self.record.deployment.is_some() {
                        self.feed(Input::Tick).await;
                    } else {
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
        }
    }

    async fn deploy(&mut self, req: DeployRequest) -> Result<String, ControlError> {
        if let Some(d) = &self.record.deployment {
            let s = d.rollout.status();
            let hint = if s.state == State::Succeeded {
                format!("succeeded, keeping the previous version warm; `baton promote {}` finishes it now", self.name)
            } else {
                format!("{:?}", s.state).to_lowercase()
            };
            return Err(ControlError::InProgress {
                app: self.name.clone(),
                id: d.id.clone(),
                version: d.version.clone(),
                strategy: d.strategy.clone(),
                state: hint,
            });
        }
        baton_core::validate_version(&req.version)
            .map_err(|e| ControlError::BadRequest(e.to_string()))?;
        let is_static = self.runtime.kind() == "static";
        if is_static && req.targets.is_empty() {
            return Err(ControlError::BadRequest(format!(
                "app {} uses the static runtime: pass the instances with --target HOST:PORT (once per instance)",
                self.name
            )));
        }
        if !is_static && !req.targets.is_empty() {
            return Err(ControlError::BadRequest(format!(
                "--target is only for apps with runtime = \"static\"; {} uses runtime = \"{}\"",
                self.name,
                self.runtime.kind()
            )));
        }
        let kind = req.strategy.unwrap_or(self.cfg.strategy);
        let strategy = self.cfg.strategy_spec(kind);
        let replicas = if is_static {
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
        };
        spec.validate()
            .map_err(|e| ControlError::BadRequest(e.to_string()))?;
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
        self.reported_ready.clear();
        let from = self
            .record
            .stable_version
            .clone()
            .unwrap_or_else(|| "nothing".into());
        let msg = format!("deploying {} (from {from}) by {strategy_name}", req.version);
        self.feed_with(Input::Tick, vec![self.event("started", msg)])
            .await;
        Ok(id)
    }

    async fn op(&mut self, op: Op) -> Result<(), ControlError> {
        if let Op::Rollback = op {
            let warm = self
                .record
                .deployment
                .as_ref()
                .is_some_and(|d| d.rollout.can_roll_back_instantly());
            if !warm {
                return self.rollback_by_redeploy().await;
            }
        }
        if self.record.deployment.is_none() {
            return Err(ControlError::NoDeployment {
                app: self.name.clone(),
            });
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

    async fn rollback_by_redeploy(&mut self) -> Result<(), ControlError> {
        if self.record.deployment.is_some() {
            return Err(ControlError::BadRequest(format!(
                "a deployment of {} is running: use `baton abort {}` to go back to the stable version",
                self.name, self.name
            )));
        }
        let Some(prev) = self.record.previous_version.clone() else {
            return Err(ControlError::NothingToRollBack {
                app: self.name.clone(),
            });
        };
        let targets = if self.runtime.kind() == "static" {
            return Err(ControlError::BadRequest(format!(
                "{} uses the static runtime and {prev} is no longer running: `baton deploy {} {prev} --target ...`",
                self.name, self.name
            )));
        } else {
            Vec::new()
        };
        self.deploy(DeployRequest {
            version: prev,
            strategy: None,
            targets,
        })
        .await
        .map(|_| ())
    }

    // === what happened ===

    async fn on_health(&mut self, ev: HealthEvent) {
        match ev {
            HealthEvent::Healthy { id } => {
                if self.record.instance(&id).is_none() || self.stopping.contains(&id) {
                    return;
                }
                self.healthy.insert(id.clone());
                self.publish();
                if self.record.deployment.is_some() && self.reported_ready.insert(id.clone()) {
                    self.feed(Input::Ready { instance: id }).await;
                } else if self.record.deployment.is_none() {
                    self.route_steady();
                    self.persist(None, Vec::new()).await;
                }
            }
            HealthEvent::Unhealthy { id, reason } => {
                if self.stopping.contains(&id) {
                    return;
                }
                self.healthy.remove(&id);
                self.publish();
                let reason = format!("{id} turned unhealthy: {reason}");
                let ev = self.event("unhealthy", reason.clone());
                self.report_failure(id, reason, ev).await;
            }
            HealthEvent::StartupTimeout { id, last_error } => {
                if self.stopping.contains(&id) {
                    return;
                }
                let reason = format!(
                    "{id} was not healthy within startup_timeout ({}): {last_error}",
                    self.cfg.health.startup_timeout
                );
                if self.record.deployment.is_some() {
                    let ev = self.event("failed", reason.clone());
                    self.feed_with(
                        Input::Failed {
                            instance: id,
                            reason,
                        },
                        vec![ev],
                    )
                    .await;
                } else {
                    let ev = self.event("replacing", reason);
                    self.persist(None, vec![ev]).await;
                    self.stop_instance(&id);
                }
            }
        }
    }

    async fn on_runtime(&mut self, ev: RuntimeEvent) {
        let RuntimeEvent::Exited {
            id,
            status,
            last_logs,
        } = ev;
        if self.stopping.contains(&id) {
            return;
        }
        let tail = last_logs
            .last()
            .map(|l| format!(": {l}"))
            .unwrap_or_default();
        self.instance_gone(&id, format!("{id} {status}{tail}"))
            .await;
    }

    /// An instance vanished on its own (exit, or lost across a restart).
    async fn instance_gone(&mut self, id: &str, reason: String) {
        self.monitors.remove(id);
        self.healthy.remove(id);
        self.record.instances.retain(|h| h.id != id);
        self.publish();
        let ev = self.event("exited", reason.clone());
        if self.record.deployment.is_some() {
            self.feed_with(
                Input::Failed {
                    instance: id.to_string(),
                    reason,
                },
                vec![ev],
            )
            .await;
        } else {
            self.route_steady_if_idle();
            self.persist(None, vec![ev]).await;
            self.heal().await;
        }
    }

    async fn on_done(&mut self, done: Done) {
        match done {
            Done::Started { id, result } => {
                let replacement = self.healing.remove(&id);
                if replacement && result.is_err() {
                    self.heal_after = Millis::now().plus(Duration::from_secs(5));
                }
                if let Some(d) = self.record.deployment.as_mut() {
                    d.pending_starts.retain(|p| p != &id);
                }
                match result {
                    Ok(handle) => {
                        self.record.instances.push(handle.clone());
                        self.persist(
                            None,
                            vec![self.event("started", format!("{id} started at {}", handle.addr))],
                        )
                        .await;
                        if self.stop_after_start.remove(&id) {
                            self.stop_instance(&id);
                        } else {
                            self.watch_health(&handle);
                        }
                    }
                    Err(reason) => {
                        self.stop_after_start.remove(&id);
                        let ev = self.event("failed", format!("{id} could not start: {reason}"));
                        self.report_failure(id, reason, ev).await;
                    }
                }
            }
            Done::Stopped { id } => {
                self.stopping.remove(&id);
                self.record.stopping.retain(|s| s != &id);
                self.record.instances.retain(|h| h.id != id);
                if self.record.deployment.is_some() {
                    self.feed(Input::Stopped { instance: id }).await;
                } else {
                    self.persist(None, Vec::new()).await;
                    self.heal().await;
                }
            }
        }
    }

    /// A running deployment decides what an instance failure means; otherwise it is
    /// only recorded.
    async fn report_failure(&mut self, id: String, reason: String, ev: Event) {
        if self.record.deployment.is_some() {
            self.feed_with(
                Input::Failed {
                    instance: id,
                    reason,
                },
                vec![ev],
            )
            .await;
        } else {
            self.persist(None, vec![ev]).await;
        }
    }

    // === the rollout ===

    async fn feed(&mut self, input: Input) {
        self.feed_with(input, Vec::new()).await
    }

    /// One step of the state machine: store the outcome, then carry out its commands.
    async fn feed_with(&mut self, input: Input, mut events: Vec<Event>) {
        let Some(dep) = self.record.deployment.as_mut() else {
            return;
        };
        let commands = dep.rollout.handle(input, Millis::now());
        if commands.is_empty() && events.is_empty() {
            return;
        }
        let mut starts = Vec::new();
        let mut stops = Vec::new();
        let mut history = None;
        let mut route_changed = false;
        for cmd in commands {
            match cmd {
                Command::Start { instance, version } => {
                    if let Some(d) = self.record.deployment.as_mut() {
                        d.pending_starts.push(instance.clone());
                    }
                    starts.push((instance, version));
                }
                Command::Stop { instance } => {
                    if !self.record.stopping.contains(&instance) {
                        self.record.stopping.push(instance.clone());
                    }
                    stops.push(instance)
                }
                Command::Route(plan) => {
                    self.record.route = plan;
                    route_changed = true;
                }
                Command::Note { message } => events.push(self.event("note", message)),
                Command::Finish(f) => {
                    let (entry, ev) = self.finish(f);
                    events.push(ev);
                    history = Some(entry);
                    route_changed = true;
                }
            }
        }
        self.persist(history, events).await;
        if route_changed {
            self.publish();
        }
        for id in stops {
            self.stop_instance(&id);
        }
        for (id, version) in starts {
            self.start_instance(id, version);
        }
    }

    /// The deployment is over: its verdict becomes the app's stable state.
    fn finish(&mut self, f: Finish) -> (HistoryEntry, Event) {
        let now = Millis::now();
        let dep = self.record.deployment.take();
        let from = dep
            .as_ref()
            .and_then(|d| d.rollout.spec().from_version.clone());
        if f.outcome == Outcome::Succeeded && from != f.stable_version {
            self.record.previous_version = from.clone();
        }
        self.record.stable_version = f.stable_version.clone();
        // Anything not kept by the final state and not already stopping is cleaned up.
        let keep: HashSet<&String> = f.instances.iter().collect();
        let strays: Vec<String> = self
            .record
            .instances
            .iter()
            .filter(|h| !keep.contains(&h.id) && !self.stopping.contains(&h.id))
            .map(|h| h.id.clone())
            .collect();
        self.route_steady();
        for id in strays {
            tracing::warn!(app = %self.name, instance = %id, "stopping an instance the finished deployment left behind");
            self.stop_instance(&id);
        }
        let (id, to, strategy, started) = match &dep {
            Some(d) => (
                d.id.clone(),
                d.version.clone(),
                d.strategy.clone(),
                d.started_at,
            ),
            None => (String::new(), String::new(), String::new(), now),
        };
        let entry = HistoryEntry {
            id: id.clone(),
            app: self.name.clone(),
            from_version: from,
            to_version: to.clone(),
            strategy,
            outcome: f.outcome,
            started_at: started,
            finished_at: now,
            duration_ms: now.since(started).as_millis() as u64,
            reason: f.reason.clone(),
        };
        let outcome = format!("{:?}", f.outcome).to_lowercase();
        let reason = f.reason.map(|r| format!(": {r}")).unwrap_or_default();
        let ev = self.event("finished", format!("{id} ({to}) {outcome}{reason}"));
        self.last_finished = Some(entry.clone());
        self.reported_ready.clear();
        (entry, ev)
    }

    // === carrying out commands ===

    fn start_instance(&mut self, id: String, version: String) {
        let target = self.target_for(&version);
        let req = StartRequest {
            id: id.clone(),
            app: self.name.clone(),
            version,
            target,
        };
        let runtime = self.runtime.clone();
        let done = self.done_tx.clone();
        tokio::spawn(async move {
            let result = runtime.start(req).await.map_err(|e| e.to_string());
            let _ = done.send(Done::Started { id, result });
        });
    }

    /// Drain (the instance is already out of routing), then stop.
    fn stop_instance(&mut self, id: &str) {
        let Some(handle) = self.record.instance(id).cloned() else {
            // Not started yet: stop it as soon as it is.
            let pending = self
                .record
                .deployment
                .as_ref()
                .is_some_and(|d| d.pending_starts.iter().any(|p| p == id));
            if pending {
                self.stop_after_start.insert(id.to_string());
            } else if self.record.deployment.is_some() {
                let _ = self.done_tx.send(Done::Stopped { id: id.to_string() });
            }
            return;
        };
        if !self.stopping.insert(id.to_string()) {
            return;
        }
        if !self.record.stopping.iter().any(|s| s == id) {
            self.record.stopping.push(id.to_string());
        }
        self.monitors.remove(id);
        self.healthy.remove(id);
        self.publish();
        let proxy = self.shared.routes.proxy().clone();
        let runtime = self.runtime.clone();
        let done = self.done_tx.clone();
        let drain = self.cfg.drain_timeout.get();
        let id = id.to_string();
        let app = self.name.clone();
        tokio::spawn(async move {
            let report = proxy.drain(&id, drain).await;
            if !report.completed {
                tracing::warn!(%app, instance = %id, left = report.in_flight_at_deadline, "drain deadline reached");
            }
            if let Err(error) = runtime.stop(&handle).await {
                tracing::warn!(%app, instance = %id, %error, "stopping instance failed");
            }
            let _ = done.send(Done::Stopped { id });
        });
    }

    fn watch_health(&mut self, h: &InstanceHandle) {
        let monitor = spawn_monitor(
            h.id.clone(),
            h.addr,
            self.cfg.health.clone(),
            self.health_tx.clone(),
        );
        self.monitors.insert(h.id.clone(), monitor);
    }

    /// For the static runtime: which address the next instance of `version` is.
    fn target_for(&self, version: &str) -> Option<std::net::SocketAddr> {
        let dep = self.record.deployment.as_ref()?;
        let running: HashSet<std::net::SocketAddr> =
            self.record.instances.iter().map(|h| h.addr).collect();
        if version == dep.version {
            dep.targets.iter().copied().find(|t| !running.contains(t))
        } else {
            None
        }
    }

    // === routing ===

    pub(crate) fn publish(&self) {
        let spec = self.route_spec();
        if let Err(error) = self.shared.routes.set_app(&self.name, spec) {
            tracing::error!(app = %self.name, %error, "route table rejected; previous routing kept");
        }
    }

    /// The stored plan restricted to instances that are up and healthy.
    fn route_spec(&self) -> AppRouteSpec {
        let plan = &self.record.route;
        let mut pools: Vec<PoolSpec> = plan
            .pools
            .iter()
            .map(|p| PoolSpec {
                version: p.version.clone(),
                weight: p.weight,
                backends: p
                    .instances
                    .iter()
                    .filter(|id| self.healthy.contains(*id) && !self.stopping.contains(*id))
                    .filter_map(|id| self.record.instance(id))
                    .map(|h| BackendSpec {
                        id: h.id.clone(),
                        addr: h.addr,
                    })
                    .collect(),
            })
            .collect();
        if pools.iter().all(|p| p.weight == 0) && plan.rules.is_empty() {
            // Nothing deployed yet (or nothing routable): a pool with no ready backend
            // answers 503, or holds when the plan asks for it.
            match pools.first_mut() {
                Some(p) => p.weight = 1,
                None => pools.push(PoolSpec {
                    version: self
                        .record
                        .stable_version
                        .clone()
                        .unwrap_or_else(|| "none".into()),
                    weight: 1,
                    backends: Vec::new(),
                }),
            }
        }
        AppRouteSpec {
            pools,
            rules: plan.rules.clone(),
            sticky: plan.sticky.clone(),
            hold: plan.hold.then(|| HoldSpec {
                timeout: self.cfg.hold_timeout,
                ..HoldSpec::default()
            }),
        }
    }

    /// Stable version, all its instances, 100%.
    fn route_steady(&mut self) {
        self.record.route = match &self.record.stable_version {
            Some(v) => RoutePlan {
                pools: vec![PoolPlan {
                    version: v.clone(),
                    weight: 100,
                    instances: self
                        .record
                        .instances
                        .iter()
                        .filter(|h| &h.version == v)
                        .map(|h| h.id.clone())
                        .collect(),
                }],
                ..RoutePlan::default()
            },
            None => RoutePlan::default(),
        };
    }

    fn route_steady_if_idle(&mut self) {
        if self.record.deployment.is_none() {
            self.route_steady();
        }
    }

    /// Outside deployments, keep `replicas` instances of the stable version running.
    async fn heal(&mut self) {
        if self.record.deployment.is_some()
            || self.runtime.kind() == "static"
            || Millis::now() < self.heal_after
        {
            return;
        }
        let Some(v) = self.record.stable_version.clone() else {
            return;
        };
        let have = self
            .record
            .instances
            .iter()
            .filter(|h| h.version == v && !self.stopping.contains(&h.id))
            .count() as u32;
        let starting = self.healing.len() as u32;
        for _ in (have + starting)..self.cfg.replicas {
            self.record.seq += 1;
            let id = format!("{}-r{}", self.name, self.record.seq);
            let ev = self.event(
                "replacing",
                format!("starting {id} ({v}) to keep {} replicas", self.cfg.replicas),
            );
            self.persist(None, vec![ev]).await;
            self.healing.insert(id.clone());
            self.start_instance(id, v.clone());
        }
    }

    // === bookkeeping ===

    fn stable_instances(&self) -> Vec<String> {
        match &self.record.stable_version {
            Some(v) => self
                .record
                .instances
                .iter()
                .filter(|h| &h.version == v && self.healthy.contains(&h.id))
                .map(|h| h.id.clone())
                .collect(),
            None => Vec::new(),
        }
    }

    fn event(&self, kind: &str, message: String) -> Event {
        Event {
            at: Millis::now(),
            app: self.name.clone(),
            deployment: self.record.deployment.as_ref().map(|d| d.id.clone()),
            kind: kind.to_string(),
            message,
        }
    }

    async fn persist(&mut self, history: Option<HistoryEntry>, events: Vec<Event>) {
        let store = self.shared.store.clone();
        let record = self.record.clone();
        let app = self.name.clone();
        let evs = events.clone();
        let result = tokio::task::spawn_blocking(move || {
            store.commit(&app, Some(&record), history.as_ref(), &evs)
        })
        .await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(app = %self.name, %error, "could not store state"),
            Err(error) => tracing::error!(app = %self.name, %error, "store task failed"),
        }
        for e in events {
            tracing::info!(app = %e.app, kind = %e.kind, "{}", e.message);
            let _ = self.shared.events.send(e);
        }
    }

    fn share(&self) {
        let rollout = self.record.deployment.as_ref().map(|d| d.rollout.status());
        self.view.send_replace(AppView {
            record: self.record.clone(),
            healthy: self.healthy.clone(),
            rollout,
            last_finished: self.last_finished.clone(),
        });
    }
}
