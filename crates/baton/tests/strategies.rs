//! Every strategy end to end through the real CLI and real processes
//! under continuous load — 0 failed requests and the expected final `status --json`.
#![allow(clippy::unwrap_used)]

mod common;

use baton_loadgen::{Load, LoadSpec, Profile};
use common::*;
use std::time::Duration;

/// Deploys v1, then v2 by `strategy` under load; checks zero failures and the end state.
fn deploy_under_load(strategy: &str, replicas: u32, profile: Profile) -> baton_loadgen::Report {
    let b = Baton::start(&app_config(strategy, replicas, ""));
    let (report, st) = deploy_v2_under_load(&b, strategy, replicas, profile);
    assert_eq!(st["app"], "web");
    assert_eq!(st["weights"]["v2"], 100);
    let inst = st["instances"].as_array().unwrap();
    assert!(
        inst.iter()
            .all(|i| i["healthy"] == true && i["address"].is_string()),
        "{st:#}"
    );
    let h = b.history();
    let last = h.as_array().unwrap().last().unwrap();
    assert_eq!(last["to_version"], "v2");
    assert_eq!(last["outcome"], "succeeded");
    report
}

#[test]
fn rolling_under_load_fails_no_request() {
    deploy_under_load("rolling", 3, Profile::KeepAlive);
}

#[test]
fn blue_green_under_load_fails_no_request() {
    deploy_under_load("blue_green", 2, Profile::NewConnection);
}

#[test]
fn canary_under_load_serves_both_versions_and_fails_no_request() {
    let r = deploy_under_load("canary", 2, Profile::Http2);
    assert!(r.by_version.get("v1").copied().unwrap_or(0) > 0, "{r:?}");
}

#[test]
fn recreate_holds_requests_instead_of_failing_them() {
    deploy_under_load("recreate", 2, Profile::KeepAlive);
}

#[test]
fn ab_test_splits_until_promoted() {
    let b = Baton::start(&app_config("ab_test", 1, ""));
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let rt = rt();
    let load = rt.block_on(async { Load::start(LoadSpec::new(b.proxy)) });
    b.cli_ok(&["deploy", "web", "v2", "--detach"], 0);
    b.wait_status("both variants routed", |st| {
        st["weights"]["v2"].as_u64().unwrap_or(0) > 0
            && st["weights"]["v1"].as_u64().unwrap_or(0) > 0
    });
    std::thread::sleep(Duration::from_millis(500));
    b.cli_ok(&["promote", "web", "--to", "v2"], 0);
    let st = b.wait_status("v2 promoted", |st| finished(st) && state(st) == "succeeded");
    let report = rt.block_on(load.stop());
    assert_eq!(report.failed, 0, "{report:?}");
    assert!(
        report.by_version.get("v1").copied().unwrap_or(0) > 0,
        "{report:?}"
    );
    assert!(
        report.by_version.get("v2").copied().unwrap_or(0) > 0,
        "{report:?}"
    );
    assert_eq!(st["stable_version"], "v2");
}

/// The threads of process `pid`, as `ps` names them.
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect()
}

#[test]
fn one_worker_serves_on_one_event_loop_of_its_own_and_deploys_failing_no_request() {
    // `workers = 1`: traffic is served by one thread with one event loop, as by one
    // nginx worker (the control plane runs beside it); a deployment under keep-alive
    // load still fails no request.
    let b = Baton::start_with(|_| "workers = 1".into(), &app_config("rolling", 2, ""));
    deploy_v2_under_load(&b, "rolling", 2, Profile::KeepAlive);
    let names = thread_names(b.server_pid().unwrap());
    let workers: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with("baton-worker"))
        .collect();
    assert_eq!(workers, ["baton-worker-0"], "{names:?}");
    // Two workers are a thread each, named so.
    let b = Baton::start_with(|_| "workers = 2".into(), &app_config("rolling", 2, ""));
    deploy_v2_under_load(&b, "rolling", 2, Profile::KeepAlive);
    let names = thread_names(b.server_pid().unwrap());
    for want in ["baton-worker-0", "baton-worker-1"] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
}
