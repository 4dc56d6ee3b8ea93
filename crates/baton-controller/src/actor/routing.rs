//! Routing (the stored plan restricted to healthy instances), keeping the stable
//! version at `replicas`, events, storing, and sharing the view with readers.

use super::AppActor;
use crate::model::{Event, HistoryEntry};
use crate::status::AppView;
use baton_core::{AppRouteSpec, BackendSpec, HoldSpec, Millis, PoolSpec};
use baton_rollout::{PoolPlan, RoutePlan};

impl AppActor {
    // === routing ===

    pub(crate) fn publish(&mut self) {
        self.published = self.record.route.clone();
        let spec = self.route_spec();
        if let Err(error) = self.shared.routes.set_app(&self.name, spec) {
            tracing::error!(app = %self.name, %error, "route table rejected; previous routing kept");
        }
    }

    /// The stored plan restricted to instances that are up and healthy.
    pub(super) fn route_spec(&self) -> AppRouteSpec {
        let plan = &self.record.route;
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

    /// Stable version, all its instances, 100%.
    pub(super) fn route_steady(&mut self) {
        self.record.route = match &self.record.stable_version {
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
    }

    pub(super) fn route_steady_if_idle(&mut self) {
        if self.record.deployment.is_none() {
            self.route_steady();
        }
    }

    /// Outside deployments, keep `replicas` instances of the stable version running.
    pub(super) async fn heal(&mut self) {
        if self.record.deployment.is_some()
            || self.runtime.operator_targets()
            || Millis::now() < self.heal_after
        {
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
            let ev = self.event(
                "replacing",
                format!("starting {id} ({v}) to keep {} replicas", self.cfg.replicas),
            );
            if self.persist(None, vec![ev]).await.is_err() {
                return;
            }
            self.healing.insert(id.clone());
            self.start_instance(id, v.clone());
        }
    }

    // === bookkeeping ===

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

    pub(super) fn event(&self, kind: &str, message: String) -> Event {
        Event {
            at: Millis::now(),
            app: self.name.clone(),
            deployment: self.record.deployment.as_ref().map(|d| d.id.clone()),
            kind: kind.to_string(),
            message,
        }
    }

    /// Stores the record with `history` and `events`, then tells event watchers. A store
    /// that fails is logged, shown in `status` (`store_error`) and returned: the caller
    /// must not carry out what the record was to make durable.
    pub(super) async fn persist(
        &mut self,
        history: Option<HistoryEntry>,
        events: Vec<Event>,
    ) -> Result<(), String> {
        let store = self.shared.store.clone();
        let record = self.record.clone();
        let app = self.name.clone();
        let evs = events.clone();
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
            tracing::error!(app = %self.name, %error, "could not store state; nothing that depends on it happens until a store succeeds");
            self.store_error = Some(error.clone());
            return Err(error);
        }
        self.store_error = None;
        for e in events {
            tracing::info!(app = %e.app, kind = %e.kind, "{}", e.message);
            let _ = self.shared.events.send(e);
        }
        Ok(())
    }

    /// Stores a fact that already happened (an instance became healthy, exited, was
    /// started or stopped). Nothing waits on it: a failure is logged and shown, and the
    /// next successful store carries the record.
    pub(super) async fn record_fact(&mut self, events: Vec<Event>) {
        let _ = self.persist(None, events).await;
    }

    pub(super) fn share(&self) {
        let rollout = self.record.deployment.as_ref().map(|d| d.rollout.status());
        self.view.send_replace(AppView {
            record: self.record.clone(),
            healthy: self.healthy.clone(),
            rollout,
            last_finished: self.last_finished.clone(),
            experiment: self.analysis.experiment.clone(),
            store_error: self.store_error.clone(),
            published: self.published.clone(),
        });
    }
}
