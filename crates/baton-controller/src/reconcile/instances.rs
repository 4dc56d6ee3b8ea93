//! What happened to instances: the boot after recovery, health changes, exits, and the
//! results of starts and stops.

use super::{AppCore, Effect, HEAL_BACKOFF};
use crate::model::Event as Note;
use baton_rollout::Input;
use baton_runtime::InstanceHandle;

impl AppCore {
    /// The first event: watch the recovered instances, publish, report the lost ones,
    /// finish stops a crash interrupted, resume the deployment (asking a pending gate
    /// again, its answer was lost) or heal.
    pub(super) fn boot(&mut self, lost: Vec<(String, String)>, out: &mut Vec<Effect>) {
        // Stops interrupted by a crash: finish those still running; the rollout hears
        // about the ones already gone through `lost` (a failure while stopping = stopped).
        let mut resume_stops = std::mem::take(&mut self.record.stopping);
        resume_stops.retain(|id| self.record.instance(id).is_some());
        for h in self.record.instances.clone() {
            if !resume_stops.contains(&h.id) {
                self.watch(&h, out);
            }
        }
        self.published = self.record.route.clone();
        self.publish_now(out);
        for (id, reason) in lost {
            self.instance_gone(&id, reason, out);
        }
        for id in resume_stops {
            self.stop_instance(&id, out);
        }
        if self
            .record
            .deployment
            .as_ref()
            .is_some_and(|d| d.release.is_some() && d.release_pending())
        {
            // Stored as started (or not yet begun) and not as finished: run it (again).
            self.start_release();
        } else if self.record.deployment.is_some() {
            self.feed(Input::Tick, Vec::new());
            let pending = self
                .record
                .deployment
                .as_ref()
                .and_then(|d| d.rollout.pending_gate());
            if let Some((gate, step, weight)) = pending {
                self.ask_gate(gate, step, weight, out);
            }
        } else {
            self.heal();
        }
    }

    pub(super) fn on_healthy(&mut self, id: String, out: &mut Vec<Effect>) {
        if self.record.instance(&id).is_none() || self.stopping.contains(&id) {
            return;
        }
        self.healthy.insert(id.clone());
        self.publish_now(out);
        if self.record.deployment.is_some() {
            if self.reported_ready.insert(id.clone()) {
                self.feed(Input::Ready { instance: id }, Vec::new());
            }
        } else {
            self.route_steady();
        }
    }

    pub(super) fn on_unhealthy(&mut self, id: String, reason: String, out: &mut Vec<Effect>) {
        if self.stopping.contains(&id) {
            return;
        }
        self.healthy.remove(&id);
        self.publish_now(out);
        let version = self.record.instance(&id).map(|h| h.version.clone());
        let reason = format!("{id} turned unhealthy: {reason}");
        let ev = self.note("unhealthy", reason.clone());
        self.report_failure(id, reason.clone(), ev);
        self.fail_back_to_warm(version.as_deref(), &reason);
    }

    pub(super) fn on_startup_timeout(
        &mut self,
        id: String,
        last_error: String,
        out: &mut Vec<Effect>,
    ) {
        if self.stopping.contains(&id) {
            return;
        }
        let reason = format!(
            "{id} was not healthy within startup_timeout ({}): {last_error}",
            self.cfg.health.startup_timeout
        );
        if self.record.deployment.is_some() {
            let ev = self.note("failed", reason.clone());
            self.report_failure(id, reason, ev);
        } else {
            let ev = self.note("replacing", reason);
            self.commit(None, vec![ev]);
            self.stop_instance(&id, out);
        }
    }

    /// An instance vanished on its own (exit, or lost across a restart).
    pub(super) fn instance_gone(&mut self, id: &str, reason: String, out: &mut Vec<Effect>) {
        let version = self.record.instance(id).map(|h| h.version.clone());
        if self.watched.remove(id) {
            out.push(Effect::Unwatch(id.to_string()));
        }
        self.healthy.remove(id);
        self.record.instances.retain(|h| h.id != id);
        self.forget_warm(id);
        self.publish_now(out);
        let ev = self.note("exited", reason.clone());
        if self.record.deployment.is_some() {
            self.report_failure(id.to_string(), reason, ev);
        } else {
            self.route_steady();
            self.commit(None, vec![ev]);
            self.fail_back_to_warm(version.as_deref(), &reason);
            self.heal();
        }
    }

    pub(super) fn on_started(
        &mut self,
        id: String,
        result: Result<InstanceHandle, String>,
        out: &mut Vec<Effect>,
    ) {
        let replacement = self.healing.remove(&id);
        if replacement && result.is_err() {
            self.heal_after = self.now.plus(HEAL_BACKOFF);
        }
        if let Some(d) = self.record.deployment.as_mut() {
            d.pending_starts.retain(|p| p != &id);
        }
        match result {
            Ok(handle) => {
                self.record.instances.push(handle.clone());
                let ev = self.note("started", format!("{id} started at {}", handle.addr));
                self.commit(None, vec![ev]);
                if self.record.deployment.is_none() {
                    // A replacement joins the steady plan (routed once healthy).
                    self.route_steady();
                }
                // A replacement that started after a deployment began (or ended with
                // another version) is not wanted any more.
                let unwanted = replacement
                    && (self.record.deployment.is_some()
                        || self.record.stable_version.as_deref() != Some(handle.version.as_str()));
                if self.stop_after_start.remove(&id) || unwanted {
                    self.stop_instance(&id, out);
                } else {
                    self.watch(&handle, out);
                }
            }
            Err(reason) => {
                self.stop_after_start.remove(&id);
                let ev = self.note("failed", format!("{id} could not start: {reason}"));
                self.report_failure(id, reason, ev);
            }
        }
    }

    pub(super) fn on_stopped(&mut self, id: String) {
        self.stopping.remove(&id);
        self.record.stopping.retain(|s| s != &id);
        self.record.instances.retain(|h| h.id != id);
        self.healthy.remove(&id);
        self.forget_warm(&id);
        if self.record.deployment.is_some() {
            self.feed(Input::Stopped { instance: id }, Vec::new());
        } else {
            self.commit(None, Vec::new());
            self.heal();
        }
    }

    /// A running deployment decides what an instance failure means; otherwise it is
    /// only recorded.
    pub(super) fn report_failure(&mut self, id: String, reason: String, ev: Note) {
        if self.record.deployment.is_some() {
            self.feed(
                Input::Failed {
                    instance: id,
                    reason,
                },
                vec![ev],
            );
        } else {
            self.commit(None, vec![ev]);
        }
    }
}
