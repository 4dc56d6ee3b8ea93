//! `kill -9` of baton at each step of a canary and of a rolling
//! deployment, then restart: routes restored before the listener accepts, the deployment
//! resumes or rolls back, no orphan processes, history complete.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::time::{Duration, Instant};

fn crash_at_steps(strategy: &str, kill_after: &[Duration]) {
    let extra = "";
    let mut b = Baton::start(&app_config(strategy, 3, extra));
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let mut version = 1;
    for delay in kill_after {
        version += 1;
        let v = format!("v{version}");
        b.cli_ok(&["deploy", "web", &v, "--detach"], 0);
        std::thread::sleep(*delay);
        b.kill9();
        b.serve();
        let resp = proxy_get(&b, "/");
        assert!(
            resp.starts_with("HTTP/1.1 200"),
            "after restart: {resp}\n{}",
            tail(&b.serve_log(), 40)
        );
        let st = b.wait_status("deployment finished after restart", |st| {
            st["deployment"]["id"]
                .as_str()
                .is_some_and(|id| id.ends_with(&format!("-{version}")))
                && finished(st)
        });
        let stable = st["stable_version"].as_str().unwrap().to_string();
        let st = b.wait_status("instances settled", |st| {
            let inst = st["instances"].as_array().unwrap();
            inst.len() == 3
                && inst
                    .iter()
                    .all(|i| i["version"] == stable.as_str() && i["healthy"] == true)
        });
        // No orphans: every process started for this baton is an instance it knows.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pids = b.instance_pids();
            if pids.len() == st["instances"].as_array().unwrap().len() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "orphans: {} processes for {} instances",
                pids.len(),
                3
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let h = b.history();
        let ids: Vec<&str> = h
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap())
            .collect();
        assert!(
            ids.iter().any(|id| id.ends_with(&format!("-{version}"))),
            "history misses the deployment: {ids:?}"
        );
    }
}

#[test]
fn canary_survives_kill_9_at_each_step() {
    let steps = [100, 700, 1500, 2600].map(Duration::from_millis);
    crash_at_steps("canary", &steps);
}

#[test]
fn rolling_survives_kill_9_at_each_step() {
    let steps = [100, 500, 1000, 1500].map(Duration::from_millis);
    crash_at_steps("rolling", &steps);
}
