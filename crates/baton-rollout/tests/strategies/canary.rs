//! canary: weight steps sized by instances, timed and manual pauses, rules and
//! stickiness, promote, and the analysis hook.

use crate::driver::*;
use baton_core::{Millis, StickySpec};
use baton_rollout::*;

fn world(steps: Vec<CanaryStep>, replicas: u32) -> World {
    World::new(spec(canary(steps), replicas, replicas)).started()
}

/// `(canary weight, canary instances, stable weight, stable instances)` per route.
fn shape(w: &World) -> Vec<(u32, usize, u32, usize)> {
    let pool = |r: &RoutePlan, v: &str| {
        r.pools
            .iter()
            .find(|p| p.version == v)
            .map(|p| (p.weight, p.instances.len()))
            .unwrap_or((0, 0))
    };
    w.routes
        .iter()
        .map(|r| {
            let (cw, cn) = pool(r, "v2");
            let (sw, sn) = pool(r, "v1");
            (cw, cn, sw, sn)
        })
        .collect()
}

#[test]
fn steps_move_weight_after_enough_canaries_are_ready() {
    let mut w = world(
        vec![weight(10), pause_for(60), weight(50), pause_for(60)],
        4,
    );
    assert_eq!(w.starts(), 1, "10% of 4 needs one canary");
    w.run();
    assert_eq!(
        shape(&w),
        vec![
            (0, 0, 100, 4),
            (10, 1, 90, 4),
            (50, 2, 50, 4),
            (50, 3, 50, 4),
            (100, 4, 0, 0)
        ],
        "the canary grows to full size at its last weight, then takes everything"
    );
    assert_eq!(w.assert_clean_finish().outcome, Outcome::Succeeded);
    assert_eq!(w.starts(), 4);
}

#[test]
fn pauses_last_as_long_as_configured() {
    let mut w = world(vec![weight(25), pause_for(60), weight(75)], 4);
    while shape(&w).len() < 2 {
        assert!(w.step());
    }
    let at_25 = w.now;
    assert_eq!(w.rollout.next_deadline(), Some(Millis(at_25 + 60_000)));
    let st = w.rollout.status();
    assert_eq!((st.step_index, st.total_steps), (1, 4));
    assert_eq!(st.step, "step 2/4: pause 1m");
    while shape(&w).last().unwrap().0 != 75 {
        assert!(w.step());
    }
    assert!(w.now >= at_25 + 60_000);
    assert_eq!(shape(&w).last().unwrap(), &(75, 3, 25, 4));
}

#[test]
fn a_manual_pause_waits_for_resume_or_promote() {
    let mut w = world(
        vec![weight(20), pause_manual(), weight(60), pause_for(600)],
        5,
    );
    w.run();
    let st = w.rollout.status();
    assert_eq!(st.state, State::Paused);
    assert!(st.reason.unwrap().contains("promote"));
    w.feed(Input::Resume);
    assert_eq!(w.rollout.status().step_index, 2);
    // Promote skips the 60% step's pause and goes to full size.
    w.feed(Input::Promote { to: None });
    w.run();
    assert_eq!(w.assert_clean_finish().outcome, Outcome::Succeeded);
    assert!(w
        .notes
        .iter()
        .any(|n| n.contains("skipping the remaining steps")));
}

#[test]
fn promote_at_the_first_step_skips_every_weight() {
    let mut w = world(
        vec![weight(10), pause_for(600), weight(50), pause_for(600)],
        3,
    );
    w.feed(Input::Promote { to: None });
    w.run();
    let weights: Vec<u32> = shape(&w).iter().map(|s| s.0).collect();
    assert!(!weights.contains(&50), "{weights:?}");
    assert_eq!(w.assert_clean_finish().outcome, Outcome::Succeeded);
}

#[test]
fn rules_and_stickiness_apply_once_the_canary_has_a_weight() {
    let strategy = StrategySpec::Canary(CanarySpec {
        steps: vec![weight(10), pause_for(10)],
        rules: vec![CanaryRule {
            header: Some("X-Role".into()),
            value: Some("admin".into()),
            ..CanaryRule::default()
        }],
        sticky: Some(StickySpec::Header {
            name: "X-User".into(),
        }),
    });
    let mut w = World::new(spec(strategy, 2, 2)).started();
    w.run();
    let first = &w.routes[0];
    assert!(first.rules.is_empty() && first.sticky.is_none());
    let split = &w.routes[1];
    assert_eq!(
        split.pools[0].version, "v2",
        "canary first: it owns the low hash range"
    );
    assert_eq!(split.rules.len(), 1);
    assert_eq!(split.rules[0].version, "v2");
    assert_eq!(
        split.sticky,
        Some(StickySpec::Header {
            name: "X-User".into()
        })
    );
    let last = w.routes.last().unwrap();
    assert!(last.rules.is_empty() && last.sticky.is_none());
}

#[test]
fn an_invalid_rule_fails_before_starting_anything() {
    let strategy = StrategySpec::Canary(CanarySpec {
        rules: vec![CanaryRule {
            header: Some("X-Role".into()),
            ..CanaryRule::default()
        }],
        ..CanarySpec::default()
    });
    let w = World::new(spec(strategy, 2, 2)).started();
    let f = w.assert_clean_finish();
    assert_eq!(f.outcome, Outcome::Failed);
    assert!(f.reason.as_ref().unwrap().contains("targeting rule 1"));
    assert_eq!(w.starts(), 0);
}

#[test]
fn a_failed_verdict_aborts_at_once() {
    let mut w = world(vec![weight(50), pause_for(600)], 2);
    while shape(&w).last().unwrap().0 != 50 {
        assert!(w.step());
    }
    w.feed(Input::Verdict(Verdict::Fail {
        reason: "error rate 12% > 5%".into(),
    }));
    assert_eq!(
        w.pools(),
        vec![("v1".into(), 100, 2)],
        "canary out of routing first"
    );
    assert_eq!(w.state(), State::Failed);
    w.run();
    let f = w.assert_clean_finish();
    assert_eq!(f.outcome, Outcome::Failed);
    assert_eq!(
        f.reason.as_deref(),
        Some("analysis failed: error rate 12% > 5%")
    );
}

#[test]
fn an_inconclusive_verdict_holds_a_pause_until_a_pass() {
    let mut w = world(vec![weight(50), pause_for(10)], 2);
    w.feed(Input::Verdict(Verdict::Inconclusive {
        reason: "12 samples < 100".into(),
    }));
    w.run();
    assert!(w.finish.is_none(), "held at the end of the pause");
    let st = w.rollout.status();
    assert_eq!(st.state, State::Running);
    assert!(st.reason.unwrap().contains("inconclusive"));
    assert_eq!(shape(&w).last().unwrap().0, 50);
    w.feed(Input::Verdict(Verdict::Pass));
    assert_eq!(w.rollout.status().verdict, Some(Verdict::Pass));
    w.run();
    assert_eq!(w.assert_clean_finish().outcome, Outcome::Succeeded);
}

#[test]
fn pausing_during_a_timed_pause_keeps_the_time_left() {
    let mut w = world(vec![weight(50), pause_for(60), weight(100)], 2);
    while w.rollout.next_deadline().is_none() {
        assert!(w.step());
    }
    let entered = w.now;
    w.advance_to(entered + 20_000);
    w.feed(Input::Pause);
    w.advance_to(entered + 3_600_000);
    w.feed(Input::Resume);
    assert_eq!(
        w.rollout.next_deadline(),
        Some(Millis(entered + 3_600_000 + 40_000))
    );
}

#[test]
fn a_zero_weight_step_makes_the_canary_reachable_by_rule_only() {
    let mut w = world(vec![weight(0), pause_for(10)], 3);
    w.run_steps(2);
    assert_eq!(shape(&w).last().unwrap(), &(0, 1, 100, 3));
}

#[test]
fn a_canary_instance_failing_sends_everything_back_to_stable() {
    let mut w = World::new(spec(
        canary(vec![weight(10), pause_for(60), weight(60)]),
        3,
        3,
    ));
    w.faults.insert("web-7-2".into(), Fault::NeverHealthy);
    let mut w = w.started();
    w.run();
    let f = w.assert_clean_finish();
    assert_eq!(f.outcome, Outcome::Failed);
    assert!(f.reason.as_ref().unwrap().contains("web-7-2"));
    assert_eq!(f.instances, vec!["web-3-1", "web-3-2", "web-3-3"]);
}
