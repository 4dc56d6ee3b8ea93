//! blue_green: green beside blue, switch at once, blue kept warm for an instant
//! rollback, then stopped.

use crate::driver::*;
use baton_core::Millis;
use baton_rollout::*;

fn bg(auto: bool, after: u64, delay: u64) -> World {
    World::new(spec(blue_green(auto, after, delay), 2, 2)).started()
}

fn blue_only(w: &World) -> bool {
    w.pools() == vec![("v1".to_string(), 100, 2)]
}

/// Runs until green is fully ready (the rollout then waits or times the switch).
fn until_green_ready(w: &mut World) {
    while w.rollout.status().step_index == 0 {
        assert!(blue_only(w), "blue keeps all traffic until the switch");
        assert!(w.step());
    }
}

#[test]
fn auto_promote_switches_after_the_delay_and_stops_blue_later() {
    let mut w = bg(true, 5, 30);
    assert_eq!(w.starts(), 2);
    until_green_ready(&mut w);
    let ready_at = w.now;
    assert_eq!(w.rollout.next_deadline(), Some(Millis(ready_at + 5_000)));
    w.step();
    assert_eq!(w.now, ready_at + 5_000);
    assert_eq!(
        w.pools(),
        vec![("v2".into(), 100, 2)],
        "switched all at once"
    );
    assert_eq!(w.state(), State::Succeeded);
    assert!(w.running("v1").len() == 2, "blue stays warm");
    assert_eq!(w.rollout.next_deadline(), Some(Millis(ready_at + 35_000)));
    w.step();
    let stops: Vec<_> = w
        .commands
        .iter()
        .filter(|c| matches!(c, Command::Stop { .. }))
        .collect();
    assert_eq!(stops.len(), 2);
    w.run();
    let f = w.assert_clean_finish();
    assert_eq!(
        (f.outcome, f.stable_version.as_deref()),
        (Outcome::Succeeded, Some("v2"))
    );
    assert_eq!(f.instances, vec!["web-7-1", "web-7-2"]);
}

#[test]
fn manual_promote_waits_in_paused_state() {
    let mut w = bg(false, 0, 30);
    w.run();
    let st = w.rollout.status();
    assert_eq!(st.state, State::Paused);
    assert!(st.reason.unwrap().contains("waiting for promote"));
    assert_eq!(w.rollout.next_deadline(), None);
    assert!(blue_only(&w));
    w.feed(Input::Resume);
    assert!(blue_only(&w), "resume does not switch; promote does");
    w.feed(Input::Promote { to: None });
    assert_eq!(w.pools(), vec![("v2".into(), 100, 2)]);
    w.run();
    assert_eq!(w.assert_clean_finish().outcome, Outcome::Succeeded);
}

#[test]
fn rollback_while_blue_is_warm_is_an_instant_flip() {
    let mut w = bg(true, 1, 60);
    until_green_ready(&mut w);
    assert!(!w.rollout.can_roll_back_instantly());
    w.step();
    assert_eq!(w.state(), State::Succeeded);
    assert!(w.rollout.can_roll_back_instantly());
    let starts = w.starts();
    w.feed(Input::Rollback);
    assert!(blue_only(&w), "traffic back on blue in the same step");
    assert!(!w.rollout.can_roll_back_instantly());
    assert_eq!(w.starts(), starts, "nothing to start");
    w.run();
    let f = w.assert_clean_finish();
    assert_eq!(f.outcome, Outcome::RolledBack);
    assert_eq!(f.stable_version.as_deref(), Some("v1"));
    assert_eq!(f.instances, vec!["web-3-1", "web-3-2"]);
}

#[test]
fn promote_while_warm_stops_blue_now() {
    let mut w = bg(true, 1, 600);
    until_green_ready(&mut w);
    w.step();
    let switched_at = w.now;
    w.feed(Input::Promote { to: None });
    w.run();
    assert_eq!(w.assert_clean_finish().outcome, Outcome::Succeeded);
    assert!(w.now < switched_at + 600_000);
}

#[test]
fn promote_while_green_starts_switches_as_soon_as_it_is_ready() {
    let mut w = bg(true, 600, 30);
    w.feed(Input::Promote { to: None });
    until_green_ready(&mut w);
    assert_eq!(w.pools(), vec![("v2".into(), 100, 2)]);
}

#[test]
fn abort_after_the_switch_is_refused_and_rollback_before_it_too() {
    let mut w = bg(false, 0, 30);
    w.run();
    w.feed(Input::Rollback);
    assert!(w.notes.last().unwrap().contains("abort"), "{:?}", w.notes);
    assert!(blue_only(&w));
    w.feed(Input::Promote { to: None });
    w.feed(Input::Abort {
        reason: "late".into(),
    });
    assert!(
        w.notes.last().unwrap().contains("rollback"),
        "{:?}",
        w.notes
    );
    assert_eq!(w.state(), State::Succeeded);
    w.feed(Input::Pause);
    assert_eq!(
        w.state(),
        State::Succeeded,
        "nothing to pause after the switch"
    );
}

#[test]
fn a_green_failure_after_the_switch_flips_back_to_blue() {
    let mut w = bg(true, 1, 60);
    until_green_ready(&mut w);
    w.step();
    w.fail("web-7-2");
    assert!(blue_only(&w));
    w.run();
    let f = w.assert_clean_finish();
    assert_eq!(f.outcome, Outcome::Failed);
    assert!(f.reason.as_ref().unwrap().contains("web-7-2"));
}

#[test]
fn pause_freezes_the_auto_promote_timer() {
    let mut w = bg(true, 10, 30);
    until_green_ready(&mut w);
    let ready_at = w.now;
    w.advance_to(ready_at + 4_000);
    w.feed(Input::Pause);
    assert_eq!(w.rollout.next_deadline(), None);
    w.advance_to(ready_at + 100_000);
    assert!(blue_only(&w));
    w.feed(Input::Resume);
    assert_eq!(
        w.rollout.next_deadline(),
        Some(Millis(ready_at + 106_000)),
        "6s were left"
    );
    w.step();
    assert_eq!(w.pools(), vec![("v2".into(), 100, 2)]);
}
