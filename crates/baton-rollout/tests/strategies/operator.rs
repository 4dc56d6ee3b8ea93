//! Inputs at odd moments: after Finish, for unknown or stable instances, repeated
//! operator actions, races between a stop and a failed start, same-version redeploys.

use crate::driver::*;
use baton_core::Millis;
use baton_core::Quantity::Count;
use baton_rollout::*;

fn canary_world() -> World {
    World::new(spec(canary(vec![weight(50), pause_for(30)]), 2, 2)).started()
}

#[test]
fn nothing_comes_out_after_finish() {
    let mut w = canary_world();
    w.run();
    w.assert_clean_finish();
    let inputs = [
        Input::Tick,
        Input::Abort {
            reason: "late".into(),
        },
        Input::Promote { to: None },
        Input::Rollback,
        Input::Ready {
            instance: "web-7-1".into(),
        },
        Input::Failed {
            instance: "web-7-1".into(),
            reason: "x".into(),
        },
    ];
    for input in inputs {
        assert!(w.rollout.handle(input, Millis(w.now)).is_empty());
    }
}

#[test]
fn unknown_instances_are_noted_and_ignored() {
    let mut w = canary_world();
    w.feed(Input::Ready {
        instance: "other-1".into(),
    });
    w.feed(Input::Stopped {
        instance: "other-1".into(),
    });
    w.feed(Input::Failed {
        instance: "other-1".into(),
        reason: "boom".into(),
    });
    assert!(w.notes.iter().any(|n| n.contains("other-1")));
    w.run();
    assert_eq!(w.assert_clean_finish().outcome, Outcome::Succeeded);
}

#[test]
fn repeated_operator_actions_are_answered_with_notes() {
    let mut w = canary_world();
    w.feed(Input::Resume);
    assert!(w.notes.last().unwrap().contains("not paused"));
    w.feed(Input::Pause);
    w.feed(Input::Pause);
    assert!(w.notes.last().unwrap().contains("already paused"));
    w.feed(Input::Rollback);
    assert!(w.notes.last().unwrap().contains("abort"));
    w.feed(Input::Promote {
        to: Some("v9".into()),
    });
    assert!(w.notes.last().unwrap().contains("--to v9"));
    assert_eq!(w.state(), State::Paused, "refused actions change nothing");
    w.feed(Input::Abort {
        reason: "done".into(),
    });
    w.feed(Input::Abort {
        reason: "again".into(),
    });
    assert!(w.notes.last().unwrap().contains("already finishing"));
    w.run();
    let f = w.assert_clean_finish();
    assert_eq!(
        (f.outcome, f.reason.as_deref()),
        (Outcome::Aborted, Some("done"))
    );
}

#[test]
fn promote_lifts_an_operator_pause() {
    let mut w = canary_world();
    w.feed(Input::Pause);
    w.feed(Input::Promote { to: None });
    assert_eq!(w.state(), State::Running);
    w.run();
    assert_eq!(w.assert_clean_finish().outcome, Outcome::Succeeded);
}

#[test]
fn a_stable_instance_failing_during_a_canary_is_noted_and_replaced_later() {
    let mut w = canary_world();
    w.step();
    w.fail("web-3-1");
    assert!(w
        .notes
        .iter()
        .any(|n| n.contains("stable instance web-3-1")));
    assert_eq!(w.state(), State::Running);
    w.run();
    let f = w.assert_clean_finish();
    assert_eq!((f.outcome, f.instances.len()), (Outcome::Succeeded, 2));
}

#[test]
fn a_start_error_after_a_stop_counts_as_stopped() {
    // Abort while green is starting: the Stop races the start error, and the controller
    // reports only the failure. The rollout must not wait for a Stopped forever.
    let mut w = World::new(spec(blue_green(true, 0, 30), 2, 2));
    w.faults.insert("web-7-1".into(), Fault::StartError);
    let mut w = w.started();
    w.feed(Input::Abort {
        reason: "changed my mind".into(),
    });
    w.run();
    assert_eq!(w.assert_clean_finish().outcome, Outcome::Aborted);
}

#[test]
fn an_instance_that_failed_while_starting_never_becomes_ready() {
    let mut w = World::new(spec(rolling(Count(1), Count(0), 0), 2, 2)).started();
    w.feed(Input::Failed {
        instance: "web-7-1".into(),
        reason: "startup timeout".into(),
    });
    w.feed(Input::Ready {
        instance: "web-7-1".into(),
    });
    assert!(w
        .routes
        .iter()
        .all(|r| r.pools.iter().all(|p| p.version == "v1")));
    w.run();
    assert_eq!(w.assert_clean_finish().outcome, Outcome::Failed);
}

#[test]
fn redeploying_the_same_version_shares_one_pool() {
    let mut s = spec(canary(vec![weight(50), pause_for(5)]), 2, 2);
    s.to_version = "v1".into();
    let mut w = World::new(s).started();
    w.run();
    for r in &w.routes {
        assert!(r.pools.len() <= 1, "one pool per version: {r:?}");
    }
    let f = w.assert_clean_finish();
    assert_eq!(
        f.instances,
        vec!["web-7-1", "web-7-2"],
        "the new instances replaced the old"
    );
}

#[test]
fn the_deployment_state_serializes_with_its_api_names() {
    let w = canary_world();
    let v = serde_json::to_value(w.rollout.status()).unwrap();
    assert_eq!(v["state"], "running");
    assert_eq!(v["total_steps"], 3);
}

#[test]
fn zero_replicas_still_end_with_one_finish() {
    let strategies = [
        StrategySpec::Recreate(RecreateSpec {}),
        blue_green(true, 0, 0),
        rolling(Count(1), Count(0), 0),
        canary(vec![weight(50)]),
        StrategySpec::AbTest(AbTestSpec::default()),
    ];
    for strategy in strategies {
        for from in [0, 2] {
            let mut w = World::new(spec(strategy.clone(), 0, from)).started();
            crate::every_step::drive(&mut w, None);
            w.assert_clean_finish();
        }
    }
}
