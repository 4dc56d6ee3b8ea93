//! The access log of a real `baton serve`: lines name the version and the instance that
//! served each request across a deployment, the file is reopened on SIGUSR1 (logrotate),
//! and on a full disk (a real tmpfs) lines are lost, never requests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/prerequisite.rs"]
mod prerequisite;

use baton_loadgen::{Load, LoadSpec, Profile, Report};
use common::*;
use prerequisite::{run, tests, Test, TMPFS_MOUNT};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn main() {
    run(tests![
        lines_name_the_version_that_served_across_a_deploy_and_survive_logrotate,
        a_full_disk_loses_log_lines_not_requests[&TMPFS_MOUNT],
        an_access_log_that_cannot_be_opened_stops_serve_with_the_file_named,
    ]);
}

/// baton with `[proxy.access_log]` writing JSON to `log`, one v1 instance deployed.
fn start_logged(log: &Path, strategy: &str) -> Baton {
    let extra = format!(
        "\n[proxy.access_log]\npath = \"{}\"\nformat = \"json\"\n",
        log.display()
    );
    Baton::start(&format!("{}{extra}", app_config(strategy, 2, "")))
}

/// Keep-alive load through the proxy for `ms`.
fn load_for(b: &Baton, ms: u64) -> Report {
    let rt = rt();
    let load = rt.block_on(async {
        Load::start(LoadSpec {
            clients: 4,
            profile: Profile::KeepAlive,
            gap: Duration::from_millis(1),
            ..LoadSpec::new(b.proxy)
        })
    });
    std::thread::sleep(Duration::from_millis(ms));
    rt.block_on(load.stop())
}

/// The JSON lines of `path` once there are at least `n` (the writer is a moment behind)
/// and no more arrive.
fn lines_when(path: &Path, n: usize) -> Vec<Value> {
    let text = text_when(path, n);
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn text_when(path: &Path, n: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let settled = text.len() == last.len();
        if (text.lines().count() >= n && settled) || Instant::now() > deadline {
            return text;
        }
        last = text;
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `baton_access_log_dropped_total{reason="…"}` from `/metrics`.
fn dropped(b: &Baton, reason: &str) -> u64 {
    let metrics = admin_get(b, "/metrics");
    let prefix = format!("baton_access_log_dropped_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in {metrics}"))
        .trim()
        .parse()
        .unwrap()
}

/// Every answered request of the load has its line, and the lines' versions add up to
/// what the clients saw in `X-Version`; instances are the app's. After the file is
/// moved away and SIGUSR1 is sent, new lines go to a new file at the configured path.
fn lines_name_the_version_that_served_across_a_deploy_and_survive_logrotate() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let b = start_logged(&log, "rolling");
    let (report, _) = deploy_v2_under_load(&b, "rolling", 2, Profile::KeepAlive);
    let lines = lines_when(&log, report.ok as usize);
    // A request the load stopped waiting for may be logged too (at most one a client).
    let mut by_version: BTreeMap<String, u64> = BTreeMap::new();
    for l in lines.iter().filter(|l| l["status"] == 200) {
        let version = l["version"].as_str().unwrap();
        let instance = l["instance"].as_str().unwrap();
        assert_eq!(l["app"], "web", "{l}");
        assert!(instance.starts_with("web-"), "{l}");
        assert_eq!(l["request_id"].as_str().unwrap().len(), 32, "{l}");
        *by_version.entry(version.to_string()).or_default() += 1;
    }
    assert_eq!(
        by_version.keys().collect::<Vec<_>>(),
        report.by_version.keys().collect::<Vec<_>>()
    );
    for (version, seen) in &report.by_version {
        let logged = by_version[version];
        assert!(
            (*seen..=seen + 4).contains(&logged),
            "{version}: {seen} answered, {logged} logged"
        );
    }
    assert!(by_version.contains_key("v1") && by_version.contains_key("v2"));
    assert_eq!(dropped(&b, "queue_full") + dropped(&b, "write_failed"), 0);

    // logrotate: move the file, then `postrotate` sends SIGUSR1.
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    let pid = b.server_pid().unwrap().to_string();
    assert!(Command::new("kill")
        .args(["-USR1", &pid])
        .status()
        .unwrap()
        .success());
    wait_for(|| b.serve_log().contains("access log reopened"), &b);
    let more = load_for(&b, 300);
    assert_eq!(more.failed, 0, "{more:?}");
    let fresh = lines_when(&log, more.ok as usize);
    assert!(
        (more.ok..=more.ok + 4).contains(&(fresh.len() as u64)),
        "{} lines for {more:?}",
        fresh.len()
    );
    assert!(fresh.iter().all(|l| l["version"] == "v2"));
    assert_eq!(lines_when(&rotated, 0).len(), lines.len());
}

fn wait_for(cond: impl Fn() -> bool, b: &Baton) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "{}", tail(&b.serve_log(), 30));
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The access log on a 64 KiB tmpfs that is full: load runs with 0 failed requests,
/// the lost lines are counted, and once space is freed lines are written again.
fn a_full_disk_loses_log_lines_not_requests() {
    let fs = Tmpfs::mount("64k");
    let log = fs.0.join("access.log");
    std::fs::File::create(&log).unwrap();
    let filler = fill(&fs.0);
    let b = start_logged(&log, "rolling");
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let report = load_for(&b, 1500);
    assert_eq!(report.failed, 0, "{report:?}\n{}", tail(&b.serve_log(), 30));
    assert!(report.ok > 100, "{report:?}");
    wait_for(|| dropped(&b, "write_failed") > 0, &b);
    let lost = dropped(&b, "write_failed");
    let kept = text_when(&log, 0).lines().count() as u64;
    eprintln!(
        "full disk: {} requests, {lost} lines lost, {kept} kept",
        report.ok
    );
    assert!(
        kept < report.ok,
        "the disk was full, yet every line was written"
    );
    assert!(
        b.serve_log().contains("access log write failed"),
        "{}",
        tail(&b.serve_log(), 30)
    );

    // Space again: lines are written again.
    std::fs::remove_file(&filler).unwrap();
    let more = load_for(&b, 200);
    assert_eq!(more.failed, 0, "{more:?}");
    // (64 KiB hold about 200 lines, so the log may fill the disk again.)
    let after = text_when(&log, kept as usize + 1).lines().count() as u64;
    assert!(after > kept, "{after} lines");
    assert!(b.serve_log().contains("access log writes work again"));
}

/// A log file in a directory that does not exist: `baton serve` exits 1 naming the file
/// and the fix, before it serves anything.
fn an_access_log_that_cannot_be_opened_stops_serve_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("missing").join("access.log");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("baton.toml");
    std::fs::write(
        &config,
        format!(
            "[proxy]\nlisten = [\"127.0.0.1:{port}\"]\n\n[proxy.access_log]\npath = \"{}\"\n\n\
             [admin]\nlisten = \"unix:{d}/baton.sock\"\n\n[store]\npath = \"{d}/state\"\n",
            log.display(),
            d = dir.path().display()
        ),
    )
    .unwrap();
    let out = Command::new(BATON)
        .args(["serve", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("cannot open the access log {}", log.display())),
        "{err}"
    );
    assert!(err.contains("change `path` in [proxy.access_log]"), "{err}");
}
