//! Blue/green's warm window. The deployment finished at the switch; the previous
//! version's instances stay running outside routing (`AppRecord::warm`) until the
//! window ends. Meanwhile `rollback`, a deploy of that version, or a failure of the
//! version now serving switches all traffic back to them at once, with nothing to start;
//! a deploy of any other version, `promote`, or the end of the window drains and stops
//! them.

use super::{Answer, AppCore, Held, Ticket};
use crate::gates::GatePayload;
use crate::model::{Event as Note, HistoryEntry, WarmSet};
use baton_rollout::Outcome;

impl AppCore {
    /// The warm instances that are running and healthy now.
    pub(super) fn warm_ready(&self) -> Vec<String> {
        self.record
            .warm
            .iter()
            .flat_map(|w| w.instances.iter())
            .filter(|id| self.record.instance(id).is_some() && self.healthy.contains(*id))
            .cloned()
            .collect()
    }

    /// Whether a deploy of `version` can be an instant switch back to the warm set.
    pub(super) fn can_switch_to_warm(&self, version: &str) -> bool {
        self.record.warm.as_ref().is_some_and(|w| {
            w.version == version && self.record.stable_version.as_deref() != Some(version)
        }) && !self.warm_ready().is_empty()
    }

    /// Ends the window once its time is up.
    pub(super) fn expire_warm(&mut self) {
        let due = self
            .record
            .warm
            .as_ref()
            .is_some_and(|w| self.now >= w.until);
        if due {
            self.end_warm("the warm window is over");
        }
    }

    /// Drains and stops the warm instances (they are out of routing already), once the
    /// record saying so is stored.
    pub(super) fn end_warm(&mut self, why: &str) {
        let Some(w) = self.record.warm.take() else {
            return;
        };
        let ids: Vec<String> = w
            .instances
            .iter()
            .filter(|id| self.record.instance(id).is_some())
            .cloned()
            .collect();
        for id in &ids {
            if !self.record.stopping.contains(id) {
                self.record.stopping.push(id.clone());
            }
        }
        let msg = format!(
            "{why}: stopping the warm {} ({})",
            w.version,
            ids.join(", ")
        );
        let ev = self.note("warm_ended", msg);
        self.commit(None, vec![ev]);
        for id in ids {
            self.hold(Held::Stop(id));
        }
    }

    /// A warm instance that exited or was stopped is no longer part of the set.
    pub(super) fn forget_warm(&mut self, id: &str) {
        if let Some(w) = &mut self.record.warm {
            w.instances.retain(|i| i != id);
            if w.instances.is_empty() {
                self.record.warm = None;
            }
        }
    }

    /// Moves all traffic back to the warm version at once: it becomes the stable version,
    /// and the switch is recorded in history like a deployment (id `{app}-{seq}`, no time
    /// spent). The version that was serving is kept warm in turn for `keep_for` (a deploy
    /// that alternates two versions switches instantly every time), or, with `None`
    /// (rollback, failure), drained and stopped. `None` when there is no healthy warm
    /// instance to switch to. With a `ticket`, the operator is answered once the switch
    /// is stored, or refused (and nothing changed) if it cannot be.
    pub(super) fn switch_to_warm(
        &mut self,
        outcome: Outcome,
        reason: String,
        keep_for: Option<std::time::Duration>,
        ticket: Option<Ticket>,
    ) -> Option<String> {
        if self.warm_ready().is_empty() {
            return None;
        }
        let before = self.record.clone();
        let w = self.record.warm.take()?;
        self.begin_undoable(
            before,
            ticket.map(|t| {
                (
                    t,
                    "the switch back did not happen and nothing changed".into(),
                )
            }),
        );
        let now = self.now;
        self.record.seq += 1;
        let id = format!("{}-{}", self.name, self.record.seq);
        let from = self.record.stable_version.clone();
        let mut leaving: Vec<String> = self
            .record
            .instances
            .iter()
            .filter(|h| !w.instances.contains(&h.id) && !self.stopping.contains(&h.id))
            .map(|h| h.id.clone())
            .collect();
        self.record.stable_version = Some(w.version.clone());
        self.record.previous_version = from.clone();
        let keep = match (keep_for, &from) {
            (Some(d), Some(v)) if !leaving.is_empty() && !d.is_zero() => Some(WarmSet {
                version: v.clone(),
                instances: std::mem::take(&mut leaving),
                until: now.plus(d),
                deployment: id.clone(),
                irreversible: false,
            }),
            _ => None,
        };
        let warm_until = keep.as_ref().map(|k| k.until);
        self.record.warm = keep;
        self.route_steady();
        for l in &leaving {
            if !self.record.stopping.contains(l) {
                self.record.stopping.push(l.clone());
            }
        }
        let entry = HistoryEntry {
            id: id.clone(),
            app: self.name.clone(),
            from_version: from.clone(),
            to_version: w.version.clone(),
            strategy: "blue_green".into(),
            outcome,
            started_at: now,
            finished_at: now,
            duration_ms: 0,
            reason: Some(reason.clone()),
            warm_until,
            analysis: None,
            hooks: Vec::new(),
            irreversible: false,
        };
        let word = format!("{outcome:?}").to_lowercase();
        let ev = Note {
            at: now,
            app: self.name.clone(),
            deployment: Some(id.clone()),
            kind: "finished".into(),
            message: format!("{id} ({}) {word}: {reason}", w.version),
        };
        self.commit(Some(entry.clone()), vec![ev]);
        self.hold(Held::Route);
        self.hold(Held::Finished(Box::new(entry)));
        for l in leaving {
            self.hold(Held::Stop(l));
        }
        if self.analysis_active() {
            let payload = GatePayload {
                app: self.name.clone(),
                deployment: id.clone(),
                from_version: from,
                to_version: w.version,
                strategy: "blue_green".into(),
                gate: String::new(),
                step: None,
                weight: None,
                outcome: Some(word),
                reason: Some(reason),
            };
            self.hold(Held::Notify {
                payload: Box::new(payload),
                outcome,
            });
        }
        if let Some(ticket) = ticket {
            self.hold(Held::Reply {
                ticket,
                answer: Answer::Deployment(id.clone()),
            });
        }
        Some(id)
    }

    /// An instance of the serving version failed while the previous version is warm:
    /// the switch is not trusted any more, so traffic goes back at once. Returns whether
    /// it switched.
    pub(super) fn fail_back_to_warm(&mut self, version: Option<&str>, why: &str) -> bool {
        let serving = version.is_some() && version == self.record.stable_version.as_deref();
        if self.record.deployment.is_some() || !serving || self.record.warm.is_none() {
            return false;
        }
        if self.record.warm.as_ref().is_some_and(|w| w.irreversible) {
            // The release step of the serving version cannot be undone: going back is
            // the operator's call (`baton rollback --force`).
            let ev = self.note(
                "frozen",
                format!("{why}; NOT switching back: the release step of the serving version is irreversible (`baton rollback {} --force` switches back anyway)", self.name),
            );
            self.commit(None, vec![ev]);
            return true;
        }
        let back_to = self
            .record
            .warm
            .as_ref()
            .map(|w| w.version.clone())
            .unwrap_or_default();
        let reason = format!("{why}; switched back to the warm {back_to}");
        self.switch_to_warm(Outcome::Failed, reason, None, None)
            .is_some()
    }
}
