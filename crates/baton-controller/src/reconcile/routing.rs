//! Routing (a plan restricted to healthy instances), keeping the stable version at
//! `replicas` (with a back-off after a failed replacement), and events.

use super::{AppCore, Effect, Held};
use crate::model::Event as Note;
use baton_core::{AppRouteSpec, BackendSpec, HoldSpec, PoolSpec};
use baton_rollout::{PoolPlan, RoutePlan};

impl AppCore {
    /// Hands the proxy the published plan with the health of now (an instance turned
    /// healthy or unhealthy, or is being stopped). The plan itself changes only through
    /// a stored record (`Held::Route`).
    pub(super) fn publish_now(&self, out: &mut Vec<Effect>) {
        out.push(Effect::Publish(self.route_spec_now()));
    }

    /// `plan` restricted to instances that are up, healthy and not stopping.
    pub(super) fn route_spec(&self, plan: &RoutePlan) -> AppRouteSpec {
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
            upgrade_protocols: self.cfg.upgrade_protocols.clone(),
            underscores_in_headers: self.cfg.underscores_in_headers,
        }
    }

    /// Stable version, all its instances (not the warm ones), 100 %. Goes out with the
    /// next store.
    pub(super) fn route_steady(&mut self) {
        let route = match &self.record.stable_version {
            Some(v) => RoutePlan {
                pools: vec![PoolPlan {
                    version: v.clone(),
                    weight: 100,
                    instances: self
                        .record
                        .instances
                        .iter()
                        .filter(|h| &h.version == v && !self.record.is_warm(&h.id))
                        .map(|h| h.id.clone())
                        .collect(),
                }],
                ..RoutePlan::default()
            },
            None => RoutePlan::default(),
        };
        if route != self.record.route {
            self.record.route = route;
            self.hold(Held::Route);
        }
    }

    /// Outside deployments, keep `replicas` instances of the stable version running.
    /// After a replacement failed to start, the next waits `HEAL_BACKOFF`.
    pub(super) fn heal(&mut self) {
        if self.record.deployment.is_some() || self.operator_targets || self.now < self.heal_after {
            return;
        }
        let Some(v) = self.record.stable_version.clone() else {
            return;
        };
        let have = self
            .record
            .instances
            .iter()
            .filter(|h| {
                h.version == v && !self.stopping.contains(&h.id) && !self.record.is_warm(&h.id)
            })
            .count() as u32;
        let starting = self.healing.len() as u32;
        for _ in (have + starting)..self.cfg.replicas {
            self.record.seq += 1;
            let id = format!("{}-r{}", self.name, self.record.seq);
            let ev = self.note(
                "replacing",
                format!("starting {id} ({v}) to keep {} replicas", self.cfg.replicas),
            );
            self.commit(None, vec![ev]);
            self.healing.insert(id.clone());
            self.hold(Held::Start {
                id,
                version: v.clone(),
            });
        }
    }

    /// The stable version's healthy instances outside the warm set.
    pub(super) fn stable_instances(&self) -> Vec<String> {
        match &self.record.stable_version {
            Some(v) => self
                .record
                .instances
                .iter()
                .filter(|h| {
                    &h.version == v && self.healthy.contains(&h.id) && !self.record.is_warm(&h.id)
                })
                .map(|h| h.id.clone())
                .collect(),
            None => Vec::new(),
        }
    }

    pub(super) fn note(&self, kind: &str, message: String) -> Note {
        Note {
            at: self.now,
            app: self.name.clone(),
            deployment: self.record.deployment.as_ref().map(|d| d.id.clone()),
            kind: kind.to_string(),
            message,
        }
    }
}
