//! blue_green: green beside blue, switch at once and finish, blue handed over warm
//! (the controller keeps it for an instant switch back, then stops it).

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
fn auto_promote_switches_after_the_delay_and_finishes_with_blue_warm() {
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
    // The switch is the end of the deployment: nothing is stopped, blue is handed over.
    assert!(!w.commands.iter().any(|c| matches!(c, Command::Stop { .. })));
    assert_eq!(w.rollout.next_deadline(), None);
    let f = w.assert_clean_finish();
    assert_eq!(
        (f.outcome, f.stable_version.as_deref()),
        (Outcome::Succeeded, Some("v2"))
    );
    assert_eq!(f.instances, vec!["web-7-1", "web-7-2"]);
    assert_eq!(
        f.warm,
        Some(Warm {
            version: "v1".into(),
            instances: vec!["web-3-1".into(), "web-3-2".into()],
            keep_for_ms: 30_000,
        })
    );
}

#[test]
fn without_a_scale_down_delay_blue_is_stopped_before_the_finish() {
    let mut w = bg(true, 0, 0);
    w.run();
    let stops = w
        .commands
        .iter()
        .filter(|c| matches!(c, Command::Stop { .. }))
        .count();
    assert_eq!(stops, 2);
    let f = w.assert_clean_finish();
    assert_eq!(f.outcome, Outcome::Succeeded);
    assert_eq!(f.warm, None);
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
fn a_green_failure_before_the_switch_keeps_blue_serving() {
    let mut w = bg(false, 0, 60);
    until_green_ready(&mut w);
    w.fail("web-7-2");
    assert!(blue_only(&w));
    w.run();
    let f = w.assert_clean_finish();
    assert_eq!(f.outcome, Outcome::Failed);
    assert!(f.reason.as_ref().unwrap().contains("web-7-2"));
    assert_eq!(f.warm, None);
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
