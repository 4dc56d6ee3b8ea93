//! One task per app, the executor of its reconciler (`crate::reconcile`): it turns what
//! happens (operator requests, health, exits, finished background work, time) into
//! events for `AppCore::handle`, and carries out the effects it answers — storing the
//! record, publishing routes, starting, draining and stopping instances, probing, asking
//! gates. The actor is the only writer of its app's record.
//!
//! **Invariant:** a `Persist` is carried out and answered (`Event::Stored`) before any
//! other event reaches the reconciler, which holds back whatever depends on the record
//! until then.
//!
//! Background work (starts, drains and stops, webhooks, Prometheus queries) runs in the
//! actor's own `JoinSet`; when the inbox closes (shutdown, `baton upgrade`), the actor
//! waits for that work and stores its results before it returns, and starts nothing new.

mod hooks;

use crate::gates::{self, PromOutcome};
use crate::model::{AppRecord, Event as Note, HistoryEntry};
use crate::reconcile::{Answer, AppCore, Effect, Event, Ticket};
pub use crate::reconcile::{DeployRequest, Op};
use crate::shared::Shared;
use crate::status::AppView;
use crate::ControlError;
use baton_config::AppConfig;
use baton_core::Millis;
use baton_health::{spawn_monitor, spawn_monitor_healthy, HealthEvent, MonitorHandle};
use baton_runtime::{Runtime, RuntimeEvent};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

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
    /// `baton reload`: the app's new settings (`reconcile/reconfigure.rs`).
    Reconfigure {
        cfg: Box<AppConfig>,
        reply: oneshot::Sender<Result<(), ControlError>>,
    },
    /// `baton reload` removed the app: drain and stop every instance and store the app
    /// as retired (`reconcile/reconfigure.rs`); answers the instances stopped. The actor ends when
    /// its inbox closes.
    Retire {
        reply: oneshot::Sender<Result<Vec<String>, ControlError>>,
    },
}

/// Who waits for the answer to an operator request.
enum Caller {
    Deploy(oneshot::Sender<Result<String, ControlError>>),
    Op(oneshot::Sender<Result<(), ControlError>>),
    Retire(oneshot::Sender<Result<Vec<String>, ControlError>>),
}

/// How often the reconciler hears the time without anything else happening.
const TICK: Duration = Duration::from_millis(250);

/// Past the drain timeout, how long a shutting-down actor still waits for its
/// background work before it leaves the rest to the next process.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

pub struct AppActor {
    core: AppCore,
    runtime: Arc<dyn Runtime>,
    shared: Arc<Shared>,
    monitors: HashMap<String, MonitorHandle>,
    /// Background work; each task ends with the event that reports it.
    tasks: JoinSet<Event>,
    /// `on_event` commands (operator notifications): nothing waits for their answer.
    notifications: JoinSet<()>,
    callers: HashMap<Ticket, Caller>,
    next_ticket: Ticket,
    /// Once the inbox closed: effects that begin new work are not carried out.
    closing: bool,
    view: watch::Sender<AppView>,
    health_tx: mpsc::Sender<HealthEvent>,
    health_rx: mpsc::Receiver<HealthEvent>,
}

impl AppActor {
    pub fn new(
        cfg: AppConfig,
        record: AppRecord,
        runtime: Arc<dyn Runtime>,
        shared: Arc<Shared>,
        healthy: BTreeSet<String>,
        last_finished: Option<HistoryEntry>,
    ) -> (Self, watch::Receiver<AppView>) {
        let (health_tx, health_rx) = mpsc::channel(256);
        let core = AppCore::new(
            cfg,
            record,
            healthy,
            last_finished,
            runtime.operator_targets(),
            runtime.kind(),
        );
        // Readers see the recovered record as the core reads it from the first moment:
        // a deployment in progress is reported as such, never as the last finished one.
        let (view, view_rx) = watch::channel(core.view());
        let actor = AppActor {
            core,
            runtime,
            shared,
            monitors: HashMap::new(),
            tasks: JoinSet::new(),
            notifications: JoinSet::new(),
            callers: HashMap::new(),
            next_ticket: 0,
            closing: false,
            view,
            health_tx,
            health_rx,
        };
        (actor, view_rx)
    }

    /// Hands the proxy the recovered routing (before the listener accepts).
    pub fn publish(&self) {
        self.set_routes(self.core.route_spec_now());
    }

    /// Runs until the inbox closes, then finishes (and stores) the work in flight. `lost`
    /// are instances that vanished while baton was down.
    pub async fn run(
        mut self,
        mut inbox: mpsc::Receiver<Msg>,
        mut runtime_rx: mpsc::UnboundedReceiver<RuntimeEvent>,
        lost: Vec<(String, String)>,
    ) {
        self.step(Event::Boot { lost }).await;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let event = tokio::select! {
                msg = inbox.recv() => match msg {
                    Some(msg) => self.request(msg),
                    None => break,
                },
                Some(ev) = self.health_rx.recv() => {
                    // A dead instance: requests waiting on it that can be sent again go
                    // elsewhere now, before the reconciler takes it out of routing.
                    if let HealthEvent::Unhealthy { id, .. } = &ev {
                        self.shared.routes.proxy().abandon(id);
                    }
                    health_event(ev)
                }
                Some(ev) = runtime_rx.recv() => runtime_event(ev),
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => match done {
                    Ok(ev) => ev,
                    Err(error) => {
                        tracing::error!(app = %self.core.name, %error, "a background task of the app failed");
                        continue;
                    }
                },
                Some(_) = self.notifications.join_next(), if !self.notifications.is_empty() => continue,
                _ = tick.tick() => Event::Tick,
            };
            self.step(event).await;
        }
        self.shutdown().await;
    }

    /// The inbox closed: no new work begins; the work in flight finishes and its
    /// results are stored, within the drain timeout and a grace period. What is left
    /// (a stop, a start) the record names, and the next process resumes it.
    async fn shutdown(&mut self) {
        self.closing = true;
        self.monitors.clear();
        let limit = self.core.cfg.drain_timeout.get() + SHUTDOWN_GRACE;
        let deadline = tokio::time::Instant::now() + limit;
        while !self.tasks.is_empty() {
            match tokio::time::timeout_at(deadline, self.tasks.join_next()).await {
                Ok(Some(Ok(ev))) => self.step(ev).await,
                Ok(Some(Err(_))) => {}
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(app = %self.core.name, left = self.tasks.len(), "background work still running at shutdown; the next process resumes it");
                    self.tasks.abort_all();
                    break;
                }
            }
        }
        for (_, caller) in self.callers.drain() {
            answer(caller, Err(ControlError::ShuttingDown));
        }
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while self.notifications.join_next().await.is_some() {}
        })
        .await;
    }

    fn request(&mut self, msg: Msg) -> Event {
        self.next_ticket += 1;
        let ticket = self.next_ticket;
        match msg {
            Msg::Deploy { req, reply } => {
                self.callers.insert(ticket, Caller::Deploy(reply));
                Event::Deploy { req, ticket }
            }
            Msg::Op { op, reply } => {
                self.callers.insert(ticket, Caller::Op(reply));
                Event::Op { op, ticket }
            }
            Msg::Reconfigure { cfg, reply } => {
                self.callers.insert(ticket, Caller::Op(reply));
                Event::Reconfigure { cfg, ticket }
            }
            Msg::Retire { reply } => {
                self.callers.insert(ticket, Caller::Retire(reply));
                Event::Retire { ticket }
            }
        }
    }

    /// One event through the reconciler, and its effects carried out in order. A
    /// `Persist` is answered at once, and what that releases is carried out next.
    async fn step(&mut self, event: Event) {
        let mut effects = self.core.handle(event, Millis::now());
        loop {
            let mut answer_next = None;
            for effect in effects {
                if let Some(ev) = self.carry_out(effect).await {
                    answer_next = Some(ev);
                }
            }
            match answer_next {
                Some(ev) => effects = self.core.handle(ev, Millis::now()),
                None => break,
            }
        }
        self.view.send_replace(self.core.view());
    }

    /// Carries out one effect; returns the event that answers it at once, if any.
    async fn carry_out(&mut self, effect: Effect) -> Option<Event> {
        match effect {
            Effect::Persist {
                record,
                history,
                events,
            } => Some(Event::Stored(self.persist(*record, history, events).await)),
            Effect::Publish(spec) => {
                self.set_routes(spec);
                None
            }
            Effect::Sample {
                deployment,
                versions,
            } => {
                // What every proxy counted: this process's and the other nodes' (their
                // last reports), each cumulative, so the judge's differences are the
                // fleet's.
                let metrics = self.shared.routes.proxy().metrics();
                let fleet = self.shared.fleet.counters(std::time::Instant::now());
                let snapshots: BTreeMap<_, _> = versions
                    .into_iter()
                    .map(|v| {
                        let mut snap = metrics.snapshot(&self.core.name, &v).unwrap_or_default();
                        if let Some(remote) = fleet.get(&(self.core.name.clone(), v.clone())) {
                            snap.merge(remote);
                        }
                        (v, snap)
                    })
                    .collect();
                Some(Event::Sampled {
                    deployment,
                    snapshots,
                })
            }
            Effect::Reply { ticket, result } => {
                if let Some(caller) = self.callers.remove(&ticket) {
                    answer(caller, result);
                }
                None
            }
            Effect::Unwatch(id) => {
                self.monitors.remove(&id);
                None
            }
            Effect::Watch {
                handle,
                healthy_now,
            } if !self.closing => {
                let (spec, events) = (self.core.cfg.health.clone(), self.health_tx.clone());
                let monitor = if healthy_now {
                    spawn_monitor_healthy(handle.id.clone(), handle.addr, spec, events)
                } else {
                    spawn_monitor(handle.id.clone(), handle.addr, spec, events)
                };
                // Replacing a handle ends the old monitor.
                self.monitors.insert(handle.id, monitor);
                None
            }
            _ if self.closing => None,
            other => {
                self.spawn(other);
                None
            }
        }
    }

    /// Background work: its task ends with the event that reports it.
    fn spawn(&mut self, effect: Effect) {
        match effect {
            Effect::Start(req) => {
                let runtime = self.runtime.clone();
                self.tasks.spawn(async move {
                    let id = req.id.clone();
                    let result = runtime.start(req).await.map_err(|e| e.to_string());
                    Event::Started { id, result }
                });
            }
            Effect::DrainStop {
                handle,
                drain,
                pre_stop,
            } => {
                let proxy = self.shared.routes.proxy().clone();
                let fleet = self.shared.fleet.clone();
                let runtime = self.runtime.clone();
                let app = self.core.name.clone();
                self.tasks.spawn(async move {
                    let id = handle.id.clone();
                    // The table without this instance is published already.
                    let generation = proxy.generation();
                    if let Some(req) = pre_stop {
                        hooks::pre_stop(runtime.as_ref(), &app, &id, *req).await;
                    }
                    let report = proxy.drain(&id, drain).await;
                    if !report.completed {
                        tracing::warn!(%app, instance = %id, left = report.in_flight_at_deadline, "drain deadline reached");
                    }
                    // The proxies on other nodes: each must serve that table and have
                    // nothing left on the instance (within what is left of the timeout).
                    let rest = drain.saturating_sub(report.waited);
                    let holding = fleet.drained(&id, generation, rest).await;
                    if !holding.is_empty() {
                        tracing::warn!(%app, instance = %id, proxies = ?holding, "drain deadline reached on other nodes' proxies");
                    }
                    if let Err(error) = runtime.stop(&handle).await {
                        tracing::warn!(%app, instance = %id, %error, "stopping instance failed");
                    }
                    Event::Stopped { id }
                });
            }
            Effect::RunHook {
                deployment,
                hook,
                req,
            } => {
                let runtime = self.runtime.clone();
                self.tasks.spawn(async move {
                    let result = hooks::run(runtime.as_ref(), *req).await;
                    Event::HookDone {
                        deployment,
                        hook,
                        result,
                    }
                });
            }
            Effect::CallGate {
                gate,
                step,
                url,
                payload,
                timeout,
            } => {
                self.tasks.spawn(async move {
                    let result = gates::call_webhook(&url, &payload, timeout).await;
                    Event::GateAnswered { gate, step, result }
                });
            }
            Effect::Notify {
                gate,
                url,
                payload,
                timeout,
            } => {
                self.tasks.spawn(async move {
                    let result = gates::call_webhook(&url, &payload, timeout).await;
                    Event::Notified {
                        gate,
                        deployment: payload.deployment.clone(),
                        result,
                    }
                });
            }
            Effect::QueryPrometheus {
                mut round,
                checks,
                vars,
                timeout,
            } => {
                self.tasks.spawn(async move {
                    let vars: Vec<(&str, &str)> =
                        vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                    for c in checks {
                        let q = gates::render_query(&c.query, &vars);
                        let outcome = match gates::prom_query(&c.url, &q, timeout).await {
                            Ok(v) => gates::judge_value(&c.name, v, c.min, c.max),
                            Err(e) => PromOutcome::NoData {
                                reason: format!("prometheus check {}: {e}", c.name),
                            },
                        };
                        round.prom.push(outcome);
                    }
                    Event::Analysis(round)
                });
            }
            // Carried out inline by `carry_out`.
            Effect::Persist { .. }
            | Effect::Publish(_)
            | Effect::Sample { .. }
            | Effect::Reply { .. }
            | Effect::Watch { .. }
            | Effect::Unwatch(_) => {}
        }
    }

    fn set_routes(&self, spec: baton_core::AppRouteSpec) {
        if let Err(error) = self.shared.routes.set_app(&self.core.name, spec) {
            tracing::error!(app = %self.core.name, %error, "route table rejected; previous routing kept");
        }
    }

    /// Stores the record with `history` and `events`, then tells event watchers.
    async fn persist(
        &mut self,
        record: AppRecord,
        history: Option<HistoryEntry>,
        events: Vec<Note>,
    ) -> Result<(), String> {
        let store = self.shared.store.clone();
        let app = self.core.name.clone();
        let evs = events.clone();
        if let Some(state) = &self.shared.state {
            // Swarm's copy first: a controller that lost the lease changes nothing.
            let record_json = serde_json::to_string(&record)
                .map_err(|e| format!("encoding the record of {app}: {e}"));
            let last_json = history
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(|e| format!("encoding a history entry of {app}: {e}"));
            let written = match (record_json, last_json) {
                (Ok(r), Ok(l)) => state
                    .put(&app, &r, l.as_deref())
                    .await
                    .map_err(|e| e.to_string()),
                (Err(e), _) | (_, Err(e)) => Err(e),
            };
            if let Err(error) = written {
                tracing::error!(app = %self.core.name, %error, "could not store state in the swarm; nothing that depends on it happens until a store succeeds");
                return Err(error);
            }
        }
        let result = tokio::task::spawn_blocking(move || {
            store.commit(&app, Some(&record), history.as_ref(), &evs)
        })
        .await;
        let failure = match result {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error.to_string()),
            Err(error) => Some(format!("the store task failed: {error}")),
        };
        if let Some(error) = failure {
            tracing::error!(app = %self.core.name, %error, "could not store state; nothing that depends on it happens until a store succeeds");
            return Err(error);
        }
        for e in events {
            tracing::info!(app = %e.app, kind = %e.kind, "{}", e.message);
            if let Some(command) = &self.core.cfg.hooks.on_event {
                let timeout = self.core.cfg.hooks.timeout.get();
                self.notifications
                    .spawn(hooks::on_event(command.clone(), e.clone(), timeout));
            }
            let _ = self.shared.events.send(e);
        }
        Ok(())
    }
}

fn answer(caller: Caller, result: Result<Answer, ControlError>) {
    match caller {
        Caller::Deploy(reply) => {
            let r = result.map(|a| match a {
                Answer::Deployment(id) => id,
                Answer::Retired(_) | Answer::Done => String::new(),
            });
            let _ = reply.send(r);
        }
        Caller::Retire(reply) => {
            let r = result.map(|a| match a {
                Answer::Retired(ids) => ids,
                Answer::Deployment(_) | Answer::Done => Vec::new(),
            });
            let _ = reply.send(r);
        }
        Caller::Op(reply) => {
            let _ = reply.send(result.map(|_| ()));
        }
    }
}

fn health_event(ev: HealthEvent) -> Event {
    match ev {
        HealthEvent::Healthy { id } => Event::Healthy { id },
        HealthEvent::Unhealthy { id, reason } => Event::Unhealthy { id, reason },
        HealthEvent::StartupTimeout { id, last_error } => Event::StartupTimeout { id, last_error },
    }
}

fn runtime_event(ev: RuntimeEvent) -> Event {
    let RuntimeEvent::Exited {
        id,
        status,
        last_logs,
    } = ev;
    let tail = last_logs
        .last()
        .map(|l| format!(": {l}"))
        .unwrap_or_default();
    let why = format!("{id} {status}{tail}");
    Event::Exited { id, why }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::Fleet;
    use crate::routes::RouteBook;
    use crate::sampler::Sampler;
    use baton_metrics::MetricsRegistry;
    use baton_proxy::{Proxy, ProxyConfig};

    #[test]
    fn an_actor_reports_the_recovered_deployment_before_its_boot_step() {
        // A restarted controller's status is read as soon as its actor exists; the boot
        // step (which may wait seconds on a runtime or on Swarm's store) comes later.
        let (cfg, record, healthy, last, id) = crate::reconcile::tests::stored_mid_canary();
        // The fallback a reader must not get: the last finished deployment, another one.
        assert_ne!(last.id, id);
        let dir = std::env::temp_dir().join(format!("baton-actor-view-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let store = baton_store::Store::open(&dir.join("baton.db")).expect("a new store");
        let proxy = Proxy::new(ProxyConfig::default(), Arc::new(MetricsRegistry::default()));
        let shared = Arc::new(Shared {
            routes: RouteBook::new(proxy, Vec::new()),
            store: Arc::new(store),
            events: tokio::sync::broadcast::channel(16).0,
            fleet: Arc::new(Fleet::new(1)),
            state: None,
        });
        let runtime: Arc<dyn Runtime> = Arc::new(baton_runtime::StaticRuntime::new());
        let (actor, view) = AppActor::new(cfg, record, runtime, shared, healthy, Some(last));
        let st = view.borrow().status(|_| 0, &Sampler::default());
        let d = st.deployment.expect("a deployment is reported");
        assert_eq!((d.id.as_str(), d.finished_at), (id.as_str(), None));
        drop(actor);
        std::fs::remove_dir_all(&dir).expect("the temporary directory removed");
    }
}
