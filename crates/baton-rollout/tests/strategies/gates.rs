//! External gates (the machine waits at `Command::Gate` for `Input::GateResult`) and the
//! canary's fair baseline.

use crate::driver::*;
use baton_rollout::*;

fn gated(strategy: StrategySpec, gates: Vec<Gate>) -> World {
    World::new(RolloutSpec {
        gates,
        ..spec(strategy, 2, 2)
    })
}

fn two_steps() -> StrategySpec {
    canary(vec![weight(10), pause_for(10), weight(50), pause_for(10)])
}

#[test]
fn without_gates_nothing_is_asked() {
    let mut w = World::new(spec(two_steps(), 2, 2)).started();
    w.run();
    assert!(w.gates_asked.is_empty());
    assert_eq!(w.assert_clean_finish().outcome, Outcome::Succeeded);
}

#[test]
fn every_configured_gate_is_asked_once_in_order() {
    let mut w = gated(two_steps(), all_gates()).started();
    w.run();
    assert_eq!(
        w.gates_asked,
        vec![
            (Gate::PreRollout, None, None),
            (Gate::Step, Some(0), Some(10)),
            (Gate::Step, Some(2), Some(50)),
            (Gate::PrePromote, None, Some(100)),
        ]
    );
    assert_eq!(w.assert_clean_finish().outcome, Outcome::Succeeded);
}

#[test]
fn a_refused_pre_rollout_changes_nothing() {
    let mut w = gated(two_steps(), all_gates());
    w.gate_fail
        .insert(Gate::PreRollout, "http://hook/ answered 500".into());
    let mut w = w.started();
    let st = w.rollout.status();
    assert_eq!(st.state, State::Running);
    assert_eq!(
        st.reason.as_deref(),
        Some("waiting for the pre_rollout gate")
    );
    assert_eq!(w.starts(), 0, "nothing starts before the gate answers");
    w.run();
    let f = w.assert_clean_finish();
    assert_eq!(f.outcome, Outcome::Failed);
    assert!(f.reason.as_ref().unwrap().contains("answered 500"));
    assert_eq!(w.starts(), 0);
    assert_eq!(w.pools(), vec![("v1".into(), 100, 2)]);
}

#[test]
fn a_refused_step_gate_reverts_before_that_weight_applies() {
    let mut w = gated(two_steps(), vec![Gate::Step]);
    w.gate_fail.insert(Gate::Step, "status 500".into());
    let mut w = w.started();
    w.run();
    let f = w.assert_clean_finish();
    assert_eq!(f.outcome, Outcome::Failed);
    assert_eq!(
        f.reason.as_deref(),
        Some("step gate (step 1) failed: status 500")
    );
    assert_eq!(
        w.starts(),
        0,
        "the step's instances start only after the gate"
    );
    assert!(w.routes.iter().all(|r| r.pools.len() == 1));
}

#[test]
fn a_refused_pre_promote_keeps_the_stable_version() {
    for strategy in [
        two_steps(),
        blue_green(true, 0, 30),
        StrategySpec::AbTest(AbTestSpec::default()),
    ] {
        let name = strategy.name();
        let mut w = gated(strategy, vec![Gate::PrePromote]);
        w.gate_fail.insert(Gate::PrePromote, "nope".into());
        let mut w = w.started();
        w.run();
        if w.finish.is_none() {
            w.feed(Input::Promote {
                to: Some("v2".into()),
            });
            w.run();
        }
        let f = w.assert_clean_finish();
        assert_eq!(f.outcome, Outcome::Failed, "{name}");
        assert_eq!(f.stable_version.as_deref(), Some("v1"), "{name}");
        assert_eq!(w.gates_asked, vec![(Gate::PrePromote, None, Some(100))]);
        assert!(
            w.routes
                .iter()
                .all(|r| r.pools.iter().all(|p| p.weight < 100 || p.version == "v1")),
            "{name}: v2 never got everything: {:?}",
            w.routes
        );
    }
}

#[test]
fn the_machine_waits_at_a_gate_even_past_its_timers() {
    let mut w = gated(two_steps(), vec![Gate::PrePromote]);
    w.gate_delay = 3_600_000;
    let mut w = w.started();
    w.advance_to(T0 + 600_000);
    assert!(w.finish.is_none());
    assert_eq!(
        w.rollout.pending_gate(),
        Some((Gate::PrePromote, None, Some(100)))
    );
    assert_eq!(
        w.pools()[0],
        ("v2".into(), 50, 1),
        "held at the last weight"
    );
    w.run();
    assert_eq!(w.assert_clean_finish().outcome, Outcome::Succeeded);
}

#[test]
fn a_stale_or_unasked_answer_is_ignored() {
    let mut w = gated(two_steps(), vec![Gate::PrePromote]).started();
    w.feed(Input::GateResult {
        gate: Gate::PrePromote,
        step: None,
        ok: false,
        reason: Some("early".into()),
    });
    assert!(w.notes.iter().any(|n| n.contains("not waiting at it")));
    w.run();
    assert_eq!(w.assert_clean_finish().outcome, Outcome::Succeeded);
}

#[test]
fn abort_while_waiting_at_a_gate_goes_back_and_ignores_the_late_answer() {
    let mut w = gated(two_steps(), vec![Gate::Step]);
    w.gate_delay = 60_000;
    let mut w = w.started();
    w.feed(Input::Abort {
        reason: "operator".into(),
    });
    assert_eq!(w.rollout.pending_gate(), None);
    w.run();
    assert_eq!(w.assert_clean_finish().outcome, Outcome::Aborted);
}

#[test]
fn a_pending_gate_survives_store_and_reload() {
    let mut w = gated(two_steps(), all_gates());
    w.roundtrip = true;
    let mut w = w.started();
    let json = serde_json::to_string(&w.rollout).unwrap();
    let back: Rollout = serde_json::from_str(&json).unwrap();
    assert_eq!(back.pending_gate(), Some((Gate::PreRollout, None, None)));
    w.run();
    assert_eq!(w.assert_clean_finish().outcome, Outcome::Succeeded);
}

#[test]
fn a_rollout_stored_before_gates_existed_loads() {
    let w = World::new(spec(two_steps(), 2, 2)).started();
    let mut json: serde_json::Value = serde_json::to_value(&w.rollout).unwrap();
    let spec = json["spec"].as_object_mut().unwrap();
    spec.remove("gates");
    spec.remove("baseline");
    let book = json["book"].as_object_mut().unwrap();
    book.remove("gates");
    book.remove("gate_pending");
    book.remove("gates_passed");
    let back: Rollout = serde_json::from_value(json).unwrap();
    assert_eq!(back, w.rollout);
}

// --- the fair baseline ---

fn with_baseline(steps: Vec<CanaryStep>, replicas: u32) -> World {
    World::new(RolloutSpec {
        baseline: true,
        ..spec(canary(steps), replicas, replicas)
    })
    .started()
}

#[test]
fn the_baseline_gets_the_canarys_share_as_its_own_pool() {
    let mut w = with_baseline(
        vec![weight(10), pause_for(10), weight(70), pause_for(10)],
        4,
    );
    let mut seen = Vec::new();
    while w.finish.is_none() && w.step() {
        if seen.last() != Some(&w.pools()) {
            seen.push(w.pools());
        }
    }
    let b = baseline_label("v1").unwrap();
    assert_eq!(b, "v1.baseline");
    assert!(seen.contains(&vec![
        ("v2".into(), 10, 1),
        (b.clone(), 10, 1),
        ("v1".into(), 80, 4)
    ]));
    assert!(
        seen.contains(&vec![
            ("v2".into(), 70, 3),
            (b.clone(), 30, 1),
            ("v1".into(), 0, 4)
        ]),
        "above 50% the baseline gets what the canary leaves: {seen:?}"
    );
    assert!(
        !seen.iter().any(|p| p.iter().any(|x| x.0 == "v2")
            && !p.iter().any(|x| x.0 == b)
            && p.len() == 2
            && p[0].1 < 100),
        "the canary never gets weight without its baseline: {seen:?}"
    );
    let f = w.assert_clean_finish();
    assert_eq!(f.outcome, Outcome::Succeeded);
    assert_eq!(w.starts(), 5, "4 canaries and 1 baseline");
    assert_eq!(w.pools(), vec![("v2".into(), 100, 4)]);
}

#[test]
fn the_baseline_is_stopped_by_a_failure_too() {
    let mut w = with_baseline(vec![weight(25), pause_for(600)], 2);
    w.advance_to(T0 + 60_000);
    assert_eq!(
        w.rollout.status().instances.len(),
        4,
        "2 stable, 1 canary, 1 baseline"
    );
    w.feed(Input::Verdict(Verdict::Fail {
        reason: "p99 up".into(),
    }));
    w.run();
    let f = w.assert_clean_finish();
    assert_eq!(f.outcome, Outcome::Failed);
    assert_eq!(f.instances, vec!["web-3-1", "web-3-2"]);
}

#[test]
fn a_failed_baseline_is_not_replaced_and_the_canary_goes_on() {
    let mut w = World::new(RolloutSpec {
        baseline: true,
        ..spec(canary(vec![weight(25), pause_for(10)]), 2, 2)
    });
    // Instance 1 is the canary, 2 the baseline.
    w.faults.insert("web-7-2".into(), Fault::NeverHealthy);
    let mut w = w.started();
    w.run();
    assert!(w
        .notes
        .iter()
        .any(|n| n.contains("baseline instance web-7-2 failed")));
    assert_eq!(w.assert_clean_finish().outcome, Outcome::Succeeded);
    assert_eq!(w.starts(), 3);
}
