//! Every strategy, with a new-instance failure, an abort, a pause, and a store/reload
//! injected at every step of its happy path: each run must end with exactly one Finish
//! and the app served by exactly one version, as expected for when it was injected.

use crate::driver::*;
use baton_core::Quantity::{Count, Percent};
use baton_rollout::*;

pub struct Scenario {
    pub name: &'static str,
    pub spec: RolloutSpec,
    /// For rolling: (min routed, max running) = (replicas - unavailable, replicas + surge).
    pub bounds: Option<(u32, u32)>,
}

fn sc(name: &'static str, spec: RolloutSpec, bounds: Option<(u32, u32)>) -> Scenario {
    Scenario { name, spec, bounds }
}

pub fn scenarios() -> Vec<Scenario> {
    let recreate = StrategySpec::Recreate(RecreateSpec {});
    let ab = StrategySpec::AbTest(AbTestSpec::default());
    vec![
        sc("recreate", spec(recreate.clone(), 3, 3), None),
        sc("blue_green auto", spec(blue_green(true, 5, 30), 2, 2), None),
        sc(
            "blue_green manual",
            spec(blue_green(false, 0, 30), 2, 2),
            None,
        ),
        sc(
            "rolling surge 1",
            spec(rolling(Count(1), Count(0), 0), 3, 3),
            Some((3, 4)),
        ),
        sc(
            "rolling in-place",
            spec(rolling(Count(0), Percent(50), 0), 4, 4),
            Some((2, 4)),
        ),
        sc(
            "rolling batch pause",
            spec(rolling(Count(1), Count(0), 10), 4, 4),
            Some((4, 5)),
        ),
        sc(
            "rolling 25%/25%",
            spec(rolling(Percent(25), Percent(25), 0), 4, 4),
            Some((3, 5)),
        ),
        sc(
            "rolling 2/1 paused",
            spec(rolling(Count(2), Count(1), 5), 5, 5),
            Some((4, 7)),
        ),
        sc(
            "canary default",
            spec(StrategySpec::Canary(CanarySpec::default()), 4, 4),
            None,
        ),
        sc(
            "canary manual",
            spec(
                canary(vec![weight(20), pause_manual(), weight(60), pause_for(10)]),
                3,
                3,
            ),
            None,
        ),
        sc("ab_test", spec(ab.clone(), 2, 2), None),
        sc(
            "canary gated with baseline",
            RolloutSpec {
                gates: all_gates(),
                baseline: true,
                ..spec(
                    canary(vec![weight(20), pause_for(10), weight(60), pause_for(10)]),
                    3,
                    3,
                )
            },
            None,
        ),
        sc(
            "blue_green gated",
            RolloutSpec {
                gates: all_gates(),
                ..spec(blue_green(false, 0, 30), 2, 2)
            },
            None,
        ),
        sc(
            "ab_test gated",
            RolloutSpec {
                gates: all_gates(),
                ..spec(ab.clone(), 2, 2)
            },
            None,
        ),
        sc(
            "first deploy canary",
            first_spec(StrategySpec::Canary(CanarySpec::default()), 2),
            None,
        ),
        sc("first deploy recreate", first_spec(recreate, 2), None),
    ]
}

pub fn world(s: &Scenario) -> World {
    let mut w = World::new(s.spec.clone());
    w.bounds = s.bounds;
    w.exclusive = matches!(s.spec.strategy, StrategySpec::Recreate(_));
    w.started()
}

/// Runs until finished, playing the operator whenever the rollout waits for one; stops
/// after `max_steps` inputs if given.
pub fn drive(w: &mut World, max_steps: Option<usize>) {
    for _ in 0..10_000 {
        if w.finish.is_some() || max_steps.is_some_and(|m| w.steps() >= m) {
            return;
        }
        if !w.step() {
            let input = nudge(w);
            w.feed(input);
        }
    }
    panic!("did not finish; notes: {:?}", w.notes);
}

pub fn nudge(w: &World) -> Input {
    let status = w.rollout.status();
    if status
        .reason
        .as_deref()
        .is_some_and(|r| r.starts_with("paused by the operator"))
    {
        return Input::Resume;
    }
    match w.rollout.spec().strategy {
        StrategySpec::AbTest(_) => Input::Promote {
            to: Some("v2".into()),
        },
        _ => Input::Promote { to: None },
    }
}

/// The end state for `outcome`: one version serving with the expected count, nothing
/// else running, the last route that version only.
pub fn check_end(s: &Scenario, w: &World, outcome: Outcome, count: usize) {
    let f = w.assert_clean_finish();
    assert_eq!(
        f.outcome, outcome,
        "{}: {:?} notes {:?}",
        s.name, f, w.notes
    );
    let stable = match outcome {
        Outcome::Succeeded => Some("v2".to_string()),
        _ => s.spec.from_version.clone(),
    };
    assert_eq!(f.stable_version, stable, "{}", s.name);
    let count = if stable.is_none() { 0 } else { count };
    assert_eq!(f.instances.len(), count, "{}: {f:?}", s.name);
    let expected = match &stable {
        Some(v) if count > 0 => vec![(v.clone(), 100, count)],
        _ => vec![],
    };
    assert_eq!(w.pools(), expected, "{}: last route", s.name);
}

fn baseline(s: &Scenario) -> World {
    let mut w = world(s);
    drive(&mut w, None);
    check_end(s, &w, Outcome::Succeeded, s.spec.replicas as usize);
    w
}

/// The rollout's own verdict at this point: still undecided, or already switched /
/// finishing (too late for abort), and whether it is blue/green's warm phase.
fn decided(w: &World) -> (bool, bool) {
    let st = w.rollout.status();
    let decided = !matches!(st.state, State::Running | State::Paused);
    (decided, decided && st.step.starts_with("switched"))
}

#[test]
fn every_strategy_succeeds_on_the_happy_path() {
    for s in scenarios() {
        let w = baseline(&s);
        assert!(w.steps() >= 3, "{}", s.name);
        let last = w.routes.last().unwrap();
        assert!(
            last.rules.is_empty() && last.sticky.is_none(),
            "{}: final route is plain",
            s.name
        );
    }
}

#[test]
fn a_failing_new_instance_at_every_step_goes_back_to_stable() {
    for s in scenarios() {
        let total = baseline(&s).steps();
        for k in 1..=total {
            let mut w = world(&s);
            drive(&mut w, Some(k));
            let Some(victim) = w.live("v2").first().cloned() else {
                continue;
            };
            if w.finish.is_some() {
                continue;
            }
            w.bounds = s.bounds.map(|(lo, hi)| (lo.saturating_sub(1), hi));
            let (decided, warm) = decided(&w);
            w.fail(&victim);
            drive(&mut w, None);
            let replicas = s.spec.replicas as usize;
            if !decided || warm {
                check_end(&s, &w, Outcome::Failed, replicas);
                let reason = w.finish.as_ref().unwrap().reason.clone().unwrap();
                assert!(
                    reason.contains(&victim),
                    "{}: reason names the instance: {reason}",
                    s.name
                );
            } else {
                check_end(&s, &w, Outcome::Succeeded, replicas - 1);
            }
        }
    }
}

#[test]
fn abort_at_every_step_goes_back_to_stable() {
    for s in scenarios() {
        let total = baseline(&s).steps();
        for k in 1..=total {
            let mut w = world(&s);
            drive(&mut w, Some(k));
            if w.finish.is_some() {
                continue;
            }
            let (decided, _) = decided(&w);
            w.feed(Input::Abort {
                reason: "operator said so".into(),
            });
            drive(&mut w, None);
            let replicas = s.spec.replicas as usize;
            if decided {
                check_end(&s, &w, Outcome::Succeeded, replicas);
            } else {
                check_end(&s, &w, Outcome::Aborted, replicas);
                assert_eq!(
                    w.finish.as_ref().unwrap().reason.as_deref(),
                    Some("operator said so")
                );
            }
        }
    }
}

#[test]
fn pause_at_every_step_freezes_progress_until_resume() {
    for s in scenarios() {
        let base = baseline(&s);
        for k in 1..=base.steps() {
            let mut w = world(&s);
            drive(&mut w, Some(k));
            if w.finish.is_some() || decided(&w).0 {
                continue;
            }
            w.feed(Input::Pause);
            assert_eq!(w.state(), State::Paused, "{}", s.name);
            assert_eq!(
                w.rollout.next_deadline(),
                None,
                "{}: timers stop while paused",
                s.name
            );
            let before = w.commands.len();
            let later = w.now + 3_600_000;
            w.advance_to(later);
            let acted = w.commands[before..].iter().any(|c| {
                matches!(
                    c,
                    Command::Start { .. } | Command::Stop { .. } | Command::Finish(_)
                )
            });
            assert!(
                !acted,
                "{}: nothing starts or stops while paused: {:?}",
                s.name,
                &w.commands[before..]
            );
            w.feed(Input::Resume);
            drive(&mut w, None);
            check_end(&s, &w, Outcome::Succeeded, s.spec.replicas as usize);
            assert!(w.now >= later, "{}", s.name);
        }
    }
}

#[test]
fn resuming_from_stored_state_at_every_step_behaves_identically() {
    for s in scenarios() {
        let base = baseline(&s);
        for k in 0..=base.steps() {
            let mut w = world(&s);
            drive(&mut w, Some(k));
            let json = serde_json::to_string(&w.rollout).unwrap();
            let copy: Rollout = serde_json::from_str(&json).unwrap();
            assert_eq!(copy, w.rollout, "{}: step {k}", s.name);
            assert_eq!(copy.status(), w.rollout.status(), "{}: step {k}", s.name);
            w.rollout = copy;
            drive(&mut w, None);
            assert_eq!(w.commands, base.commands, "{}: resumed at step {k}", s.name);
            assert_eq!(w.inputs, base.inputs, "{}: resumed at step {k}", s.name);
        }
    }
}

#[test]
fn storing_and_reloading_before_every_input_changes_nothing() {
    for s in scenarios() {
        let base = baseline(&s);
        let mut w = World::new(s.spec.clone());
        w.roundtrip = true;
        let mut w = w.started();
        drive(&mut w, None);
        assert_eq!(w.commands, base.commands, "{}", s.name);
    }
}

#[test]
fn status_is_coherent_at_every_step() {
    for s in scenarios() {
        let base = baseline(&s);
        for k in 1..=base.steps() {
            let mut w = world(&s);
            drive(&mut w, Some(k));
            let st = w.rollout.status();
            assert!(
                st.step_index < st.total_steps.max(1) || st.total_steps == 0,
                "{}: {st:?}",
                s.name
            );
            assert!(!st.step.is_empty(), "{}", s.name);
            let labels = w.rollout.step_labels();
            assert_eq!(
                labels.len(),
                st.total_steps,
                "{}: one label per step: {labels:?} {st:?}",
                s.name
            );
            assert!(labels.iter().all(|l| !l.is_empty()), "{}", s.name);
            if !st.weights.is_empty() {
                assert_eq!(
                    st.weights.iter().map(|(_, w)| w).sum::<u32>(),
                    100,
                    "{}: {st:?}",
                    s.name
                );
            }
            if st.weights.len() == 2 {
                assert_eq!(st.weights[0].0, "v2", "{}: newest first: {st:?}", s.name);
            }
            for (id, v) in &st.instances {
                assert_eq!(&w.fakes[id].version, v, "{}", s.name);
            }
            if st.state == State::Paused {
                assert!(st.reason.is_some(), "{}: a pause says why", s.name);
            }
        }
    }
}
