//! Deploys right after deploys: a blue/green deployment is over at its switch, so the
//! next `baton deploy` is accepted at once — the warm previous version is switched back
//! to instantly, any other version ends the warm window and rolls out — with no failed
//! request and `stable_version` always the version that serves.
#![allow(clippy::unwrap_used)]

mod common;

use baton_loadgen::{Load, LoadSpec, Profile};
use common::*;
use serde_json::Value;
use std::time::Duration;

fn config(scale_down_delay: &str) -> String {
    app_config("blue_green", 2, "").replace(
        "scale_down_delay = \"1s\"",
        &format!("scale_down_delay = \"{scale_down_delay}\""),
    )
}

fn mixed_load(b: &Baton) -> (tokio::runtime::Runtime, Load) {
    let rt = rt();
    let load = rt.block_on(async {
        Load::start_mixed(vec![
            LoadSpec {
                clients: 2,
                gap: Duration::from_millis(3),
                ..LoadSpec::with_profile(b.proxy, Profile::KeepAlive)
            },
            LoadSpec {
                clients: 2,
                gap: Duration::from_millis(5),
                ..LoadSpec::with_profile(b.proxy, Profile::NewConnection)
            },
            LoadSpec {
                clients: 1,
                gap: Duration::from_millis(3),
                ..LoadSpec::with_profile(b.proxy, Profile::Http2)
            },
        ])
    });
    (rt, load)
}

/// The version the weights send all traffic to, and the version called stable, agree.
fn assert_serving(st: &Value, version: &str) {
    assert_eq!(st["stable_version"], version, "{st:#}");
    let weights = st["weights"].as_object().unwrap();
    assert_eq!(weights.len(), 1, "one version serves: {st:#}");
    assert_eq!(weights.get(version), Some(&Value::from(100)), "{st:#}");
}

#[test]
fn twelve_blue_green_deploys_back_to_back_then_every_strategy_lose_nothing() {
    let b = Baton::start(&config("60s"));
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let (rt, load) = mixed_load(&b);
    std::thread::sleep(Duration::from_millis(300));
    let mut expected = vec!["v1".to_string()];
    for i in 0..12 {
        let v = if i % 2 == 0 { "v2" } else { "v1" };
        b.cli_ok(&["deploy", "web", v], 0);
        let st = b.status();
        assert_serving(&st, v);
        let prev = if v == "v1" { "v2" } else { "v1" };
        assert_eq!(st["previous_version"], prev, "{st:#}");
        assert_eq!(
            st["warm"]["version"], prev,
            "the previous version stays warm: {st:#}"
        );
        expected.push(v.to_string());
    }
    // After the 12th deploy v1 serves and v2 is warm: status says so in words too.
    let human = b.cli_ok(&["status", "web"], 0);
    assert!(
        human.contains("app web: stable v1 (previous v2)")
            && human.contains("warm: v2 (2 instances"),
        "{human}"
    );
    // Then one of each other strategy, each right after the one before.
    for (strategy, v) in [
        ("rolling", "v3"),
        ("canary", "v4"),
        ("recreate", "v5"),
        ("blue_green", "v6"),
    ] {
        b.cli_ok(&["deploy", "web", v, "--strategy", strategy], 0);
        assert_serving(&b.status(), v);
        expected.push(v.to_string());
    }
    std::thread::sleep(Duration::from_millis(300));
    let report = rt.block_on(load.stop());
    assert_eq!(
        report.failed,
        0,
        "failed requests: {report:?}\n{}",
        tail(&b.serve_log(), 60)
    );
    for v in ["v1", "v2", "v3", "v4", "v5", "v6"] {
        assert!(
            report.by_version.get(v).copied().unwrap_or(0) > 0,
            "{v} served nothing: {report:?}"
        );
    }
    let history = b.history();
    let entries = history.as_array().unwrap();
    let outcomes: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["to_version"].as_str().unwrap(),
                e["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    let want: Vec<(&str, &str)> = expected.iter().map(|v| (v.as_str(), "succeeded")).collect();
    assert_eq!(outcomes, want, "every deploy accepted and succeeded");
    // Only the first switch away from each version started anything: later deploys of
    // a warm version are instant switches back (no time spent).
    let instant = entries
        .iter()
        .filter(|e| e["duration_ms"] == 0 && e["strategy"] == "blue_green")
        .count();
    assert!(instant >= 10, "{history:#}");
    // Once the last deploy settled, v6 serves and only the warm v5 is left beside it.
    let st = b.wait_status("v6 with v5 warm only", |st| {
        st["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["version"] == "v6" || i["version"] == "v5")
    });
    assert_serving(&st, "v6");
}

#[test]
fn the_warm_window_ends_and_the_previous_version_is_stopped() {
    let b = Baton::start(&config("1s"));
    b.cli_ok(&["deploy", "web", "v1"], 0);
    b.cli_ok(&["deploy", "web", "v2"], 0);
    let st = b.status();
    assert_serving(&st, "v2");
    assert_eq!(st["warm"]["version"], "v1", "{st:#}");
    let st = b.wait_status("v1 stopped after the warm window", |st| {
        st["warm"].is_null()
            && st["instances"]
                .as_array()
                .unwrap()
                .iter()
                .all(|i| i["version"] == "v2")
    });
    assert_eq!(st["instances"].as_array().unwrap().len(), 2, "{st:#}");
    let h = b.history();
    let last = h.as_array().unwrap().last().unwrap();
    assert!(last["warm_until"].as_u64().unwrap() > last["finished_at"].as_u64().unwrap());
    // With the warm version gone, a rollback deploys it again (a full blue/green).
    b.cli_ok(&["rollback", "web"], 0);
    let st = b.wait_status("v1 deployed again", |st| {
        finished(st) && st["stable_version"] == "v1"
    });
    assert_serving(&st, "v1");
    assert_eq!(st["deployment"]["state"], "succeeded", "{st:#}");
}

#[test]
fn a_crash_of_the_new_version_while_the_old_is_warm_switches_back() {
    let b = Baton::start(&config("60s"));
    b.cli_ok(&["deploy", "web", "v1"], 0);
    b.cli_ok(&["deploy", "web", "v2"], 0);
    let st = b.status();
    assert_serving(&st, "v2");
    let green = st["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["version"] == "v2")
        .map(|i| i["id"].as_str().unwrap().to_string())
        .unwrap();
    let pid = instance_pid(&b, &green);
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let st = b.wait_status("switched back to v1", |st| st["stable_version"] == "v1");
    assert_serving(&st, "v1");
    let h = b.history();
    let last = h.as_array().unwrap().last().unwrap();
    assert_eq!(last["outcome"], "failed", "{h:#}");
    assert!(
        last["reason"]
            .as_str()
            .unwrap()
            .contains("switched back to the warm v1"),
        "{h:#}"
    );
}

/// The pid of the process baton started for instance `id`.
fn instance_pid(b: &Baton, id: &str) -> i32 {
    let needle = format!("BATON_INSTANCE={id}");
    b.instance_pids()
        .into_iter()
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|c| *c == 0).any(|kv| kv == needle.as_bytes()))
                .unwrap_or(false)
        })
        .unwrap_or_else(|| panic!("no process for {id}"))
}

#[test]
fn a_deploy_while_a_rollout_runs_is_still_refused() {
    let cfg = app_config("canary", 1, "").replace("pause = \"1s\"", "pause = \"30s\"");
    let b = Baton::start(&cfg);
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let mut child = b.cli_spawn(&["deploy", "web", "v2"]);
    b.wait_status("canary running", |st| state(st) == "running");
    let out = b.cli(&["deploy", "web", "v3"]);
    let _ = child.kill();
    let _ = child.wait();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in progress"), "{err}");
    assert_eq!(b.status()["deployment"]["version"], "v2");
}
