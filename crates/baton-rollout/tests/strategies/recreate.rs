//! recreate: hold, stop all old, start new, route as ready; a failure brings the old
//! version back the same way (never two versions at once).

use crate::driver::*;
use baton_rollout::*;

fn recreate(replicas: u32) -> World {
    let mut w = World::new(spec(
        StrategySpec::Recreate(RecreateSpec {}),
        replicas,
        replicas,
    ));
    w.exclusive = true;
    w.started()
}

fn route_sizes(w: &World) -> Vec<Vec<(String, usize)>> {
    let it = w.routes.iter();
    it.map(|r| {
        r.pools
            .iter()
            .map(|p| (p.version.clone(), p.instances.len()))
            .collect()
    })
    .collect()
}

#[test]
fn stops_everything_while_holding_then_starts_the_new_version() {
    let mut w = recreate(2);
    assert_eq!(
        w.commands,
        vec![
            Command::Route(RoutePlan {
                hold: true,
                ..RoutePlan::default()
            }),
            Command::Stop {
                instance: "web-3-1".into()
            },
            Command::Stop {
                instance: "web-3-2".into()
            },
        ]
    );
    assert_eq!(w.rollout.status().step_index, 0);
    w.step();
    assert_eq!(w.starts(), 0, "nothing starts while an old instance runs");
    w.step();
    assert_eq!(w.starts(), 2);
    assert_eq!(w.running("v2"), vec!["web-7-1", "web-7-2"]);
    assert_eq!(w.rollout.status().step_index, 1);
    w.run();
    assert!(
        w.routes.iter().all(|r| r.hold),
        "recreate routes always hold"
    );
    let sizes = route_sizes(&w);
    assert_eq!(
        sizes,
        vec![vec![], vec![("v2".into(), 1)], vec![("v2".into(), 2)]],
        "each new instance is routed as it gets ready"
    );
    let f = w.assert_clean_finish();
    assert_eq!(f.outcome, Outcome::Succeeded);
    assert_eq!(f.instances, vec!["web-7-1", "web-7-2"]);
    assert_eq!(w.rollout.status().state, State::Succeeded);
}

#[test]
fn a_failing_new_instance_brings_the_old_version_back() {
    let mut w = World::new(spec(StrategySpec::Recreate(RecreateSpec {}), 2, 2));
    w.exclusive = true;
    w.faults.insert("web-7-2".into(), Fault::StartError);
    let mut w = w.started();
    w.run();
    let f = w.assert_clean_finish().clone();
    assert_eq!(f.outcome, Outcome::Failed);
    assert_eq!(f.stable_version.as_deref(), Some("v1"));
    assert!(f.reason.unwrap().contains("web-7-2"));
    assert_eq!(
        f.instances,
        vec!["web-7-3", "web-7-4"],
        "old version restarted with fresh ids"
    );
    assert_eq!(w.fakes["web-7-3"].version, "v1");
    assert_eq!(w.pools(), vec![("v1".into(), 100, 2)]);
    let last = w.routes.last().unwrap();
    assert!(last.hold);
}

#[test]
fn a_restore_instance_that_fails_is_noted_and_not_retried() {
    let mut w = World::new(spec(StrategySpec::Recreate(RecreateSpec {}), 2, 2));
    w.faults.insert("web-7-1".into(), Fault::NeverHealthy);
    w.faults.insert("web-7-3".into(), Fault::StartError);
    let mut w = w.started();
    w.run();
    let f = w.assert_clean_finish();
    assert_eq!(f.outcome, Outcome::Failed);
    assert_eq!(f.instances, vec!["web-7-4"]);
    assert!(
        w.notes
            .iter()
            .any(|n| n.contains("restoring instance web-7-3")),
        "{:?}",
        w.notes
    );
    assert_eq!(w.starts(), 4, "one attempt per missing instance");
}

#[test]
fn abort_while_stopping_restarts_the_old_version() {
    let mut w = recreate(3);
    w.feed(Input::Abort {
        reason: "wrong button".into(),
    });
    assert_eq!(w.state(), State::Aborted);
    w.run();
    let f = w.assert_clean_finish();
    assert_eq!(f.outcome, Outcome::Aborted);
    assert_eq!(f.instances.len(), 3);
    assert!(
        w.fakes.values().all(|f| f.version == "v1"),
        "v2 never started"
    );
}

#[test]
fn promote_has_nothing_to_skip() {
    let mut w = recreate(1);
    let before = w.commands.len();
    w.feed(Input::Promote { to: None });
    assert!(matches!(&w.commands[before..], [Command::Note { .. }]));
    w.run();
    assert_eq!(w.assert_clean_finish().outcome, Outcome::Succeeded);
}
