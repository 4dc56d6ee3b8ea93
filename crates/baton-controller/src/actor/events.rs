//! What happened to instances: health changes, exits, and background start/stop results.

use super::{AppActor, Done};
use crate::model::Event;
use baton_core::Millis;
use baton_health::HealthEvent;
use baton_rollout::Input;
use baton_runtime::RuntimeEvent;
use std::time::Duration;

impl AppActor {
    // === what happened ===

    pub(super) async fn on_health(&mut self, ev: HealthEvent) {
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
                    self.record_fact(Vec::new()).await;
                }
            }
            HealthEvent::Unhealthy { id, reason } => {
                if self.stopping.contains(&id) {
                    return;
                }
                self.healthy.remove(&id);
                self.publish();
                let version = self.record.instance(&id).map(|h| h.version.clone());
                let reason = format!("{id} turned unhealthy: {reason}");
                let ev = self.event("unhealthy", reason.clone());
                self.report_failure(id, reason.clone(), ev).await;
                self.fail_back_to_warm(version.as_deref(), &reason).await;
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
                    self.report_failure(id, reason, ev).await;
                } else {
                    let ev = self.event("replacing", reason);
                    self.record_fact(vec![ev]).await;
                    self.stop_instance(&id);
                }
            }
        }
    }

    pub(super) async fn on_runtime(&mut self, ev: RuntimeEvent) {
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
    pub(super) async fn instance_gone(&mut self, id: &str, reason: String) {
        let version = self.record.instance(id).map(|h| h.version.clone());
        self.monitors.remove(id);
        self.healthy.remove(id);
        self.record.instances.retain(|h| h.id != id);
        self.forget_warm(id);
        self.publish();
        let ev = self.event("exited", reason.clone());
        if self.record.deployment.is_some() {
            self.report_failure(id.to_string(), reason, ev).await;
        } else {
            self.route_steady_if_idle();
            self.record_fact(vec![ev]).await;
            self.fail_back_to_warm(version.as_deref(), &reason).await;
            self.heal().await;
        }
    }

    pub(super) async fn on_done(&mut self, done: Done) {
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
                        let ev = self.event("started", format!("{id} started at {}", handle.addr));
                        self.record_fact(vec![ev]).await;
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
                self.forget_warm(&id);
                if self.record.deployment.is_some() {
                    self.feed(Input::Stopped { instance: id }).await;
                } else {
                    self.record_fact(Vec::new()).await;
                    self.heal().await;
                }
            }
            other => self.on_analysis_done(other).await,
        }
    }

    /// A running deployment decides what an instance failure means; otherwise it is
    /// only recorded.
    pub(super) async fn report_failure(&mut self, id: String, reason: String, ev: Event) {
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
            self.record_fact(vec![ev]).await;
        }
    }
}
