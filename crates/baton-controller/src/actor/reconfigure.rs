//! `baton reload` inside one app's actor: new settings for an app that stays
//! (`reconfigure`), and the end of an app removed from the file (`retire`). The
//! controller's `reload.rs` decides across apps; this carries it out for one.
//!
//! Both refuse while a rollout is in progress: the reload then changes nothing.

use super::AppActor;
use crate::model::AppRecord;
use crate::ControlError;
use baton_config::AppConfig;
use baton_health::{spawn_monitor, spawn_monitor_healthy};
use baton_rollout::RoutePlan;

impl AppActor {
    /// Takes the app's new settings. Routing settings (host/path are the route book's,
    /// `upgrade_protocols`, `underscores_in_headers`, `hold_timeout`) are published at
    /// once; health monitors restart with the new spec (an instance healthy now stays
    /// healthy until the new checks fail `unhealthy` times); strategy, analysis and
    /// replicas are read by the next deployment, and by the replacement of a lost
    /// instance (a larger `replicas` is started at once, a smaller one waits for the next
    /// deployment).
    pub(super) async fn reconfigure(&mut self, cfg: AppConfig) -> Result<(), ControlError> {
        if cfg == self.cfg {
            return Ok(());
        }
        self.refuse_during_rollout()?;
        let health_changed = cfg.health != self.cfg.health;
        self.cfg = cfg;
        if health_changed {
            self.restart_monitors();
        }
        self.publish();
        self.share();
        tracing::info!(app = %self.name, "settings reloaded");
        Ok(())
    }

    /// The app left the config: drain and stop every instance (it is unrouted already),
    /// then store it as retired — no instances, no stable version, its history and id
    /// sequence kept — so an app added back later under the same name starts empty, like
    /// a new one, and its deployment ids go on from where they were.
    pub(super) async fn retire(&mut self) -> Result<Vec<String>, ControlError> {
        self.refuse_during_rollout()?;
        let before = self.record.clone();
        // Nothing to heal towards or switch back to from here on.
        self.record.stable_version = None;
        self.record.warm = None;
        self.record.route = RoutePlan::default();
        let ids: Vec<String> = self.record.instances.iter().map(|h| h.id.clone()).collect();
        for id in &ids {
            if !self.record.stopping.contains(id) {
                self.record.stopping.push(id.clone());
            }
        }
        let msg = format!(
            "removed from the config: stopping {}",
            if ids.is_empty() {
                "nothing (no instances)".to_string()
            } else {
                ids.join(", ")
            }
        );
        let ev = self.event("retiring", msg);
        if let Err(error) = self.persist(None, vec![ev]).await {
            self.record = before;
            return Err(ControlError::StoreFailed(format!(
                "{error}; {} was not retired and nothing changed",
                self.name
            )));
        }
        for id in &ids {
            self.stop_instance(id);
        }
        self.wait_until_all_stopped().await;
        self.record = AppRecord {
            seq: self.record.seq,
            ..AppRecord::new(&self.name)
        };
        let ev = self.event("retired", format!("{} retired", self.name));
        if let Err(error) = self.persist(None, vec![ev]).await {
            return Err(ControlError::StoreFailed(format!(
                "{error}; the instances of {} were stopped but its record still lists them",
                self.name
            )));
        }
        self.share();
        Ok(ids)
    }

    fn refuse_during_rollout(&self) -> Result<(), ControlError> {
        let Some(d) = &self.record.deployment else {
            return Ok(());
        };
        let app = &self.name;
        Err(ControlError::ReloadRefused(format!(
            "{app} has a rollout in progress ({}: {} by {}): a reload cannot change or remove \
             an app mid-rollout. Wait for it to finish (`baton status {app}`) or stop it \
             with `baton abort {app}`, then reload again. Nothing was changed.",
            d.id, d.version, d.strategy
        )))
    }

    fn restart_monitors(&mut self) {
        let ids: Vec<String> = self
            .monitors
            .iter()
            .filter(|(_, m)| !m.is_finished())
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            let Some(h) = self.record.instance(&id).cloned() else {
                continue;
            };
            let (spec, events) = (self.cfg.health.clone(), self.health_tx.clone());
            let monitor = if self.healthy.contains(&id) {
                spawn_monitor_healthy(h.id.clone(), h.addr, spec, events)
            } else {
                spawn_monitor(h.id.clone(), h.addr, spec, events)
            };
            // Replacing the handle ends the old monitor.
            self.monitors.insert(id, monitor);
        }
    }

    /// Carries out background results until no instance is left, stopping any that a
    /// replacement start brings back meanwhile.
    async fn wait_until_all_stopped(&mut self) {
        loop {
            let left: Vec<String> = self
                .record
                .instances
                .iter()
                .filter(|h| !self.stopping.contains(&h.id))
                .map(|h| h.id.clone())
                .collect();
            for id in &left {
                self.stop_instance(id);
            }
            if self.record.instances.is_empty() && self.healing.is_empty() {
                return;
            }
            match self.done_rx.recv().await {
                Some(done) => self.on_done(done).await,
                None => return,
            }
        }
    }
}
