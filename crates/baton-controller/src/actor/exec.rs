//! One step of the rollout state machine and carrying out its commands: store first,
//! then publish routes, then stop (drain first) and start instances.

use super::{AppActor, Done};
use crate::gates::GatePayload;
use crate::model::{Event, HistoryEntry, WarmSet};
use baton_core::Millis;
use baton_health::spawn_monitor;
use baton_rollout::Gate;
use baton_rollout::{Command, Finish, Input, Outcome};
use baton_runtime::{InstanceHandle, StartRequest};
use std::collections::HashSet;
use std::time::Duration;

impl AppActor {
    // === the rollout ===

    pub(super) async fn feed(&mut self, input: Input) {
        self.feed_with(input, Vec::new()).await
    }

    /// One step of the state machine: store the outcome, then carry out its commands.
    /// Nothing takes effect before the record saying so is stored: when the store fails,
    /// the effects wait in `pending` and go out, in order, after the next successful
    /// store (retried every tick).
    pub(super) async fn feed_with(&mut self, input: Input, mut events: Vec<Event>) {
        let Some(dep) = self.record.deployment.as_mut() else {
            return;
        };
        let commands = dep.rollout.handle(input, Millis::now());
        if commands.is_empty() && events.is_empty() {
            return;
        }
        let mut fx = Effects::default();
        for cmd in commands {
            match cmd {
                Command::Start { instance, version } => {
                    if let Some(d) = self.record.deployment.as_mut() {
                        d.pending_starts.push(instance.clone());
                    }
                    fx.starts.push((instance, version));
                }
                Command::Stop { instance } => {
                    if !self.record.stopping.contains(&instance) {
                        self.record.stopping.push(instance.clone());
                    }
                    fx.stops.push(instance)
                }
                Command::Route(plan) => {
                    self.record.route = plan;
                    fx.route_changed = true;
                }
                Command::Note { message } => events.push(self.event("note", message)),
                Command::Gate { gate, step, weight } => fx.gates.push((gate, step, weight)),
                Command::Finish(f) => {
                    let (entry, ev, strays) = self.finish(f);
                    events.push(ev);
                    fx.history = Some(entry);
                    fx.stops.extend(strays);
                    fx.route_changed = true;
                }
            }
        }
        fx.events = events;
        self.pending.merge(fx);
        self.flush().await;
    }

    /// Stores the record with the pending history and events, then carries out the
    /// pending effects: publish, stop (drain first), start, ask gates, notify.
    pub(super) async fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let history = self.pending.history.clone();
        let events = self.pending.events.clone();
        if self.persist(history, events).await.is_err() {
            return;
        }
        let fx = std::mem::take(&mut self.pending);
        if fx.route_changed {
            self.publish();
        }
        for id in fx.stops {
            self.stop_instance(&id);
        }
        for (id, version) in fx.starts {
            self.start_instance(id, version);
        }
        for (gate, step, weight) in fx.gates {
            self.ask_gate(gate, step, weight);
        }
        if let Some((payload, outcome)) = fx.notify {
            self.notify_finished(payload, outcome);
        }
    }

    /// The deployment is over: its verdict becomes the app's stable state. Returns the
    /// history entry, the event, and the instances left behind to stop (after storing).
    pub(super) fn finish(&mut self, f: Finish) -> (HistoryEntry, Event, Vec<String>) {
        let now = Millis::now();
        let notify = self.finish_payload(f.reason.clone(), f.outcome);
        let dep = self.record.deployment.take();
        let from = dep
            .as_ref()
            .and_then(|d| d.rollout.spec().from_version.clone());
        if f.outcome == Outcome::Succeeded && from != f.stable_version {
            self.record.previous_version = from.clone();
        }
        self.record.stable_version = f.stable_version.clone();
        let warm_until = f
            .warm
            .as_ref()
            .map(|w| now.plus(Duration::from_millis(w.keep_for_ms)));
        self.record.warm = match (&f.warm, warm_until) {
            (Some(w), Some(until)) => Some(WarmSet {
                version: w.version.clone(),
                instances: w.instances.clone(),
                until,
                deployment: dep.as_ref().map(|d| d.id.clone()).unwrap_or_default(),
            }),
            _ => None,
        };
        // Anything not kept by the final state (as stable or warm) and not already
        // stopping is cleaned up.
        let warm: Vec<String> = f.warm.iter().flat_map(|w| w.instances.clone()).collect();
        let keep: HashSet<&String> = f.instances.iter().chain(warm.iter()).collect();
        let strays: Vec<String> = self
            .record
            .instances
            .iter()
            .filter(|h| !keep.contains(&h.id) && !self.stopping.contains(&h.id))
            .map(|h| h.id.clone())
            .collect();
        self.route_steady();
        for id in &strays {
            tracing::warn!(app = %self.name, instance = %id, "stopping an instance the finished deployment left behind");
            if !self.record.stopping.contains(id) {
                self.record.stopping.push(id.clone());
            }
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
            warm_until,
            analysis: self.analysis.last_summary.take(),
        };
        self.pending.notify = notify.map(|p| (p, f.outcome));
        let outcome = format!("{:?}", f.outcome).to_lowercase();
        let reason = f.reason.map(|r| format!(": {r}")).unwrap_or_default();
        let ev = self.event("finished", format!("{id} ({to}) {outcome}{reason}"));
        self.last_finished = Some(entry.clone());
        self.reported_ready.clear();
        (entry, ev, strays)
    }

    // === carrying out commands ===

    pub(super) fn start_instance(&mut self, id: String, version: String) {
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
    pub(super) fn stop_instance(&mut self, id: &str) {
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

    pub(super) fn watch_health(&mut self, h: &InstanceHandle) {
        let monitor = spawn_monitor(
            h.id.clone(),
            h.addr,
            self.cfg.health.clone(),
            self.health_tx.clone(),
        );
        self.monitors.insert(h.id.clone(), monitor);
    }

    /// For the static runtime: which address the next instance of `version` is.
    pub(super) fn target_for(&self, version: &str) -> Option<std::net::SocketAddr> {
        let dep = self.record.deployment.as_ref()?;
        let running: HashSet<std::net::SocketAddr> =
            self.record.instances.iter().map(|h| h.addr).collect();
        if version == dep.version {
            dep.targets.iter().copied().find(|t| !running.contains(t))
        } else {
            None
        }
    }
}

/// What rollout steps asked for that has not taken effect yet, because the record that
/// says so is not stored yet.
#[derive(Default)]
pub(super) struct Effects {
    route_changed: bool,
    stops: Vec<String>,
    starts: Vec<(String, String)>,
    gates: Vec<(Gate, Option<usize>, Option<u32>)>,
    history: Option<HistoryEntry>,
    events: Vec<Event>,
    notify: Option<(GatePayload, Outcome)>,
}

impl Effects {
    fn is_empty(&self) -> bool {
        !self.route_changed
            && self.stops.is_empty()
            && self.starts.is_empty()
            && self.gates.is_empty()
            && self.history.is_none()
            && self.events.is_empty()
            && self.notify.is_none()
    }

    /// Appends a later step's effects (they go out after these).
    fn merge(&mut self, later: Effects) {
        self.route_changed |= later.route_changed;
        self.stops.extend(later.stops);
        self.starts.extend(later.starts);
        self.gates.extend(later.gates);
        if later.history.is_some() {
            self.history = later.history;
        }
        self.events.extend(later.events);
        if later.notify.is_some() {
            self.notify = later.notify;
        }
    }
}
