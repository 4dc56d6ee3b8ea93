//! Broken versions are rolled back by themselves, with 0 failed client
//! requests and the reason in `history`.
#![allow(clippy::unwrap_used)]

mod common;

use baton_loadgen::{Load, LoadSpec};
use common::*;
use std::time::Duration;

/// `served`: whether the broken version may have answered requests before it broke
/// (a crash after becoming healthy) — never with an error either way.
fn rolled_back(strategy: &str, version: &str, reason_has: &str, served: bool) {
    let b = Baton::start(&app_config(strategy, 2, ""));
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let rt = rt();
    let load = rt.block_on(async { Load::start(LoadSpec::new(b.proxy)) });
    let out = b.cli(&["deploy", "web", version]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "deploy of {version} must fail: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("failed"), "{err}");
    std::thread::sleep(Duration::from_millis(300));
    let report = rt.block_on(load.stop());
    assert_eq!(report.failed, 0, "{report:?}\n{}", tail(&b.serve_log(), 40));
    if !served {
        assert_eq!(report.by_version.get(version), None, "{report:?}");
    }
    let st = b.wait_status("broken instances gone", |st| {
        st["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["version"] == "v1")
    });
    assert_eq!(st["stable_version"], "v1");
    assert_eq!(state(&st), "failed");
    assert_eq!(st["instances"].as_array().unwrap().len(), 2);
    let h = b.history();
    let last = h.as_array().unwrap().last().unwrap();
    assert_eq!(last["outcome"], "failed");
    let reason = last["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains(reason_has),
        "reason {reason:?} should mention {reason_has:?}"
    );
}

#[test]
fn never_healthy_version_is_rolled_back() {
    rolled_back("blue_green", "bad", "startup_timeout", false);
}

#[test]
fn version_crashing_after_start_is_rolled_back() {
    rolled_back("canary", "crash", "exited", true);
}

#[test]
fn version_turning_unhealthy_mid_rollout_is_rolled_back() {
    let extra = "";
    let b = Baton::start(&app_config("canary", 2, extra));
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let rt = rt();
    let load = rt.block_on(async { Load::start(LoadSpec::new(b.proxy)) });
    b.cli_ok(&["deploy", "web", "v2", "--detach"], 0);
    let st = b.wait_status("canary healthy", |st| {
        st["instances"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["version"] == "v2" && i["healthy"] == true)
    });
    let canary = st["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["version"] == "v2")
        .unwrap();
    let addr = canary["address"].as_str().unwrap().to_string();
    // Make the canary instance fail its health checks, as a real app would mid-rollout.
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    use std::io::Write;
    write!(s, "POST /admin/health?fail=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    use std::io::Read;
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let st = b.wait_status("rolled back", |st| finished(st) && state(st) == "failed");
    let report = rt.block_on(load.stop());
    assert_eq!(report.failed, 0, "{report:?}\n{}", tail(&b.serve_log(), 60));
    assert_eq!(st["stable_version"], "v1");
    let h = b.history();
    let reason = h.as_array().unwrap().last().unwrap()["reason"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(reason.contains("unhealthy"), "{reason}");
}
