//! One step of the rollout state machine: its commands become held effects (they go out
//! after the record saying so is stored), and carrying out starts and stops.

use super::{AppCore, Effect, Event, Held};
use crate::model::{Event as Note, HistoryEntry, WarmSet};
use baton_rollout::{Command, Finish, Input, Outcome};
use baton_runtime::StartRequest;
use std::collections::HashSet;
use std::time::Duration;

impl AppCore {
    /// One step of the state machine: the record changes now, what it says takes effect
    /// once it is stored.
    /// While the release hook runs, the rollout hears nothing (it has not begun); an
    /// input an irreversible deployment must not follow back is not applied
    /// (`hooks.rs`: `admit`).
    pub(super) fn feed(&mut self, input: Input, notes: Vec<Note>) {
        let now = self.now;
        if self.release_pending() || !self.admit(&input) {
            if !notes.is_empty() {
                self.commit(None, notes);
            }
            return;
        }
        let Some(dep) = self.record.deployment.as_mut() else {
            if !notes.is_empty() {
                self.commit(None, notes);
            }
            return;
        };
        let commands = dep.rollout.handle(input, now);
        self.apply_commands(commands, notes);
    }

    /// The rollout's commands: the record changes now, the rest is held until stored.
    pub(super) fn apply_commands(&mut self, commands: Vec<Command>, mut notes: Vec<Note>) {
        if commands.is_empty() && notes.is_empty() {
            return;
        }
        let mut held = Vec::new();
        let mut history = None;
        for cmd in commands {
            match cmd {
                Command::Start { instance, version } => {
                    if let Some(d) = self.record.deployment.as_mut() {
                        d.pending_starts.push(instance.clone());
                    }
                    held.push(Held::Start {
                        id: instance,
                        version,
                    });
                }
                Command::Stop { instance } => {
                    if !self.record.stopping.contains(&instance) {
                        self.record.stopping.push(instance.clone());
                    }
                    held.push(Held::Stop(instance));
                }
                Command::Route(plan) => {
                    self.record.route = plan;
                    held.push(Held::Route);
                }
                Command::Note { message } => notes.push(self.note("note", message)),
                Command::Gate { gate, step, weight } => {
                    held.push(Held::Gate { gate, step, weight })
                }
                Command::Finish(f) => {
                    let succeeded = f.outcome == Outcome::Succeeded;
                    let (entry, note, strays, notify) = self.finish(f);
                    notes.push(note);
                    held.push(Held::Route);
                    held.extend(strays.into_iter().map(Held::Stop));
                    if let Some(n) = notify {
                        held.push(n);
                    }
                    held.push(Held::Finished(Box::new(entry.clone())));
                    if succeeded && self.cfg.hooks.post_switch.is_some() {
                        held.push(Held::Hook {
                            hook: baton_config::HookKind::PostSwitch,
                            rerun: false,
                        });
                    }
                    history = Some(entry);
                }
            }
        }
        self.commit(history, notes);
        for h in held {
            self.hold(h);
        }
    }

    /// The deployment is over: its verdict becomes the app's stable state. Returns the
    /// history entry, the event, the instances left behind to stop, and the webhook to
    /// tell.
    fn finish(&mut self, f: Finish) -> (HistoryEntry, Note, Vec<String>, Option<Held>) {
        let now = self.now;
        let notify = self
            .finish_payload(f.reason.clone(), f.outcome)
            .map(|payload| Held::Notify {
                payload: Box::new(payload),
                outcome: f.outcome,
            });
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
                irreversible: dep.as_ref().is_some_and(|d| d.irreversible),
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
            hooks: dep.iter().filter_map(|d| d.release.clone()).collect(),
            irreversible: dep.as_ref().is_some_and(|d| d.irreversible),
        };
        let outcome = format!("{:?}", f.outcome).to_lowercase();
        let reason = f.reason.map(|r| format!(": {r}")).unwrap_or_default();
        let note = self.note("finished", format!("{id} ({to}) {outcome}{reason}"));
        self.reported_ready.clear();
        (entry, note, strays, notify)
    }

    // === carrying out commands ===

    pub(super) fn start_instance(&mut self, id: String, version: String, out: &mut Vec<Effect>) {
        let target = self.target_for(&id, &version);
        out.push(Effect::Start(StartRequest {
            id,
            app: self.name.clone(),
            version,
            target,
        }));
    }

    /// Takes the instance out of routing at once, then drains and stops it.
    pub(super) fn stop_instance(&mut self, id: &str, out: &mut Vec<Effect>) {
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
                self.follow_ups
                    .push_back(Event::Stopped { id: id.to_string() });
            }
            return;
        };
        if !self.stopping.insert(id.to_string()) {
            return;
        }
        if !self.record.stopping.iter().any(|s| s == id) {
            self.record.stopping.push(id.to_string());
        }
        if self.watched.remove(id) {
            out.push(Effect::Unwatch(id.to_string()));
        }
        self.healthy.remove(id);
        self.publish_now(out);
        let pre_stop = self.pre_stop_request(&handle).map(Box::new);
        out.push(Effect::DrainStop {
            handle,
            drain: self.cfg.drain_timeout.get(),
            pre_stop,
        });
    }

    pub(super) fn watch(&mut self, h: &baton_runtime::InstanceHandle, out: &mut Vec<Effect>) {
        self.watched.insert(h.id.clone());
        out.push(Effect::Watch {
            handle: h.clone(),
            healthy_now: false,
        });
    }

    /// For the static runtime: which address the next instance of `version` is — the
    /// first of the deployment's targets that no instance of this deployment holds or
    /// is being started on. Another version's instance on the same address does not
    /// count: a static instance is only a name for an address, each has its own
    /// backend in the proxy (its own in-flight count and drain), and the old one is on
    /// its way out (e.g. `v1` at A, `v2` at B, then `v3` back at A while `v1` waits out
    /// its scale-down delay).
    fn target_for(&mut self, id: &str, version: &str) -> Option<std::net::SocketAddr> {
        let dep = self.record.deployment.as_ref()?;
        if version != dep.version {
            return None;
        }
        self.start_targets
            .retain(|id, _| dep.pending_starts.iter().any(|p| p == id));
        let taken: HashSet<std::net::SocketAddr> = self
            .record
            .instances
            .iter()
            .filter(|h| h.version == version && !self.stopping.contains(&h.id))
            .map(|h| h.addr)
            .chain(self.start_targets.values().copied())
            .collect();
        let target = dep.targets.iter().copied().find(|t| !taken.contains(t))?;
        self.start_targets.insert(id.to_string(), target);
        Some(target)
    }
}
