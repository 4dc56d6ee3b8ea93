//! First deploys (nothing serving yet) and deploys whose previous version has no
//! running instance left: start the new version and route it as it gets ready.

use crate::driver::*;
use baton_core::Quantity::Count;
use baton_rollout::*;

fn strategies() -> Vec<StrategySpec> {
    vec![
        StrategySpec::Recreate(RecreateSpec {}),
        blue_green(false, 0, 30),
        rolling(Count(1), Count(0), 10),
        StrategySpec::Canary(CanarySpec::default()),
        StrategySpec::AbTest(AbTestSpec::default()),
    ]
}

#[test]
fn every_strategy_starts_all_and_routes_each_as_it_gets_ready() {
    for strategy in strategies() {
        let recreate = matches!(strategy, StrategySpec::Recreate(_));
        let mut w = World::new(first_spec(strategy, 3)).started();
        assert_eq!(w.starts(), 3);
        w.run();
        let sizes: Vec<usize> = w
            .routes
            .iter()
            .map(|r| r.pools.iter().map(|p| p.instances.len()).sum())
            .collect();
        assert_eq!(sizes, vec![0, 1, 2, 3]);
        assert!(
            w.routes.iter().all(|r| r.hold == recreate),
            "only recreate holds"
        );
        let f = w.assert_clean_finish();
        assert_eq!(
            (f.outcome, f.stable_version.as_deref()),
            (Outcome::Succeeded, Some("v2"))
        );
        assert_eq!(f.instances, vec!["web-7-1", "web-7-2", "web-7-3"]);
    }
}

#[test]
fn a_failure_stops_what_was_started_and_leaves_nothing() {
    for strategy in strategies() {
        let mut w = World::new(first_spec(strategy, 3));
        w.faults.insert("web-7-3".into(), Fault::NeverHealthy);
        let mut w = w.started();
        w.run();
        let f = w.assert_clean_finish();
        assert_eq!(f.outcome, Outcome::Failed);
        assert_eq!(f.stable_version, None);
        assert!(f.instances.is_empty());
        assert!(w.pools().is_empty(), "nothing to route");
        assert_eq!(w.starts(), 3, "no restore on a first deploy");
    }
}

#[test]
fn with_no_old_instance_left_a_failure_restores_the_old_version() {
    let mut w = World::new(spec(StrategySpec::Canary(CanarySpec::default()), 2, 0));
    w.faults.insert("web-7-2".into(), Fault::StartError);
    let mut w = w.started();
    assert!(
        w.notes[0].contains("no running instance of v1"),
        "{:?}",
        w.notes
    );
    w.run();
    let f = w.assert_clean_finish();
    assert_eq!(f.outcome, Outcome::Failed);
    assert_eq!(f.stable_version.as_deref(), Some("v1"));
    assert_eq!(f.instances, vec!["web-7-3", "web-7-4"]);
}

#[test]
fn abort_of_a_first_deploy_leaves_nothing_running() {
    let mut w = World::new(first_spec(StrategySpec::Canary(CanarySpec::default()), 2)).started();
    w.step();
    w.feed(Input::Abort {
        reason: "no".into(),
    });
    w.run();
    let f = w.assert_clean_finish();
    assert_eq!(
        (f.outcome, f.stable_version.clone()),
        (Outcome::Aborted, None)
    );
}
