//! Hooks in the simulated world: the release hook runs before any new instance, once
//! per deployment (again only after a restart during it, and told so), a failure changes
//! nothing; an irreversible deployment freezes instead of going back.

use super::*;
use crate::model::{HookRun, HookState};

const RELEASE: &str = r#"
[apps.web.hooks]
release = "./migrate"
"#;

const IRREVERSIBLE_CANARY: &str = r#"
[apps.web.hooks]
release = "./migrate"
reversible = false

[apps.web.analysis]
interval = "5s"
failure_limit = 1
max_error_rate = 0.01
min_requests = 10
"#;

fn served_with(strategy: &str, extra: &str) -> World {
    let mut w = World::new(config(strategy, extra));
    w.deploy("v1");
    w.settle();
    assert_eq!(w.core.record.stable_version.as_deref(), Some("v1"));
    w.hook_runs.clear();
    w
}

fn release(w: &World) -> Option<HookRun> {
    w.core
        .record
        .deployment
        .as_ref()
        .and_then(|d| d.release.clone())
}

/// Deploys v2 and answers every task but the release hook.
fn deploy_until_hook(w: &mut World) {
    let t = w.deploy("v2");
    assert!(
        matches!(w.replies.get(&t), Some(Ok(_))),
        "{:?}",
        w.replies.get(&t)
    );
    assert!(
        w.tasks.iter().all(|t| matches!(t, Task::Hook(..))),
        "nothing but the hook runs first: {:?}",
        w.tasks
    );
}

#[test]
fn a_failed_release_hook_ends_the_deployment_with_nothing_changed() {
    let mut w = served_with("rolling", RELEASE);
    let before_instances: Vec<String> = w.running.keys().cloned().collect();
    let before_routes = w.published.clone();
    deploy_until_hook(&mut w);
    assert_eq!(w.hook_runs.len(), 1);
    w.hook_output = vec!["ERROR 1054: Unknown column 'email'".into()];
    let i = w
        .tasks
        .iter()
        .position(|t| matches!(t, Task::Hook(..)))
        .expect("hook task");
    w.finish_task(i, false);
    w.settle();
    assert!(w.core.record.deployment.is_none());
    assert_eq!(w.core.record.stable_version.as_deref(), Some("v1"));
    assert_eq!(
        w.running.keys().cloned().collect::<Vec<_>>(),
        before_instances
    );
    assert_eq!(w.published, before_routes, "routes untouched");
    let last = w.history.last().expect("history");
    assert_eq!(last.outcome, Outcome::Failed);
    let reason = last.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("release hook failed (exit 3)") && reason.contains("Unknown column"),
        "{reason}"
    );
    assert_eq!(last.hooks.len(), 1);
    assert_eq!(last.hooks[0].state, HookState::Failed);
    assert_eq!(last.hooks[0].output, w.hook_output);
}

#[test]
fn a_release_hook_runs_once_before_any_new_instance() {
    let mut w = served_with("rolling", RELEASE);
    deploy_until_hook(&mut w);
    assert_eq!(release(&w).map(|r| r.state), Some(HookState::Running));
    // Ticks and health while it runs change nothing.
    w.tick(10_000);
    assert!(w.tasks.iter().all(|t| matches!(t, Task::Hook(..))));
    w.settle();
    assert_eq!(w.core.record.stable_version.as_deref(), Some("v2"));
    assert_eq!(
        w.hook_runs,
        vec![("web-2".to_string(), HookKind::Release, false)]
    );
    let last = w.history.last().expect("history");
    assert_eq!(last.hooks[0].state, HookState::Succeeded);
    assert_eq!(last.hooks[0].exit_code, Some(0));
}

#[test]
fn operator_requests_wait_for_the_release_hook() {
    let mut w = served_with("canary", RELEASE);
    deploy_until_hook(&mut w);
    let t = w.op(Op::Abort { force: false });
    assert!(
        matches!(w.replies.get(&t), Some(Err(e)) if e.contains("release hook")),
        "{:?}",
        w.replies.get(&t)
    );
}

#[test]
fn a_restart_during_the_release_hook_runs_it_again_once_and_says_so() {
    let mut w = served_with("rolling", RELEASE);
    deploy_until_hook(&mut w);
    w.restart();
    assert_eq!(
        w.hook_runs,
        vec![
            ("web-2".to_string(), HookKind::Release, false),
            ("web-2".to_string(), HookKind::Release, true),
        ]
    );
    assert_eq!(release(&w).map(|r| r.attempts), Some(2));
    w.settle();
    assert_eq!(w.core.record.stable_version.as_deref(), Some("v2"));
    assert_eq!(w.hook_runs.len(), 2);
}

#[test]
fn a_restart_after_the_release_hook_finished_does_not_run_it_again() {
    let mut w = served_with("rolling", RELEASE);
    deploy_until_hook(&mut w);
    let i = w
        .tasks
        .iter()
        .position(|t| matches!(t, Task::Hook(..)))
        .expect("hook task");
    w.finish_task(i, true);
    assert_eq!(release(&w).map(|r| r.state), Some(HookState::Succeeded));
    while !w.tasks.is_empty() {
        w.finish_task(0, true);
    }
    w.restart();
    w.settle();
    assert_eq!(w.core.record.stable_version.as_deref(), Some("v2"));
    assert_eq!(w.hook_runs.len(), 1, "{:?}", w.hook_runs);
}

/// Failing canary figures for `n` analysis rounds.
fn failing_round(w: &mut World, n: u64) {
    let d = w.core.record.deployment.as_ref().map(|d| d.id.clone());
    let Some(deployment) = d else { return };
    let counts = |requests: u64, errors: u64| {
        let mut by_class = [0; 6];
        by_class[2] = requests - errors;
        by_class[5] = errors;
        MetricsSnapshot {
            requests,
            by_class,
            ..MetricsSnapshot::default()
        }
    };
    let snapshots = [
        ("v1".to_string(), counts(1_000 * n, 0)),
        ("v2".to_string(), counts(1_000 * n, 500 * n)),
    ]
    .into_iter()
    .collect();
    w.send(Event::Sampled {
        deployment,
        snapshots,
    });
}

fn v2_weight(w: &World) -> u32 {
    w.core
        .published()
        .pools
        .iter()
        .filter(|p| p.version == "v2")
        .map(|p| p.weight)
        .sum()
}

#[test]
fn an_irreversible_canary_that_fails_the_judge_freezes_instead_of_going_back() {
    let mut w = served_with("canary", IRREVERSIBLE_CANARY);
    w.deploy("v2");
    w.drive(4);
    assert!(w
        .core
        .record
        .deployment
        .as_ref()
        .is_some_and(|d| d.irreversible));
    let share = v2_weight(&w);
    assert!(
        share > 0,
        "the canary has traffic: {:?}",
        w.core.published()
    );
    failing_round(&mut w, 0);
    failing_round(&mut w, 1);
    failing_round(&mut w, 2);
    w.drive(20);
    let d = w
        .core
        .record
        .deployment
        .clone()
        .expect("still deploying, frozen");
    let why = d.frozen.clone().expect("frozen");
    assert!(
        why.contains("analysis failed") && why.contains("irreversible"),
        "{why}"
    );
    assert_eq!(v2_weight(&w), share, "v2 keeps its share");
    assert!(
        w.running.values().any(|(h, _)| h.version == "v2"),
        "v2 still runs"
    );
    assert!(w.history.iter().all(|h| h.id != d.id), "not finished");
    // Going back needs --force; with it, traffic goes back.
    for op in [Op::Abort { force: false }, Op::Rollback { force: false }] {
        let t = w.op(op);
        assert!(
            matches!(w.replies.get(&t), Some(Err(e)) if e.contains("irreversible") && e.contains("--force")),
            "{:?}",
            w.replies.get(&t)
        );
    }
    let t = w.op(Op::Abort { force: true });
    assert!(matches!(w.replies.get(&t), Some(Ok(_))));
    w.settle();
    assert!(w.core.record.deployment.is_none());
    assert_eq!(w.core.record.stable_version.as_deref(), Some("v1"));
}

#[test]
fn a_finished_irreversible_deployment_needs_force_to_roll_back() {
    let mut w = served_with(
        "rolling",
        "[apps.web.hooks]\nrelease = \"./migrate\"\nreversible = false\n",
    );
    w.deploy("v2");
    w.settle();
    assert!(w.history.last().is_some_and(|h| h.irreversible));
    let t = w.op(Op::Rollback { force: false });
    assert!(matches!(w.replies.get(&t), Some(Err(e)) if e.contains("--force")));
    let t = w.op(Op::Rollback { force: true });
    assert!(
        matches!(w.replies.get(&t), Some(Ok(_))),
        "{:?}",
        w.replies.get(&t)
    );
    w.settle();
    assert_eq!(w.core.record.stable_version.as_deref(), Some("v1"));
}

#[test]
fn a_hook_printing_the_mark_makes_the_deployment_irreversible() {
    let mut w = served_with("rolling", RELEASE);
    w.hook_output = vec!["migrated".into(), "BATON_IRREVERSIBLE=1".into()];
    w.deploy("v2");
    w.settle();
    assert!(w.history.last().is_some_and(|h| h.irreversible));
}

// === the simulation, with a release hook ===

fn simulate_hooks(strategy: &str, extra: &str, seed: u64, steps: usize) -> (u32, u32) {
    let mut rng = Lcg(seed);
    let mut w = World::new(config(strategy, extra));
    w.deploy("v1");
    w.settle();
    for step in 0..steps {
        let what = act(&mut w, &mut rng);
        w.check(&format!(
            "{strategy} hooks seed {seed} step {step} ({what})"
        ));
        let mut first_runs = BTreeMap::new();
        for (d, hook, rerun) in &w.hook_runs {
            if *hook == HookKind::Release && !rerun {
                *first_runs.entry(d.clone()).or_insert(0) += 1;
            }
        }
        if let Some((d, n)) = first_runs.iter().find(|(_, n)| **n > 1) {
            panic!("{strategy} seed {seed} step {step}: release hook of {d} ran {n} times without being a re-run");
        }
    }
    let reruns = w.hook_runs.iter().filter(|r| r.2).count() as u32;
    (w.hook_runs.len() as u32, reruns)
}

#[test]
fn simulation_with_release_hooks() {
    let mut runs = 0;
    let mut reruns = 0;
    for (strategy, extra) in [
        ("rolling", RELEASE),
        ("canary", IRREVERSIBLE_CANARY),
        ("blue_green", RELEASE),
    ] {
        for seed in 0..4 {
            let (r, rr) = simulate_hooks(strategy, extra, 0x400c_0000 + seed, 1_000);
            runs += r;
            reruns += rr;
        }
    }
    assert!(runs >= 20, "only {runs} hook runs");
    assert!(reruns >= 1, "no restart ever hit a running hook");
}

// === post_switch and pre_stop ===

#[test]
fn a_failed_post_switch_hook_is_reported_or_goes_back_when_configured() {
    for (policy, back) in [("report", false), ("abort", true)] {
        let extra = format!(
            "[apps.web.hooks]\npost_switch = \"./warm-caches\"\npost_switch_failure = \"{policy}\"\n"
        );
        let mut w = served_with("rolling", &extra);
        w.deploy("v2");
        w.settle_until(|w| {
            w.tasks
                .iter()
                .any(|t| matches!(t, Task::Hook(_, HookKind::PostSwitch)))
        });
        assert_eq!(
            w.core.record.stable_version.as_deref(),
            Some("v2"),
            "it runs after the switch"
        );
        let i = w
            .tasks
            .iter()
            .position(|t| matches!(t, Task::Hook(..)))
            .expect("post_switch task");
        w.finish_task(i, false);
        w.settle();
        let want = if back { "v1" } else { "v2" };
        assert_eq!(
            w.core.record.stable_version.as_deref(),
            Some(want),
            "{policy}"
        );
    }
}

#[test]
fn pre_stop_runs_for_each_stopped_instance_with_its_port() {
    let mut w = served_with("rolling", "[apps.web.hooks]\npre_stop = \"./flush\"\n");
    let old: BTreeSet<String> = w.running.keys().cloned().collect();
    w.deploy("v2");
    w.settle();
    assert_eq!(w.core.record.stable_version.as_deref(), Some("v2"));
    let stopped: BTreeSet<String> = w.pre_stops.iter().map(|(h, _)| h.id.clone()).collect();
    assert_eq!(stopped, old, "one pre_stop per stopped instance");
    for (h, req) in &w.pre_stops {
        assert_eq!(req.port, Some(h.addr.port()));
        assert_eq!(req.name, format!("{}-pre-stop", h.id));
        assert_eq!(req.version, h.version);
        assert_eq!(req.command, "./flush");
    }
}
