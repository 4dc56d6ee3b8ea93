//! The app reconciler: every decision the controller makes about one app, as a pure
//! state machine. `AppCore::handle(Event, now) -> Vec<Effect>` takes what happened
//! (operator requests, health, exits, results of background work, the store's answer,
//! time) and says what to do; it does no I/O, reads no clock and spawns nothing. The
//! actor (`crate::actor`) is the executor: it carries out the effects and feeds their
//! results back as events.
//!
//! **Invariant — stored before effect.** Whatever depends on a new record (a rollout
//! step's routes, stops, starts, gates, notifications; a new deployment; a switch back
//! to the warm version) is held until the executor has stored that record and answered
//! `Event::Stored(Ok)`. A `Persist` is always the last effect of a batch, and the executor
//! answers it before it hands over any other event. When the store fails, the held
//! effects wait (the route table keeps what was last published, `status` shows the
//! error) and the next tick stores again; a new deployment or a switch that cannot be
//! stored is undone and refused.
//!
//! `operator.rs`: deploy, promote, abort, pause, resume, rollback; `instances.rs`: health,
//! exits, start/stop results, the boot; `step.rs`: one rollout step and its commands;
//! `routing.rs`: routes, self-healing (with its back-off), events; `warm.rs`: blue/green's
//! warm window; `analysis.rs`: canary analysis rounds, `failure_limit`,
//! `progress_deadline`, gates.

mod analysis;
mod hooks;
mod instances;
mod operator;
mod reconfigure;
mod routing;
mod step;
mod warm;

#[cfg(test)]
pub(crate) mod tests;

pub(crate) use analysis::{AnalysisRun, Round};

use crate::gates::GatePayload;
use crate::model::{AppRecord, Event as Note, HistoryEntry};
use crate::status::AppView;
use crate::ControlError;
use baton_analysis::PromCheck;
use baton_config::AppConfig;
use baton_config::HookKind;
use baton_core::{AppRouteSpec, Millis};
use baton_metrics::MetricsSnapshot;
use baton_rollout::{Gate, Outcome, RoutePlan};
use baton_runtime::{InstanceHandle, StartRequest, TaskOutput, TaskRequest};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

/// A deploy as the operator asked for it.
#[derive(Debug, Clone)]
pub struct DeployRequest {
    pub version: String,
    pub strategy: Option<baton_config::StrategyKind>,
    pub targets: Vec<std::net::SocketAddr>,
    /// The release step cannot be undone (`baton deploy --irreversible`).
    pub irreversible: bool,
}

/// An operator action on the running deployment (or the warm window).
#[derive(Debug, Clone)]
pub enum Op {
    Promote {
        to: Option<String>,
    },
    /// `force`: even after an irreversible release step.
    Abort {
        force: bool,
    },
    Pause,
    Resume,
    Rollback {
        force: bool,
    },
}

/// Names an operator request so its answer (`Effect::Reply`) finds the caller.
pub type Ticket = u64;

/// What happened, as the reconciler hears it.
#[derive(Debug)]
pub enum Event {
    /// The actor starts (after recovery): `lost` are instances that vanished while baton
    /// was down.
    Boot {
        lost: Vec<(String, String)>,
    },
    Deploy {
        req: DeployRequest,
        ticket: Ticket,
    },
    Op {
        op: Op,
        ticket: Ticket,
    },
    /// `baton reload`: the app's new settings.
    Reconfigure {
        cfg: Box<AppConfig>,
        ticket: Ticket,
    },
    /// `baton reload` removed the app: stop everything, store it as retired.
    Retire {
        ticket: Ticket,
    },
    Healthy {
        id: String,
    },
    Unhealthy {
        id: String,
        reason: String,
    },
    StartupTimeout {
        id: String,
        last_error: String,
    },
    Exited {
        id: String,
        why: String,
    },
    Started {
        id: String,
        result: Result<InstanceHandle, String>,
    },
    Stopped {
        id: String,
    },
    /// An external gate answered (`Err`: why it refused).
    GateAnswered {
        gate: Gate,
        step: Option<usize>,
        result: Result<(), String>,
    },
    /// The proxy's counters asked for by `Effect::Sample`.
    Sampled {
        deployment: String,
        snapshots: BTreeMap<String, MetricsSnapshot>,
    },
    /// An analysis round whose Prometheus checks are done.
    Analysis(Box<Round>),
    /// A `post_promote` / `rollback` notification answered.
    Notified {
        gate: Gate,
        deployment: String,
        result: Result<(), String>,
    },
    /// A hook asked for by `Effect::RunHook` ended (`Err`: it could not be run).
    HookDone {
        deployment: String,
        hook: HookKind,
        result: Result<TaskOutput, String>,
    },
    /// The answer to the last `Effect::Persist`.
    Stored(Result<(), String>),
    Tick,
}

/// What the executor is asked to do.
#[derive(Debug)]
pub enum Effect {
    /// Store the record with a history entry and events (events go to watchers once
    /// stored). Answer with `Event::Stored` before any other event.
    Persist {
        record: Box<AppRecord>,
        history: Option<HistoryEntry>,
        events: Vec<Note>,
    },
    /// Hand the proxy this app's routing.
    Publish(AppRouteSpec),
    /// Start an instance; answer `Event::Started`.
    Start(StartRequest),
    /// The instance is out of routing: drain it, then stop it; answer `Event::Stopped`.
    DrainStop {
        handle: InstanceHandle,
        drain: Duration,
        /// The `pre_stop` hook, run (and logged if it fails) before the drain.
        pre_stop: Option<Box<TaskRequest>>,
    },
    /// Run a hook through the runtime; answer `Event::HookDone`.
    RunHook {
        deployment: String,
        hook: HookKind,
        req: Box<TaskRequest>,
    },
    /// Probe this instance (health monitor, replacing one it may have); report
    /// `Healthy` / `Unhealthy` / `StartupTimeout`. `healthy_now`: it is known healthy
    /// (new checks after a reload), so no `Healthy` first and no startup deadline.
    Watch {
        handle: InstanceHandle,
        healthy_now: bool,
    },
    /// Stop probing it.
    Unwatch(String),
    /// Call a webhook gate; answer `Event::GateAnswered`.
    CallGate {
        gate: Gate,
        step: Option<usize>,
        url: String,
        payload: Box<GatePayload>,
        timeout: Duration,
    },
    /// Tell a webhook how a deployment ended; answer `Event::Notified`.
    Notify {
        gate: Gate,
        url: String,
        payload: Box<GatePayload>,
        timeout: Duration,
    },
    /// Read the proxy's per-version counters of these versions now; answer
    /// `Event::Sampled` at once.
    Sample {
        deployment: String,
        versions: Vec<String>,
    },
    /// Run the round's Prometheus checks; answer `Event::Analysis`.
    QueryPrometheus {
        round: Box<Round>,
        checks: Vec<PromCheck>,
        vars: Vec<(String, String)>,
        timeout: Duration,
    },
    /// The answer to an operator request.
    Reply {
        ticket: Ticket,
        result: Result<Answer, ControlError>,
    },
}

/// A successful operator request.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The deployment (or switch back) now in effect.
    Deployment(String),
    /// A retired app: the instances it stopped.
    Retired(Vec<String>),
    Done,
}

/// Something that takes effect only once the record saying so is stored.
#[derive(Debug)]
enum Held {
    /// Publish `record.route` (computed when it goes out, with the health of then).
    Route,
    Stop(String),
    Start {
        id: String,
        version: String,
    },
    Gate {
        gate: Gate,
        step: Option<usize>,
        weight: Option<u32>,
    },
    Notify {
        payload: Box<GatePayload>,
        outcome: Outcome,
    },
    Reply {
        ticket: Ticket,
        answer: Answer,
    },
    /// A new deployment is stored: begin it.
    Begin {
        ticket: Ticket,
        id: String,
    },
    /// A finished deployment or a switch back is stored: it is the last finished one.
    Finished(Box<HistoryEntry>),
    /// Run a hook (`rerun`: it had started before a restart and not finished).
    Hook {
        hook: HookKind,
        rerun: bool,
    },
    /// The app is being retired: answer once its last instance is gone.
    Retiring {
        ticket: Ticket,
        ids: Vec<String>,
    },
}

/// What the next store carries and what waits for it.
#[derive(Debug, Default)]
struct Batch {
    /// The record changed and must be stored.
    dirty: bool,
    held: Vec<Held>,
    history: Option<HistoryEntry>,
    events: Vec<Note>,
    /// A change to undo if its store fails (a new deployment, a switch back).
    undo: Option<Undo>,
}

/// How to take back a change whose store failed: the record before it, how much of the
/// batch was there before it, and what to answer.
#[derive(Debug)]
struct Undo {
    before: Box<AppRecord>,
    held: usize,
    events: usize,
    history: Option<HistoryEntry>,
    refuse: Option<(Ticket, String)>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        !self.dirty && self.held.is_empty() && self.history.is_none() && self.events.is_empty()
    }
}

/// The reconciler of one app: its record and everything it keeps track of.
pub struct AppCore {
    pub(crate) name: String,
    pub(crate) cfg: AppConfig,
    /// The runtime takes its instances from the operator (`--target`).
    operator_targets: bool,
    runtime_kind: String,
    pub(crate) record: AppRecord,
    pub(crate) healthy: BTreeSet<String>,
    /// Instances being drained/stopped (no second stop, no failure for them).
    stopping: BTreeSet<String>,
    /// Stop requested while the instance was still starting.
    stop_after_start: BTreeSet<String>,
    /// Instances whose Ready was already fed to the current rollout.
    reported_ready: BTreeSet<String>,
    /// Replacement instances (outside deployments) whose start has not reported yet.
    healing: BTreeSet<String>,
    /// No replacement is attempted before this (back-off after a failed replacement).
    heal_after: Millis,
    /// Instances with a health monitor.
    watched: BTreeSet<String>,
    /// Static runtime: the address each start of the current deployment was given, so
    /// two starts waiting at once never get the same one (read only while the id is
    /// still among the deployment's `pending_starts`).
    start_targets: BTreeMap<String, std::net::SocketAddr>,
    pub(crate) last_finished: Option<HistoryEntry>,
    pub(crate) analysis: AnalysisRun,
    /// Waiting for the next store.
    batch: Batch,
    /// Given to the executor in a `Persist`, waiting for `Stored`.
    in_flight: Option<Batch>,
    /// The last store failure, until a store succeeds.
    store_error: Option<String>,
    /// The routing last handed to the proxy (ahead of it, `record.route` may hold a step
    /// whose record is not stored yet).
    published: RoutePlan,
    /// A retirement waiting for the last instance to stop: (ticket, instances).
    retiring: Option<(Ticket, Vec<String>)>,
    /// The operator insisted (`--force`): an irreversible deployment may go back.
    forcing: bool,
    /// Events this one led to (a gate with nothing to ask, a stop of an instance that
    /// never started), handled before `handle` returns.
    follow_ups: VecDeque<Event>,
    now: Millis,
}

/// How long self-healing waits after a replacement failed to start.
pub const HEAL_BACKOFF: Duration = Duration::from_secs(5);

impl AppCore {
    pub fn new(
        cfg: AppConfig,
        record: AppRecord,
        healthy: BTreeSet<String>,
        last_finished: Option<HistoryEntry>,
        operator_targets: bool,
        runtime_kind: &str,
    ) -> Self {
        let published = record.route.clone();
        AppCore {
            name: record.name.clone(),
            cfg,
            operator_targets,
            runtime_kind: runtime_kind.to_string(),
            record,
            healthy,
            stopping: BTreeSet::new(),
            stop_after_start: BTreeSet::new(),
            // Empty even after a restart: the monitors' first Healthy re-reports every
            // adopted instance, and the rollout treats a repeated Ready as a no-op.
            reported_ready: BTreeSet::new(),
            healing: BTreeSet::new(),
            heal_after: Millis(0),
            watched: BTreeSet::new(),
            start_targets: BTreeMap::new(),
            last_finished,
            analysis: AnalysisRun::default(),
            batch: Batch::default(),
            in_flight: None,
            store_error: None,
            published,
            retiring: None,
            forcing: false,
            follow_ups: VecDeque::new(),
            now: Millis(0),
        }
    }

    /// One event in, the effects out. `now` is the only clock the reconciler knows.
    pub fn handle(&mut self, event: Event, now: Millis) -> Vec<Effect> {
        self.now = now;
        let mut out = Vec::new();
        let retry = !matches!(event, Event::Stored(Err(_)));
        self.dispatch(event, &mut out);
        while let Some(ev) = self.follow_ups.pop_front() {
            self.dispatch(ev, &mut out);
        }
        if self.retiring.is_some() {
            self.check_retired();
        }
        if retry {
            self.store_if_needed(&mut out);
        }
        out
    }

    /// The routing the proxy should have now: the published plan restricted to the
    /// instances that are up, healthy and not stopping.
    pub fn route_spec_now(&self) -> AppRouteSpec {
        self.route_spec(&self.published)
    }

    /// What readers (status, history) see.
    pub fn view(&self) -> AppView {
        AppView {
            record: self.record.clone(),
            healthy: self.healthy.clone(),
            rollout: self.record.deployment.as_ref().map(|d| d.rollout.status()),
            last_finished: self.last_finished.clone(),
            experiment: self.analysis.experiment.clone(),
            store_error: self.store_error.clone(),
            published: self.published.clone(),
        }
    }

    /// Whether a store is awaited or effects wait for one.
    #[cfg(test)]
    pub fn has_pending(&self) -> bool {
        self.in_flight.is_some() || !self.batch.is_empty()
    }

    #[cfg(test)]
    pub fn store_error(&self) -> Option<&str> {
        self.store_error.as_deref()
    }

    #[cfg(test)]
    pub fn published(&self) -> &RoutePlan {
        &self.published
    }

    /// Instances being drained and stopped.
    #[cfg(test)]
    pub fn stopping(&self) -> &BTreeSet<String> {
        &self.stopping
    }

    fn dispatch(&mut self, event: Event, out: &mut Vec<Effect>) {
        match event {
            Event::Boot { lost } => self.boot(lost, out),
            Event::Deploy { req, ticket } => self.deploy(req, ticket, out),
            Event::Op { op, ticket } => self.op(op, ticket, out),
            Event::Reconfigure { cfg, ticket } => self.reconfigure(*cfg, ticket, out),
            Event::Retire { ticket } => self.retire(ticket, out),
            Event::Healthy { id } => self.on_healthy(id, out),
            Event::Unhealthy { id, reason } => self.on_unhealthy(id, reason, out),
            Event::StartupTimeout { id, last_error } => {
                self.on_startup_timeout(id, last_error, out)
            }
            Event::Exited { id, why } => {
                if !self.stopping.contains(&id) {
                    self.instance_gone(&id, why, out);
                }
            }
            Event::Started { id, result } => self.on_started(id, result, out),
            Event::Stopped { id } => self.on_stopped(id),
            Event::GateAnswered { gate, step, result } => {
                let (ok, reason) = match result {
                    Ok(()) => (true, None),
                    Err(e) => (false, Some(e)),
                };
                self.feed(
                    baton_rollout::Input::GateResult {
                        gate,
                        step,
                        ok,
                        reason,
                    },
                    Vec::new(),
                );
            }
            Event::Sampled {
                deployment,
                snapshots,
            } => self.on_sampled(deployment, snapshots, out),
            Event::Analysis(round) => self.conclude(*round),
            Event::Notified {
                gate,
                deployment,
                result,
            } => self.on_notified(gate, deployment, result),
            Event::HookDone {
                deployment,
                hook,
                result,
            } => self.on_hook_done(deployment, hook, result, out),
            Event::Stored(result) => self.on_stored(result, out),
            Event::Tick => self.tick(out),
        }
    }

    fn tick(&mut self, out: &mut Vec<Effect>) {
        if self.release_pending() {
            return;
        }
        if self.record.deployment.is_some() {
            self.feed(baton_rollout::Input::Tick, Vec::new());
            self.analyze(out);
        } else {
            self.expire_warm();
            self.heal();
        }
    }

    // === stored before effect ===

    /// The record changed; `events` (and `history`) go with its next store.
    fn commit(&mut self, history: Option<HistoryEntry>, events: Vec<Note>) {
        self.batch.dirty = true;
        if history.is_some() {
            self.batch.history = history;
        }
        self.batch.events.extend(events);
    }

    /// `what` takes effect once the record as it is now is stored.
    fn hold(&mut self, what: Held) {
        self.batch.dirty = true;
        self.batch.held.push(what);
    }

    /// Marks the start of a change that is taken back if its store fails: the record
    /// returns to `before` and `refuse` (ticket, why) is answered with the store error.
    fn begin_undoable(&mut self, before: AppRecord, refuse: Option<(Ticket, String)>) {
        if self.batch.undo.is_some() {
            return;
        }
        self.batch.undo = Some(Undo {
            before: Box::new(before),
            held: self.batch.held.len(),
            events: self.batch.events.len(),
            history: self.batch.history.clone(),
            refuse,
        });
    }

    fn store_if_needed(&mut self, out: &mut Vec<Effect>) {
        if self.in_flight.is_some() || self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        out.push(Effect::Persist {
            record: Box::new(self.record.clone()),
            history: batch.history.clone(),
            events: batch.events.clone(),
        });
        self.in_flight = Some(batch);
    }

    fn on_stored(&mut self, result: Result<(), String>, out: &mut Vec<Effect>) {
        let Some(mut batch) = self.in_flight.take() else {
            return;
        };
        match result {
            Ok(()) => {
                self.store_error = None;
                for held in std::mem::take(&mut batch.held) {
                    self.release(held, out);
                }
            }
            Err(error) => {
                self.store_error = Some(error.clone());
                if let Some(undo) = batch.undo.take() {
                    self.record = *undo.before;
                    batch.held.truncate(undo.held);
                    batch.events.truncate(undo.events);
                    batch.history = undo.history;
                    if let Some((ticket, why)) = undo.refuse {
                        out.push(Effect::Reply {
                            ticket,
                            result: Err(ControlError::StoreFailed(format!(
                                "{error}; {why} (fix the store, e.g. free disk space, and try again)"
                            ))),
                        });
                    }
                }
                // What was not taken back waits for the next store, before anything
                // that happened since.
                let later = std::mem::take(&mut self.batch);
                self.batch = batch;
                self.batch.dirty = true;
                self.batch.held.extend(later.held);
                if later.history.is_some() {
                    self.batch.history = later.history;
                }
                self.batch.events.extend(later.events);
            }
        }
    }

    /// Carries out what a successful store released.
    fn release(&mut self, held: Held, out: &mut Vec<Effect>) {
        match held {
            Held::Route => {
                self.published = self.record.route.clone();
                out.push(Effect::Publish(self.route_spec_now()));
            }
            Held::Stop(id) => self.stop_instance(&id, out),
            Held::Start { id, version } => self.start_instance(id, version, out),
            Held::Gate { gate, step, weight } => self.ask_gate(gate, step, weight, out),
            Held::Notify { payload, outcome } => self.notify_finished(*payload, outcome, out),
            Held::Reply { ticket, answer } => out.push(Effect::Reply {
                ticket,
                result: Ok(answer),
            }),
            Held::Begin { ticket, id } => self.begin(ticket, id, out),
            Held::Finished(entry) => self.last_finished = Some(*entry),
            Held::Hook { hook, rerun } => self.run_hook(hook, rerun, out),
            Held::Retiring { ticket, ids } => {
                self.retiring = Some((ticket, ids));
                self.check_retired();
            }
        }
    }
}
