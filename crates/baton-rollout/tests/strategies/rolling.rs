//! rolling: capacity bounds for many (replicas, surge, unavailable) combinations, exact
//! batch shapes, batch pauses, and the rolling revert on failure.

use crate::driver::*;
use baton_core::Millis;
use baton_core::Quantity::{self, Count, Percent};
use baton_rollout::*;

/// Kubernetes' resolution: surge rounds up, unavailable down, both zero → surge 1.
fn bounds(replicas: u32, surge: Quantity, unavailable: Quantity) -> (u32, u32) {
    let s = surge.resolve(replicas, true);
    let u = unavailable.resolve(replicas, false);
    let (s, u) = if s == 0 && u == 0 { (1, 0) } else { (s, u) };
    (replicas.saturating_sub(u), replicas + s)
}

fn world(replicas: u32, surge: Quantity, unavailable: Quantity, pause: u64) -> World {
    let mut w = World::new(spec(rolling(surge, unavailable, pause), replicas, replicas));
    w.bounds = Some(bounds(replicas, surge, unavailable));
    w.started()
}

/// `(new ready, old ready)` of every published route.
fn shape(w: &World) -> Vec<(usize, usize)> {
    let count = |r: &RoutePlan, v: &str| {
        r.pools
            .iter()
            .filter(|p| p.version == v)
            .map(|p| p.instances.len())
            .sum()
    };
    w.routes
        .iter()
        .map(|r| (count(r, "v2"), count(r, "v1")))
        .collect()
}

#[test]
fn surge_one_replaces_one_instance_at_a_time() {
    let mut w = world(3, Count(1), Count(0), 0);
    w.run();
    assert_eq!(shape(&w), vec![(0, 3), (1, 2), (2, 1), (3, 0)]);
    assert_eq!(w.assert_clean_finish().outcome, Outcome::Succeeded);
}

#[test]
fn weights_are_ready_counts_newest_first() {
    let mut w = world(3, Count(1), Count(0), 0);
    w.run_steps(2);
    let r = w.routes.last().unwrap();
    assert_eq!(r.pools[0].version, "v2");
    assert_eq!((r.pools[0].weight, r.pools[1].weight), (1, 2));
    assert_eq!(
        w.rollout.status().weights,
        vec![("v2".into(), 33), ("v1".into(), 67)]
    );
}

#[test]
fn in_place_takes_half_out_first_and_never_surges() {
    let mut w = world(4, Count(0), Percent(50), 0);
    let first: Vec<_> = w
        .commands
        .iter()
        .filter(|c| matches!(c, Command::Stop { .. }))
        .collect();
    assert_eq!(first.len(), 2, "half of the old instances leave first");
    assert_eq!(w.starts(), 0, "nothing starts until they are stopped");
    w.run();
    assert_eq!(shape(&w)[0], (0, 2));
    assert_eq!(w.assert_clean_finish().instances.len(), 4);
}

#[test]
fn capacity_bounds_hold_for_many_combinations() {
    let quantities = [
        Count(0),
        Count(1),
        Count(2),
        Percent(25),
        Percent(50),
        Percent(100),
    ];
    for replicas in 1..=6 {
        for surge in quantities {
            for unavailable in quantities {
                for pause in [0, 5] {
                    let mut w = world(replicas, surge, unavailable, pause);
                    w.run();
                    let f = w.assert_clean_finish();
                    assert_eq!(
                        f.outcome,
                        Outcome::Succeeded,
                        "{replicas} {surge} {unavailable}"
                    );
                    assert_eq!(f.instances.len(), replicas as usize);
                    // And an abort half-way goes back under the same bounds.
                    let total = w.steps();
                    let mut w = world(replicas, surge, unavailable, pause);
                    w.run_steps(total / 2);
                    w.feed(Input::Abort {
                        reason: "stop".into(),
                    });
                    w.run();
                    let f = w.assert_clean_finish();
                    assert_eq!(
                        f.instances.len(),
                        replicas as usize,
                        "{replicas} {surge} {unavailable}"
                    );
                }
            }
        }
    }
}

#[test]
fn batch_pause_waits_between_batches() {
    let mut w = world(3, Count(1), Count(0), 10);
    while w.routes.last().map(|r| r.pools.len()) != Some(2) {
        assert!(w.step());
    }
    let batch_ready = w.now;
    assert_eq!(
        w.rollout.next_deadline(),
        Some(Millis(batch_ready + 10_000))
    );
    assert!(
        w.notes.iter().any(|n| n.contains("pausing")),
        "{:?}",
        w.notes
    );
    let before = w.commands.len();
    w.step();
    assert_eq!(
        w.now,
        batch_ready + 10_000,
        "nothing happens during the pause"
    );
    assert!(w.commands[before..]
        .iter()
        .any(|c| matches!(c, Command::Stop { .. })));
    w.run();
    assert_eq!(w.assert_clean_finish().outcome, Outcome::Succeeded);
    let pauses = w.notes.iter().filter(|n| n.contains("pausing")).count();
    assert_eq!(pauses, 2, "a pause after each batch but the last");
}

#[test]
fn promote_skips_the_remaining_batch_pauses() {
    let mut w = world(4, Count(1), Count(0), 600);
    while w.rollout.next_deadline().is_none() {
        assert!(w.step());
    }
    let t = w.now;
    w.feed(Input::Promote { to: None });
    assert_eq!(w.rollout.next_deadline(), None);
    w.run();
    assert_eq!(w.assert_clean_finish().outcome, Outcome::Succeeded);
    assert!(w.now < t + 600_000);
}

#[test]
fn a_failing_new_instance_rolls_the_old_version_back_to_full_count() {
    let mut w = World::new(spec(rolling(Count(0), Percent(50), 0), 4, 4));
    w.faults.insert("web-7-3".into(), Fault::NeverHealthy);
    w.bounds = Some((1, 4));
    let mut w = w.started();
    w.run();
    let f = w.assert_clean_finish();
    assert_eq!(f.outcome, Outcome::Failed);
    assert_eq!(f.stable_version.as_deref(), Some("v1"));
    assert_eq!(f.instances.len(), 4, "old version back at replicas");
    assert!(w.running("v2").is_empty());
    let restored = f
        .instances
        .iter()
        .filter(|i| i.starts_with("web-7-"))
        .count();
    assert!(restored >= 2, "old instances started again: {f:?}");
}

#[test]
fn while_reverting_healthy_new_instances_keep_serving_until_replaced() {
    // surge 1, unavailable 0: capacity never drops below 3 routed, even during the revert.
    let mut w = world(3, Count(1), Count(0), 0);
    while shape(&w).last() != Some(&(2, 1)) {
        assert!(w.step());
    }
    w.feed(Input::Abort {
        reason: "not today".into(),
    });
    assert_eq!(
        w.pools().iter().map(|p| p.2).sum::<usize>(),
        3,
        "nothing left routing early"
    );
    w.run();
    let f = w.assert_clean_finish();
    assert_eq!((f.outcome, f.instances.len()), (Outcome::Aborted, 3));
}

#[test]
fn a_stable_instance_failing_does_not_fail_the_update() {
    let mut w = World::new(spec(rolling(Count(1), Count(0), 0), 3, 3)).started();
    w.step();
    w.fail("web-3-3");
    assert!(
        w.notes
            .iter()
            .any(|n| n.contains("stable instance web-3-3")),
        "{:?}",
        w.notes
    );
    w.run();
    let f = w.assert_clean_finish();
    assert_eq!((f.outcome, f.instances.len()), (Outcome::Succeeded, 3));
}

#[test]
fn more_old_instances_than_replicas_scale_down_on_the_way() {
    let mut w = World::new(spec(rolling(Count(1), Count(0), 0), 2, 5));
    w.bounds = Some((2, 5));
    let mut w = w.started();
    w.run();
    let f = w.assert_clean_finish();
    assert_eq!((f.outcome, f.instances.len()), (Outcome::Succeeded, 2));
}

#[test]
fn progress_counts_replaced_instances() {
    let mut w = world(2, Count(1), Count(0), 0);
    assert_eq!(w.rollout.status().total_steps, 2);
    while w.rollout.status().step_index == 0 {
        assert!(w.step());
    }
    assert!(w.rollout.status().step.starts_with("1/2 replaced"));
}
