//! Operator commands end to end: the static runtime with `--target`, pause / resume /
//! abort of a canary, instant blue/green rollback, `plan` and `logs`.
#![allow(clippy::unwrap_used)]

mod common;

use baton_loadgen::{Load, LoadSpec};
use common::*;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A sample app run by "someone else" for the static runtime.
struct External(Child);

impl External {
    fn start(port: u16, version: &str) -> External {
        External(
            Command::new(BATON)
                .args([
                    "sample-app",
                    "--port",
                    &port.to_string(),
                    "--version",
                    version,
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }
}

impl Drop for External {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn static_runtime_moves_traffic_between_targets_it_does_not_run() {
    let cfg = "[apps.web]\nruntime = \"static\"\nstrategy = \"blue_green\"\n[apps.web.health]\npath = \"/health\"\ninterval = \"100ms\"\n[apps.web.blue_green]\nscale_down_delay = \"0s\"\n";
    let b = Baton::start(cfg);
    let (p1, p2) = (port(), port());
    let _a = External::start(p1, "v1");
    let _b = External::start(p2, "v2");
    let out = b.cli(&["deploy", "web", "v1"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "static deploy without --target must be refused"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--target"));
    b.cli_ok(
        &[
            "deploy",
            "web",
            "v1",
            "--target",
            &format!("127.0.0.1:{p1}"),
        ],
        0,
    );
    let rt = rt();
    let load = rt.block_on(async { Load::start(LoadSpec::new(b.proxy)) });
    b.cli_ok(
        &[
            "deploy",
            "web",
            "v2",
            "--target",
            &format!("127.0.0.1:{p2}"),
        ],
        0,
    );
    std::thread::sleep(Duration::from_millis(300));
    let report = rt.block_on(load.stop());
    assert_eq!(report.failed, 0, "{report:?}");
    assert!(
        report.by_version.get("v2").copied().unwrap_or(0) > 0,
        "{report:?}"
    );
    let st = b.wait_status("v2 only", |st| {
        finished(st) && st["instances"].as_array().unwrap().len() == 1
    });
    assert_eq!(st["instances"][0]["address"], format!("127.0.0.1:{p2}"));
    assert_eq!(st["stable_version"], "v2");
}

#[test]
fn canary_can_be_paused_resumed_and_aborted() {
    let steps = "[apps.web.canary]\nsteps = [{ weight = 30 }, { pause = \"manual\" }, { weight = 60 }, { pause = \"1s\" }]\n";
    let cfg = app_config("canary", 2, "").replace(
        "[apps.web.canary]\nsteps = [{ weight = 20 }, { pause = \"1s\" }, { weight = 60 }, { pause = \"1s\" }]\n",
        steps,
    );
    let b = Baton::start(&cfg);
    b.cli_ok(&["deploy", "web", "v1"], 0);
    b.cli_ok(&["deploy", "web", "v2", "--detach"], 0);
    let st = b.wait_status("waiting at the manual pause", |st| {
        st["weights"]["v2"] == 30 && state(st) == "paused"
    });
    assert_eq!(st["weights"]["v1"], 70);
    // `resume` goes on from a manual pause: the canary moves to 60%.
    b.cli_ok(&["resume", "web"], 0);
    b.wait_status("60%", |st| st["weights"]["v2"] == 60);
    // An operator pause freezes the 1s pause step: well past it, still 60% and paused.
    b.cli_ok(&["pause", "web"], 0);
    std::thread::sleep(Duration::from_millis(1500));
    let st = b.status();
    assert_eq!(state(&st), "paused", "{st:#}");
    assert_eq!(st["weights"]["v2"], 60, "{st:#}");
    let rt = rt();
    let load = rt.block_on(async { Load::start(LoadSpec::new(b.proxy)) });
    std::thread::sleep(Duration::from_millis(300));
    b.cli_ok(&["abort", "web"], 0);
    let st = b.wait_status("aborted", |st| finished(st) && state(st) == "aborted");
    std::thread::sleep(Duration::from_millis(200));
    let report = rt.block_on(load.stop());
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(st["stable_version"], "v1");
    assert!(st["instances"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["version"] == "v1"));
    let h = b.history();
    assert_eq!(h.as_array().unwrap().last().unwrap()["outcome"], "aborted");
}

#[test]
fn blue_green_rollback_is_an_instant_flip_while_blue_is_warm() {
    let cfg = app_config("blue_green", 1, "")
        .replace("scale_down_delay = \"1s\"", "scale_down_delay = \"60s\"");
    let b = Baton::start(&cfg);
    b.cli_ok(&["deploy", "web", "v1"], 0);
    b.cli_ok(&["deploy", "web", "v2"], 0);
    let st = b.status();
    assert_eq!(st["weights"]["v2"], 100);
    let blue: Vec<String> = st["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["version"] == "v1")
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(blue.len(), 1, "blue stays warm: {st:#}");
    b.cli_ok(&["rollback", "web"], 0);
    let st = b.wait_status("rolled back", |st| {
        finished(st) && st["stable_version"] == "v1"
    });
    // The same blue instance serves again: nothing was started.
    assert!(
        st["instances"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"] == blue[0].as_str()),
        "{st:#}"
    );
    assert_eq!(
        b.history().as_array().unwrap().last().unwrap()["outcome"],
        "rolled_back"
    );
}

#[test]
fn plan_and_logs_describe_the_app() {
    let b = Baton::start(&app_config("blue_green", 2, ""));
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let plan: serde_json::Value =
        serde_json::from_str(&b.cli_ok(&["plan", "web", "v2", "--json"], 0)).unwrap();
    assert_eq!(plan["peak_instances"], 4);
    assert_eq!(plan["extra_instances"], 2);
    assert!(plan["rss_per_instance_bytes"].as_u64().unwrap() > 0);
    assert!(
        plan["extra_memory_bytes"].as_u64().unwrap()
            >= plan["rss_per_instance_bytes"].as_u64().unwrap()
    );
    let human = b.cli_ok(&["plan", "web", "v2", "--strategy", "rolling"], 0);
    assert!(human.contains("peak instances: 3"), "{human}");
    let logs = b.cli_ok(&["logs", "web"], 0);
    assert!(
        logs.contains("==> web-1-1 (v1) <==") && logs.contains("listening on"),
        "{logs}"
    );
}

/// A raw HTTP/1.1 GET over the admin Unix socket.
fn admin_get(b: &Baton, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(b.dir.path().join("baton.sock")).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: baton\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn admin_socket_is_private_and_serves_metrics_and_openapi() {
    use std::os::unix::fs::PermissionsExt;
    let b = Baton::start(&app_config("rolling", 1, ""));
    let mode = std::fs::metadata(b.dir.path().join("baton.sock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "admin socket mode {:o}", mode & 0o777);
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let rt = rt();
    let load = rt.block_on(async { Load::start(LoadSpec::new(b.proxy)) });
    std::thread::sleep(Duration::from_millis(300));
    let report = rt.block_on(load.stop());
    let metrics = admin_get(&b, "/metrics");
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("baton_requests_total{")
                && l.contains("version=\"v1\"")
                && l.contains("2xx")
        })
        .unwrap_or_else(|| panic!("no 2xx counter for v1 in:\n{metrics}"));
    let counted: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(counted, report.ok, "{line}");
    let doc = admin_get(&b, "/openapi.json");
    assert!(doc.starts_with("HTTP/1.1 200") && doc.contains("\"openapi\": \"3.1.0\""));
}

#[test]
fn event_stream_reports_a_deployment_as_it_happens() {
    use std::io::{BufRead, BufReader, Write};
    let b = Baton::start(&app_config("rolling", 1, ""));
    let mut s = std::os::unix::net::UnixStream::connect(b.dir.path().join("baton.sock")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET /v1/events?app=web HTTP/1.1\r\nHost: baton\r\n\r\n").unwrap();
    let mut reader = BufReader::new(s);
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    b.cli_ok(&["deploy", "web", "v1"], 0);
    // Read event names until the deployment's end arrives (bounded by the read timeout).
    let mut kinds = Vec::new();
    for _ in 0..200 {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(kind) = line.trim().strip_prefix("event: ") {
            kinds.push(kind.to_string());
            if kind == "finished" {
                break;
            }
        }
    }
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("started"),
        "{kinds:?}"
    );
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("finished"),
        "{kinds:?}"
    );
}
