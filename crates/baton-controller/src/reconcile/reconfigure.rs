//! `baton reload` for one app: new settings for an app that stays (`reconfigure`), and
//! the end of an app removed from the file (`retire`). The controller's `reload.rs`
//! decides across apps; this decides for one.
//!
//! Both refuse while a rollout is in progress: the reload then changes nothing.

use super::{Answer, AppCore, Effect, Held, Ticket};
use crate::model::AppRecord;
use crate::ControlError;
use baton_config::AppConfig;
use baton_rollout::RoutePlan;

impl AppCore {
    /// Takes the app's new settings. Routing settings (`upgrade_protocols`,
    /// `underscores_in_headers`, `hold_timeout`; host and path are the route book's) are
    /// published at once; health monitors restart with the new spec (an instance healthy
    /// now stays healthy until the new checks fail `unhealthy` times); strategy, analysis
    /// and replicas are read by the next deployment and by self-healing (a larger
    /// `replicas` is started at once, a smaller one waits for the next deployment).
    pub(super) fn reconfigure(&mut self, cfg: AppConfig, ticket: Ticket, out: &mut Vec<Effect>) {
        if cfg == self.cfg {
            return Self::answer(out, ticket, Ok(Answer::Done));
        }
        if let Err(e) = self.refuse_during_rollout() {
            return Self::answer(out, ticket, Err(e));
        }
        let health_changed = cfg.health != self.cfg.health;
        self.cfg = cfg;
        if health_changed {
            for id in self.watched.clone() {
                if let Some(handle) = self.record.instance(&id).cloned() {
                    out.push(Effect::Watch {
                        handle,
                        healthy_now: self.healthy.contains(&id),
                    });
                }
            }
        }
        self.publish_now(out);
        self.heal();
        tracing::info!(app = %self.name, "settings reloaded");
        Self::answer(out, ticket, Ok(Answer::Done));
    }

    /// The app left the config: drain and stop every instance (the route book unrouted
    /// it already), then store it as retired — no instances, no stable version, its
    /// history and id sequence kept — so an app added back later under the same name
    /// starts empty, like a new one, and its deployment ids go on from where they were.
    /// Answered with the instances stopped once the last is gone.
    pub(super) fn retire(&mut self, ticket: Ticket, out: &mut Vec<Effect>) {
        if let Err(e) = self.refuse_during_rollout() {
            return Self::answer(out, ticket, Err(e));
        }
        self.begin_undoable(
            self.record.clone(),
            Some((
                ticket,
                format!("{} was not retired and nothing changed", self.name),
            )),
        );
        // Nothing to heal towards or switch back to from here on.
        self.record.stable_version = None;
        self.record.warm = None;
        if self.record.route != RoutePlan::default() {
            self.record.route = RoutePlan::default();
            self.hold(Held::Route);
        }
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
        let ev = self.note("retiring", msg);
        self.commit(None, vec![ev]);
        for id in &ids {
            self.hold(Held::Stop(id.clone()));
        }
        self.hold(Held::Retiring { ticket, ids });
    }

    /// Once a retiring app has no instance left (and none starting), its record is
    /// emptied and the reload answered.
    pub(super) fn check_retired(&mut self) {
        let done =
            self.record.instances.is_empty() && self.healing.is_empty() && self.stopping.is_empty();
        if !done {
            return;
        }
        let Some((ticket, ids)) = self.retiring.take() else {
            return;
        };
        self.record = AppRecord {
            seq: self.record.seq,
            ..AppRecord::new(&self.name)
        };
        let ev = self.note("retired", format!("{} retired", self.name));
        self.commit(None, vec![ev]);
        self.hold(Held::Reply {
            ticket,
            answer: Answer::Retired(ids),
        });
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

    fn answer(out: &mut Vec<Effect>, ticket: Ticket, result: Result<Answer, ControlError>) {
        out.push(Effect::Reply { ticket, result });
    }
}
