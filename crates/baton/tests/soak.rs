//! Deploy soak: every strategy deployed again and again under mixed load (all the
//! load client's profiles at once) against the real `baton serve`; counts deploys,
//! requests and failed requests (must be 0: every new version is healthy), and splits p99
//! into "during a switch" and "at rest".
//!
//! Short by default (2 deploys per strategy, for CI); `BATON_SOAK_ROUNDS=N` for the long
//! form. Prints a table and writes `target/reliability/soak.json`.
//!
//! The same deploys also run under HTTPS load on a TLS listener (HTTP/1.1 keep-alive, a
//! new connection and TLS handshake per request, and h2, chosen by ALPN), counted apart:
//! 0 failed there too.
//!
//! WebSockets run twice: the mixed load's sockets are closed by the client after 1 s (a
//! session shorter than `drain_timeout`, so a drained backend finishes them), and a
//! separate pair is held open for the whole run, to report what happens to a socket that
//! outlives `drain_timeout` (it is closed at the drain deadline); the held pair is
//! reported, not asserted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use baton_loadgen::{Load, LoadSpec, Profile, Report};
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Profiles whose latency is a plain request's (slow requests and WebSocket messages
/// are reported apart: their latency is the app's, not the switch's).
const FAST: [Profile; 4] = [
    Profile::KeepAlive,
    Profile::NewConnection,
    Profile::Http2,
    Profile::Post,
];

fn rounds() -> u32 {
    std::env::var("BATON_SOAK_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(2)
}

fn mixed(b: &Baton) -> Vec<LoadSpec> {
    let spec = |profile, clients, gap_ms| LoadSpec {
        clients,
        gap: Duration::from_millis(gap_ms),
        ..LoadSpec::with_profile(b.proxy, profile)
    };
    vec![
        spec(Profile::KeepAlive, 2, 5),
        spec(Profile::NewConnection, 1, 5),
        spec(Profile::Http2, 1, 5),
        spec(Profile::Post, 1, 5),
        spec(Profile::Slow, 2, 0),
        // Keep-alive reused without a check, as Python's `http.client` does: back to
        // back, and after random idle gaps.
        spec(Profile::Plain, 1, 5),
        LoadSpec {
            gap_max: Some(Duration::from_millis(1500)),
            ..spec(Profile::Plain, 2, 50)
        },
        LoadSpec {
            ws_hold: Some(Duration::from_secs(1)),
            ..spec(Profile::WebSocket, 2, 100)
        },
    ]
}

struct Outcome {
    strategy: &'static str,
    deploys: u32,
    report: Report,
    held: Report,
    /// The HTTPS load.
    https: Report,
    windows: Vec<(Instant, Instant)>,
    seconds: f64,
}

/// One deployment of `version`, from the command to the old instances gone.
fn deploy(b: &Baton, strategy: &str, version: &str) {
    if strategy == "ab_test" {
        b.cli_ok(&["deploy", "web", version, "--detach"], 0);
        b.wait_status("both variants routed", |st| {
            st["weights"][version].as_u64().unwrap_or(0) > 0
                && st["weights"].as_object().is_some_and(|w| w.len() > 1)
        });
        std::thread::sleep(Duration::from_millis(300));
        b.cli_ok(&["promote", "web", "--to", version], 0);
    } else {
        b.cli_ok(&["deploy", "web", version], 0);
    }
    let st = b.wait_status("deployment finished, old instances gone", |st| {
        finished(st)
            && st["instances"]
                .as_array()
                .is_some_and(|i| i.iter().all(|i| i["version"] == version))
    });
    assert_eq!(state(&st), "succeeded", "{strategy} {version}: {st:#}");
    assert_eq!(st["stable_version"], version, "{st:#}");
}

fn soak(strategy: &'static str, replicas: u32, rounds: u32) -> Outcome {
    let tls_port = free_port();
    let b = Baton::start_with(
        |dir| https_for_app_test(dir, tls_port),
        &app_config(strategy, replicas, ""),
    );
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let rt = rt();
    let (load, held, https) = rt.block_on(async {
        let held = LoadSpec {
            clients: 2,
            gap: Duration::from_millis(200),
            ..LoadSpec::with_profile(b.proxy, Profile::WebSocket)
        };
        (
            Load::start_mixed(mixed(&b)),
            Load::start(held),
            Load::start_mixed(https_load_specs(b.dir.path(), tls_port)),
        )
    });
    let rest = Duration::from_secs(1);
    let t0 = Instant::now();
    std::thread::sleep(rest);
    let mut windows = Vec::new();
    for round in 0..rounds {
        let version = format!("v{}", round + 2);
        let start = Instant::now();
        deploy(&b, strategy, &version);
        windows.push((start, Instant::now()));
        std::thread::sleep(rest);
    }
    let report = rt.block_on(load.stop());
    let held = rt.block_on(held.stop());
    let https = rt.block_on(https.stop());
    let seconds = t0.elapsed().as_secs_f64();
    assert_eq!(
        report.failed,
        0,
        "{strategy}: failed requests during healthy deploys: {report:#?}\n{}",
        tail(&b.serve_log(), 60)
    );
    assert_eq!(
        https.failed,
        0,
        "{strategy}: failed HTTPS requests during healthy deploys: {https:#?}\n{}",
        tail(&b.serve_log(), 60)
    );
    let last = format!("v{}", rounds + 1);
    assert!(
        https.by_version.get(&last).copied().unwrap_or(0) > 0,
        "{strategy}: {last} never answered over HTTPS: {https:?}"
    );
    for p in [Profile::KeepAlive, Profile::NewConnection, Profile::Http2] {
        let s = &https.by_profile[p.name()];
        assert!(
            s.ok > 0,
            "{strategy}: no HTTPS {} request succeeded: {s:?}",
            p.name()
        );
    }
    assert!(
        report.by_version.get(&last).copied().unwrap_or(0) > 0,
        "{strategy}: {last} never answered: {report:?}"
    );
    for p in Profile::ALL {
        let s = &report.by_profile[p.name()];
        assert!(
            s.ok > 0,
            "{strategy}: no {} request succeeded: {s:?}",
            p.name()
        );
    }
    Outcome {
        strategy,
        deploys: rounds,
        report,
        held,
        https,
        windows,
        seconds,
    }
}

fn row(o: &Outcome) -> Value {
    let (switch, rest) = o.report.window_stats(&o.windows, &FAST);
    let (ws_switch, ws_rest) = o.report.window_stats(&o.windows, &[Profile::WebSocket]);
    let held_cut: u64 = o
        .held
        .failures
        .iter()
        .filter(|(k, _)| k.contains("1006"))
        .map(|(_, n)| n)
        .sum();
    json!({
        "strategy": o.strategy,
        "deploys": o.deploys,
        "seconds": (o.seconds * 10.0).round() / 10.0,
        "requests": o.report.sent,
        "failed": o.report.failed,
        "failures": o.report.failures,
        "by_profile": o.report.by_profile,
        "p99_switch_ms": switch.p99_ms,
        "p99_rest_ms": rest.p99_ms,
        "max_switch_ms": switch.max_ms,
        "requests_switch": switch.sent,
        "requests_rest": rest.sent,
        "ws_p99_switch_ms": ws_switch.p99_ms,
        "ws_p99_rest_ms": ws_rest.p99_ms,
        "ws": o.report.ws,
        "https": {
            "requests": o.https.sent,
            "failed": o.https.failed,
            "failures": o.https.failures,
            "by_profile": o.https.by_profile,
        },
        "held_ws": {
            "messages": o.held.ws.echoed,
            "sessions": o.held.ws.opened,
            "server_close_frames": o.held.ws.server_closed,
            "cut_without_close_frame": held_cut,
            "failures": o.held.failures,
        },
    })
}

#[test]
fn every_strategy_deploys_repeatedly_under_mixed_load_without_a_failed_request() {
    let rounds = rounds();
    let plan: [(&'static str, u32); 5] = [
        ("recreate", 2),
        ("blue_green", 2),
        ("rolling", 3),
        ("canary", 2),
        ("ab_test", 2),
    ];
    let mut rows = Vec::new();
    for (strategy, replicas) in plan {
        let o = soak(strategy, replicas, rounds);
        let r = row(&o);
        eprintln!("{strategy}: {r}");
        rows.push(r);
    }
    let total = |k: &str| rows.iter().map(|r| r[k].as_u64().unwrap()).sum::<u64>();
    println!("\ndeploy soak: {rounds} deploys per strategy, mixed load (keep-alive, new connection, h2c, POST echo, 2 s requests, WebSockets) and HTTPS load (keep-alive, new connection, h2 by ALPN)");
    println!(
        "{:<11} {:>7} {:>9} {:>6} {:>13} {:>11} {:>9} {:>14} {:>7} {:>7}",
        "strategy",
        "deploys",
        "requests",
        "failed",
        "p99 switch",
        "p99 rest",
        "ws msgs",
        "held ws cut",
        "https",
        "failed"
    );
    for r in &rows {
        println!(
            "{:<11} {:>7} {:>9} {:>6} {:>10.2} ms {:>8.2} ms {:>9} {:>14} {:>7} {:>7}",
            r["strategy"].as_str().unwrap(),
            r["deploys"].as_u64().unwrap(),
            r["requests"].as_u64().unwrap(),
            r["failed"].as_u64().unwrap(),
            r["p99_switch_ms"].as_f64().unwrap(),
            r["p99_rest_ms"].as_f64().unwrap(),
            r["ws"]["echoed"].as_u64().unwrap(),
            r["held_ws"]["cut_without_close_frame"].as_u64().unwrap(),
            r["https"]["requests"].as_u64().unwrap(),
            r["https"]["failed"].as_u64().unwrap(),
        );
    }
    println!(
        "{:<11} {:>7} {:>9} {:>6}",
        "total",
        total("deploys"),
        total("requests"),
        total("failed")
    );
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("reliability");
    std::fs::create_dir_all(&out).unwrap();
    let https_total = |k: &str| {
        rows.iter()
            .map(|r| r["https"][k].as_u64().unwrap())
            .sum::<u64>()
    };
    println!(
        "https: {} requests, {} failed",
        https_total("requests"),
        https_total("failed")
    );
    let doc = json!({
        "rounds_per_strategy": rounds,
        "https_requests": https_total("requests"),
        "https_failed": https_total("failed"),
        "deploys": total("deploys"),
        "requests": total("requests"),
        "failed": total("failed"),
        "strategies": rows,
    });
    let path = out.join("soak.json");
    std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    println!("written to {}", path.display());
}
