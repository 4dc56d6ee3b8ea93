//! `check_invariants`, run at the end of every `handle` (debug builds; a no-op in
//! release). These are the promises the controller relies on.
//!
//! **Invariants:** instance ids are unique; a route lists only ready instances, each
//! version once, no empty pool; a `Stop` never names an instance still in the last
//! route published before it, and no instance is stopped twice; `Finish` is emitted once
//! and is the last command; new instance ids are `"{deployment_id}-{n}"`.

use super::Rollout;
use crate::book::Phase;
use crate::{Command, RoutePlan};
use std::collections::HashSet;

fn routes_instance(route: Option<&RoutePlan>, id: &str) -> bool {
    route.is_some_and(|r| r.pools.iter().any(|p| p.instances.iter().any(|i| i == id)))
}

// === impl Rollout (invariants) ===

impl Rollout {
    pub(super) fn check_invariants(&self, before: Option<&RoutePlan>, out: &[Command]) {
        if !cfg!(debug_assertions) {
            return;
        }
        self.check_book();
        self.check_output(before, out);
    }

    fn check_book(&self) {
        let insts = self.book.insts();
        let ids: HashSet<&str> = insts.iter().map(|i| i.id.as_str()).collect();
        debug_assert_eq!(
            ids.len(),
            insts.len(),
            "instance ids must be unique: {insts:?}"
        );
        if let Some(route) = self.book.last_route() {
            let mut versions = HashSet::new();
            for pool in &route.pools {
                debug_assert!(
                    versions.insert(&pool.version),
                    "one pool per version: {route:?}"
                );
                debug_assert!(!pool.instances.is_empty(), "no empty pool: {route:?}");
                for id in &pool.instances {
                    let ready = insts.iter().any(|i| &i.id == id && i.phase == Phase::Ready);
                    debug_assert!(ready, "routed instance {id} must be ready: {insts:?}");
                }
            }
        }
    }

    fn check_output(&self, before: Option<&RoutePlan>, out: &[Command]) {
        let prefix = format!("{}-", self.spec.deployment_id);
        let mut route = before;
        let mut stopped = HashSet::new();
        let mut started = HashSet::new();
        for (n, cmd) in out.iter().enumerate() {
            match cmd {
                Command::Route(r) => route = Some(r),
                Command::Stop { instance } => {
                    debug_assert!(
                        !routes_instance(route, instance),
                        "Stop {instance} while still routed: {route:?}"
                    );
                    debug_assert!(
                        stopped.insert(instance),
                        "{instance} stopped twice in {out:?}"
                    );
                    let gone = self.book.insts().iter().any(|i| {
                        &i.id == instance && matches!(i.phase, Phase::Stopping | Phase::Stopped)
                    });
                    debug_assert!(gone, "{instance} stopped but not marked stopping");
                }
                Command::Start { instance, .. } => {
                    debug_assert!(instance.starts_with(&prefix), "bad new id {instance}");
                    debug_assert!(started.insert(instance), "{instance} started twice");
                }
                Command::Finish(_) => {
                    debug_assert_eq!(n + 1, out.len(), "Finish must be the last command: {out:?}");
                }
                Command::Note { .. } => {}
                Command::Gate { .. } => {
                    debug_assert!(
                        self.book.gate_pending().is_some() || self.ending.is_some(),
                        "a Gate is emitted only while waiting at it: {out:?}"
                    );
                }
            }
        }
        let finishes = out
            .iter()
            .filter(|c| matches!(c, Command::Finish(_)))
            .count();
        debug_assert!(finishes <= 1, "at most one Finish: {out:?}");
        debug_assert_eq!(finishes == 1, self.is_finished(), "Finish iff finished now");
    }
}
