//! On the real Docker Engine: strategies under load with 0 failed
//! requests, broken images rolled back, `kill -9` mid-rollout without leaked containers,
//! and clear errors that change nothing. Images are `FROM scratch` around the statically
//! linked sample app, built locally once. Every test needs a reachable engine: without
//! one it is reported as skipped, and fails in CI (see common/prerequisite.rs).
#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/docker.rs"]
mod docker_common;
#[path = "common/prerequisite.rs"]
mod prerequisite;

use baton_loadgen::{Load, LoadSpec, Profile};
use common::*;
use docker_common::*;
use prerequisite::{run, tests, Test, DOCKER_ENGINE};
use std::time::{Duration, Instant};

fn main() {
    run(tests![
        docker_blue_green_under_load_fails_no_request[&DOCKER_ENGINE],
        docker_rolling_under_load_fails_no_request[&DOCKER_ENGINE],
        docker_canary_under_load_fails_no_request[&DOCKER_ENGINE],
        docker_recreate_holds_requests_instead_of_failing_them[&DOCKER_ENGINE],
        docker_ab_test_splits_until_promoted[&DOCKER_ENGINE],
        docker_broken_images_are_rolled_back[&DOCKER_ENGINE],
        docker_kill_9_mid_rollout_recovers_without_leaks[&DOCKER_ENGINE],
        docker_errors_are_clear_and_change_nothing[&DOCKER_ENGINE],
        docker_wait_healthcheck_follows_the_images_healthcheck[&DOCKER_ENGINE],
        docker_network_reaches_containers_at_their_address[&DOCKER_ENGINE],
    ]);
}

/// A baton running one docker app, and the guard that removes its containers afterwards
/// (declared first, so it drops after baton has stopped).
fn start(strategy: &str, replicas: u32, extra: &str) -> (ContainerGuard, Baton) {
    ensure_images();
    let b = Baton::start(&docker_app(strategy, replicas, &port_range(), extra));
    (ContainerGuard(b.store_path()), b)
}

/// The containers of this baton are exactly its instances (eventually: removal of
/// stopped ones is asynchronous).
fn assert_no_leaks(b: &Baton) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = b.status();
        let mut want: Vec<String> = st["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect();
        let mut have: Vec<String> = containers_of(&b.store_path())
            .into_iter()
            .map(|(_, i)| i)
            .collect();
        want.sort();
        have.sort();
        if want == have {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "containers {have:?} are not the instances {want:?}\n{}",
            tail(&b.serve_log(), 40)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn deploy_under_load(strategy: &str, replicas: u32, profile: Profile) {
    let (_guard, b) = start(strategy, replicas, "");
    let (report, _) = deploy_v2_under_load(&b, strategy, replicas, profile);
    assert_no_leaks(&b);
    // `baton logs` reads the containers' output through the Engine API.
    let logs = b.cli_ok(&["logs", "web"], 0);
    assert!(!logs.trim().is_empty(), "no container logs");
    eprintln!("{strategy} on docker: {report:?}");
}

fn docker_blue_green_under_load_fails_no_request() {
    deploy_under_load("blue_green", 2, Profile::NewConnection);
}

fn docker_rolling_under_load_fails_no_request() {
    deploy_under_load("rolling", 2, Profile::KeepAlive);
}

fn docker_canary_under_load_fails_no_request() {
    deploy_under_load("canary", 2, Profile::Http2);
}

fn docker_recreate_holds_requests_instead_of_failing_them() {
    deploy_under_load("recreate", 2, Profile::KeepAlive);
}

/// An A/B experiment between two images: both variants serve until one is promoted, and
/// the loser's containers are removed.
fn docker_ab_test_splits_until_promoted() {
    let (_guard, b) = start("ab_test", 1, "");
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
    let st = b.wait_status("v2 promoted", |st| {
        state(st) == "succeeded"
            && st["instances"]
                .as_array()
                .unwrap()
                .iter()
                .all(|i| i["version"] == "v2")
    });
    let report = rt.block_on(load.stop());
    assert_eq!(report.failed, 0, "{report:?}\n{}", tail(&b.serve_log(), 40));
    for v in ["v1", "v2"] {
        assert!(
            report.by_version.get(v).copied().unwrap_or(0) > 0,
            "{v} served nothing: {report:?}"
        );
    }
    assert_eq!(st["stable_version"], "v2");
    assert_no_leaks(&b);
}

/// A container that exits at start and an image whose health never passes: both rolled
/// back by themselves, with 0 failed requests, the reason in history, nothing leaked.
fn docker_broken_images_are_rolled_back() {
    let (_guard, b) = start("blue_green", 2, "");
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let rt = rt();
    for (version, reason) in [("nobind", "exit"), ("sick", "startup_timeout")] {
        let load = rt.block_on(async { Load::start(LoadSpec::new(b.proxy)) });
        let out = b.cli(&["deploy", "web", version]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "deploy of {version} must fail: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(300));
        let report = rt.block_on(load.stop());
        assert_eq!(
            report.failed,
            0,
            "{version}: {report:?}\n{}",
            tail(&b.serve_log(), 40)
        );
        assert_eq!(report.by_version.get(version), None, "{report:?}");
        let st = b.wait_status("broken containers gone", |st| {
            st["instances"]
                .as_array()
                .unwrap()
                .iter()
                .all(|i| i["version"] == "v1")
        });
        assert_eq!(st["stable_version"], "v1");
        assert_eq!(state(&st), "failed");
        let h = b.history();
        let last = h.as_array().unwrap().last().unwrap();
        assert_eq!(last["outcome"], "failed");
        let why = last["reason"].as_str().unwrap_or("");
        assert!(
            why.contains(reason),
            "{version}: reason {why:?} should mention {reason:?}"
        );
        assert_no_leaks(&b);
    }
}

/// `kill -9` of baton in the middle of a rolling deployment of containers, then restart:
/// it serves at once, the deployment ends (resumed or rolled back), and the engine holds
/// exactly the instances baton knows — none leaked.
fn docker_kill_9_mid_rollout_recovers_without_leaks() {
    // A pause between batches keeps the rollout going long enough to be cut short.
    let (_guard, mut b) = start("rolling", 2, "[apps.web.rolling]\nbatch_pause = \"1s\"\n");
    b.cli_ok(&["deploy", "web", "v1"], 0);
    for (version, delay) in [("v2", 300), ("v3", 1300)] {
        b.cli_ok(&["deploy", "web", version, "--detach"], 0);
        std::thread::sleep(Duration::from_millis(delay));
        let at_kill = b.status();
        b.kill9();
        b.serve();
        let st = b.wait_status("deployment finished after restart", |st| {
            st["deployment"]["version"] == version && finished(st)
        });
        let stable = st["stable_version"].as_str().unwrap().to_string();
        b.wait_status("instances settled", |st| {
            let inst = st["instances"].as_array().unwrap();
            inst.len() == 2
                && inst
                    .iter()
                    .all(|i| i["version"] == stable.as_str() && i["healthy"] == true)
        });
        assert_no_leaks(&b);
        eprintln!(
            "kill -9 after {delay}ms deploying {version} (step {}, {} containers): {}",
            at_kill["deployment"]["step"],
            at_kill["instances"].as_array().map_or(0, Vec::len),
            state(&st)
        );
    }
}

/// A missing image, an unreachable engine, no free port and an invalid memory limit:
/// each a clear error, with the app's state and the engine's containers unchanged.
fn docker_errors_are_clear_and_change_nothing() {
    let (_guard, b) = start("rolling", 1, "");
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let before = b.status();
    let containers = containers_of(&b.store_path());

    // Missing image: refused before anything is touched.
    let out = b.cli(&["deploy", "web", "v404"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(
            "image baton-test-sample:v404 is not present on this engine; build or pull it first"
        ),
        "{err}"
    );
    let after = b.status();
    assert_eq!(after["stable_version"], before["stable_version"]);
    assert_eq!(after["instances"], before["instances"]);
    assert_eq!(after["deployment"]["id"], before["deployment"]["id"]);
    assert_eq!(containers_of(&b.store_path()), containers);

    // Invalid memory limit: the config is refused with its line, before any container.
    std::fs::write(
        b.dir.path().join("bad.toml"),
        docker_app("rolling", 1, "30000-30099", "memory = \"12 parsecs\""),
    )
    .unwrap();
    let out = std::process::Command::new(BATON)
        .args(["validate", "-c"])
        .arg(b.dir.path().join("bad.toml"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("bad.toml:10") && err.contains("12 parsecs"),
        "{err}"
    );

    // No free port in the range: the deployment is refused before it starts.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (_guard2, b2) = {
        ensure_images();
        let b2 = Baton::start(&docker_app("rolling", 1, &format!("{port}-{port}"), ""));
        (ContainerGuard(b2.store_path()), b2)
    };
    let out = b2.cli(&["deploy", "web", "v1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("no free port in {port}-{port}")),
        "{err}"
    );
    assert!(b2.status()["stable_version"].is_null(), "{}", b2.status());
    assert!(containers_of(&b2.store_path()).is_empty());
    drop(taken);

    // Unreachable engine: `baton serve` refuses to start, naming the socket and the fix.
    let dir = b.dir.path().join("unreachable");
    std::fs::create_dir_all(&dir).unwrap();
    let proxy_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.join("baton.toml");
    std::fs::write(
        &config,
        format!(
            "[proxy]\nlisten = [\"127.0.0.1:{proxy_port}\"]\n\n[admin]\nlisten = \"unix:{d}/baton.sock\"\n\n\
             [store]\npath = \"{d}/state\"\n\n{app}",
            d = dir.display(),
            app = docker_app("rolling", 1, "30000-30099", "")
        ),
    )
    .unwrap();
    let out = std::process::Command::new("timeout")
        .arg("30")
        .arg(BATON)
        .args(["serve", "-c"])
        .arg(&config)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("cannot reach the Docker Engine at unix:///nonexistent/docker.sock")
            && err.contains("DOCKER_HOST"),
        "{err}"
    );
    assert_eq!(containers_of(&b.store_path()), containers);
}

/// `wait_healthcheck = true`: an image whose own HEALTHCHECK passes is deployed; one whose
/// HEALTHCHECK never passes is rolled back, the reason naming it.
fn docker_wait_healthcheck_follows_the_images_healthcheck() {
    let (_guard, b) = start("rolling", 1, "wait_healthcheck = true");
    b.cli_ok(&["deploy", "web", "hcok"], 0);
    let out = b.cli(&["deploy", "web", "hcbad"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st = b.wait_status("hcbad rolled back", |st| {
        finished(st)
            && st["instances"]
                .as_array()
                .unwrap()
                .iter()
                .all(|i| i["version"] == "hcok")
    });
    assert_eq!(st["stable_version"], "hcok");
    let h = b.history();
    let why = h.as_array().unwrap().last().unwrap()["reason"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(why.contains("HEALTHCHECK"), "{why}");
    assert_no_leaks(&b);
}

/// `network = "..."`: containers are attached to that network and reached at their
/// address on it (no port published on loopback); traffic flows through the proxy.
fn docker_network_reaches_containers_at_their_address() {
    let net = format!("baton-test-net-{}", std::process::id());
    let _net = NetworkGuard::create(&net);
    let (_guard, b) = start("blue_green", 1, &format!("network = \"{net}\""));
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let rt = rt();
    let load = rt.block_on(async { Load::start(LoadSpec::new(b.proxy)) });
    b.cli_ok(&["deploy", "web", "v2"], 0);
    // Blue/green switches and drains in milliseconds when nothing is in flight, so the
    // load keeps going after the deploy returns: what it sends now must reach v2.
    std::thread::sleep(Duration::from_millis(500));
    let report = rt.block_on(load.stop());
    assert_eq!(report.failed, 0, "{report:?}\n{}", tail(&b.serve_log(), 40));
    assert!(
        report.by_version.get("v2").copied().unwrap_or(0) > 0,
        "{report:?}"
    );
    let st = b.wait_status("v2 alone", |st| {
        st["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["version"] == "v2")
    });
    let addr = st["instances"][0]["address"].as_str().unwrap().to_string();
    assert!(
        !addr.starts_with("127.") && addr.ends_with(":8080"),
        "expected the container's network address, got {addr}"
    );
    assert_no_leaks(&b);
}
