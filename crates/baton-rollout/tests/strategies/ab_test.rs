//! ab_test: the variant at full size, traffic split with stickiness until the operator
//! picks the winner with `promote --to`.

use crate::driver::*;
use baton_rollout::*;

fn world(weight: u32) -> World {
    let strategy = StrategySpec::AbTest(AbTestSpec {
        weight,
        ..AbTestSpec::default()
    });
    World::new(spec(strategy, 2, 2)).started()
}

#[test]
fn splits_only_once_the_variant_is_fully_ready_and_runs_until_promoted() {
    let mut w = world(30);
    assert_eq!(w.starts(), 2);
    w.step();
    assert_eq!(
        w.pools(),
        vec![("v1".into(), 100, 2)],
        "no split with half a variant"
    );
    w.run();
    assert_eq!(w.pools(), vec![("v2".into(), 30, 2), ("v1".into(), 70, 2)]);
    let split = w.routes.last().unwrap();
    assert!(split.sticky.is_some(), "sticky per client by default");
    assert_eq!(w.state(), State::Running);
    assert_eq!(w.rollout.next_deadline(), None);
    let before = w.commands.len();
    w.advance_to(w.now + 86_400_000);
    assert_eq!(w.commands.len(), before, "an A/B test runs until promoted");
    assert_eq!(
        w.rollout.status().weights,
        vec![("v2".into(), 30), ("v1".into(), 70)]
    );
}

#[test]
fn promote_needs_a_variant_from_this_test() {
    let mut w = world(50);
    w.run();
    let routes = w.routes.len();
    w.feed(Input::Promote { to: None });
    assert!(w
        .notes
        .last()
        .unwrap()
        .contains("ab_test needs --to VARIANT"));
    w.feed(Input::Promote {
        to: Some("v3".into()),
    });
    assert!(
        w.notes.last().unwrap().contains("v3 is not a variant"),
        "{:?}",
        w.notes
    );
    assert_eq!(w.routes.len(), routes, "no change");
    assert!(w.finish.is_none());
}

#[test]
fn promoting_the_new_variant_makes_it_stable() {
    let mut w = world(50);
    w.run();
    w.feed(Input::Promote {
        to: Some("v2".into()),
    });
    assert_eq!(w.pools(), vec![("v2".into(), 100, 2)]);
    w.run();
    let f = w.assert_clean_finish();
    assert_eq!(
        (f.outcome, f.stable_version.as_deref()),
        (Outcome::Succeeded, Some("v2"))
    );
}

#[test]
fn promoting_the_current_version_keeps_it_and_stops_the_variant() {
    let mut w = world(50);
    w.run();
    w.feed(Input::Promote {
        to: Some("v1".into()),
    });
    assert_eq!(w.pools(), vec![("v1".into(), 100, 2)]);
    w.run();
    let f = w.assert_clean_finish();
    assert_eq!(
        (f.outcome, f.stable_version.as_deref()),
        (Outcome::Succeeded, Some("v1"))
    );
    assert_eq!(f.instances, vec!["web-3-1", "web-3-2"]);
}

#[test]
fn the_variant_cannot_win_before_it_is_ready() {
    let mut w = world(50);
    w.feed(Input::Promote {
        to: Some("v2".into()),
    });
    assert!(w.notes.last().unwrap().contains("still starting"));
    assert!(w.finish.is_none());
}

#[test]
fn abort_stops_the_variant() {
    let mut w = world(50);
    w.run();
    w.feed(Input::Abort {
        reason: "enough".into(),
    });
    assert_eq!(w.pools(), vec![("v1".into(), 100, 2)]);
    w.run();
    assert_eq!(w.assert_clean_finish().outcome, Outcome::Aborted);
}
