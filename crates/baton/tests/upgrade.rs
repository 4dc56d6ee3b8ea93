//! Upgrading baton itself with no failed request. The real binary, the
//! real CLI, real app processes and continuous load: `baton upgrade` (and SIGUSR2)
//! hands the listening sockets and the apps to the binary now at the server's path;
//! a new binary that fails to start leaves the old one serving.
//!
//! The load includes clients that reuse a kept-alive connection without checking it and
//! never retry: the load client's plain profile and Python's own `http.client`
//! (`tests/fixtures/http_client_load.py`), and HTTPS clients (keep-alive, a new TLS
//! handshake per request, h2 by ALPN) on the TLS listener. 20 upgrades by default; `BATON_UPGRADES=100`
//! for the long form (docs/RELIABILITY.md).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/follower.rs"]
mod follower;

use baton_loadgen::{Load, LoadSpec, Profile, Report};
use common::*;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A `baton serve` started from `binary` (a private copy when a test replaces it). The
/// server's pid changes with every upgrade, so the servers are found by their command
/// line; all of them, and the app instances, are stopped on drop.
struct Server {
    dir: tempfile::TempDir,
    config: PathBuf,
    binary: PathBuf,
    proxy: SocketAddr,
    /// The HTTPS listener's port (`app.test`, `dir/ca.pem`).
    tls_port: u16,
    first: Option<Child>,
}

impl Server {
    fn start(apps: &str, private_binary: bool) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let binary = if private_binary {
            let bin = dir.path().join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            let copy = bin.join("baton");
            std::fs::copy(BATON, &copy).unwrap();
            copy
        } else {
            PathBuf::from(BATON)
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // An HTTPS listener too: its socket is handed over like the HTTP one.
        let tls_port = free_port();
        let text = format!(
            "[proxy]\nlisten = [\"127.0.0.1:{port}\"]\n{https}\n[admin]\nlisten = \"unix:{d}/baton.sock\"\n\n[store]\npath = \"{d}/state\"\n\n{apps}",
            https = https_for_app_test(dir.path(), tls_port),
            d = dir.path().display()
        );
        let config = dir.path().join("baton.toml");
        std::fs::write(&config, text).unwrap();
        let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
        let child = Command::new(&binary)
            .args(["serve", "-c"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let s = Server {
            dir,
            config,
            binary,
            proxy: format!("127.0.0.1:{port}").parse().unwrap(),
            tls_port,
            first: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !s.cli(&["status", "--json"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "baton serve did not come up:\n{}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    }

    fn log(&self) -> String {
        tail(
            &std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default(),
            60,
        )
    }

    fn cli(&self, args: &[&str]) -> Output {
        Command::new(BATON)
            .args(args)
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn cli_ok(&self, args: &[&str], code: i32) -> Output {
        let out = self.cli(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "baton {args:?}\nstdout: {}\nstderr: {}\nserve log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        out
    }

    fn status(&self) -> Value {
        serde_json::from_slice(&self.cli_ok(&["status", "web", "--json"], 0).stdout).unwrap()
    }

    fn wait_status(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let st = self.status();
            if pred(&st) {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {st:#}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn store(&self) -> String {
        self.dir.path().join("state").display().to_string()
    }

    fn instance_pids(&self) -> Vec<i32> {
        let mut p = owned_pids(&self.store());
        p.sort_unstable();
        p
    }

    /// Live `baton serve` processes of this config.
    fn server_pids(&self) -> Vec<i32> {
        let config = self.config.display().to_string();
        let mut pids = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
            if args.contains(&&b"serve"[..]) && args.contains(&config.as_bytes()) {
                pids.push(pid);
            }
        }
        pids.sort_unstable();
        pids
    }

    /// The one server left once the old ones have drained and exited (bounded).
    fn wait_single_server(&mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            // The first server is our child: reap it so it does not linger as a zombie.
            if let Some(c) = self.first.as_mut() {
                if c.try_wait().ok().flatten().is_some() {
                    self.first = None;
                }
            }
            let pids = self.server_pids();
            if pids.len() == 1 {
                return pids[0];
            }
            assert!(
                Instant::now() < deadline,
                "servers still running: {pids:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `baton upgrade --json` must succeed; returns (old pid, new pid).
    fn upgrade(&self) -> (i64, i64) {
        let out = self.cli_ok(&["upgrade", "--json"], 0);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        (
            v["old_pid"].as_i64().unwrap(),
            v["new_pid"].as_i64().unwrap(),
        )
    }

    /// Replaces the binary at the server's path the way an install does (rename).
    fn install(&self, from: &Path) {
        let tmp = self.binary.with_extension("new");
        std::fs::copy(from, &tmp).unwrap();
        std::fs::rename(&tmp, &self.binary).unwrap();
    }

    fn install_script(&self, script: &str) {
        use std::os::unix::fs::PermissionsExt;
        let tmp = self.binary.with_extension("new");
        std::fs::write(&tmp, script).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::rename(&tmp, &self.binary).unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let signal = |sig: &str, pid: i32| {
            let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
        };
        for pid in self.server_pids() {
            signal("-TERM", pid);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.server_pids().is_empty() && Instant::now() < deadline {
            if let Some(c) = self.first.as_mut() {
                let _ = c.try_wait();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for pid in self.server_pids() {
            signal("-KILL", pid);
        }
        if let Some(mut c) = self.first.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for pid in owned_pids(&self.store()) {
            signal("-KILL", pid);
        }
    }
}

/// Keep-alive, new-connection-per-request and HTTP/2 clients at once, and plain
/// keep-alive clients that reuse a connection without checking it (as Python's
/// `http.client` does): back to back, after random idle gaps of up to 1.5 s, and with
/// slow (1.5 s) requests.
fn mixed_load(proxy: SocketAddr) -> Load {
    let spec = |profile| LoadSpec {
        clients: 2,
        gap: Duration::from_millis(2),
        ..LoadSpec::with_profile(proxy, profile)
    };
    Load::start_mixed(vec![
        spec(Profile::KeepAlive),
        spec(Profile::NewConnection),
        spec(Profile::Http2),
        spec(Profile::Plain),
        LoadSpec {
            clients: 4,
            gap: Duration::from_millis(50),
            gap_max: Some(Duration::from_millis(1500)),
            ..spec(Profile::Plain)
        },
        LoadSpec {
            path: "/slow?ms=1500".into(),
            gap: Duration::ZERO,
            ..spec(Profile::Plain)
        },
    ])
}

/// Upgrades per run of the load test: 20 by default (CI), `BATON_UPGRADES=N` for the
/// long form.
fn upgrades() -> u32 {
    std::env::var("BATON_UPGRADES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(20)
}

/// Python's own HTTP/1.1 client (`tests/fixtures/http_client_load.py`, stdlib only) as an
/// outside client: keep-alive back to back, keep-alive with random idle gaps
/// (0.05-1.5 s), a new connection per request, and slow (1.5 s) requests; it never
/// retries and never checks a kept-alive connection before sending on it.
struct PythonLoad {
    child: Child,
    stop: PathBuf,
    out: PathBuf,
}

impl PythonLoad {
    fn start(proxy: SocketAddr, dir: &Path) -> PythonLoad {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/http_client_load.py");
        let (stop, ready, out) = (
            dir.join("py.stop"),
            dir.join("py.ready"),
            dir.join("py.json"),
        );
        let child = Command::new("python3")
            .arg(&script)
            .args(["--addr", &proxy.to_string()])
            .args(["--keepalive", "2", "--gaps", "4", "--newconn", "1", "--slow", "2"])
            .arg("--stop-file")
            .arg(&stop)
            .arg("--ready-file")
            .arg(&ready)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run python3 ({e}): the upgrade test drives Python's http.client; install python3 (.ci/run does)")
            });
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready.exists() {
            assert!(Instant::now() < deadline, "the Python client did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        PythonLoad { child, stop, out }
    }

    /// Stops the client (bounded wait) and returns its report.
    fn stop(mut self) -> Value {
        std::fs::write(&self.stop, "stop\n").unwrap();
        // Slow requests take 1.5 s; a hung one times out after 30 s.
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "the Python client failed: {status}");
                break;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("the Python client did not stop within 90 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        serde_json::from_str(&std::fs::read_to_string(&self.out).unwrap()).unwrap()
    }
}

fn assert_no_failure(what: &str, report: &Report, s: &Server) {
    println!(
        "{what}: {} requests, {} failed, failures {:?}, p99 {:.1} ms, max {:.1} ms, by profile {:?}",
        report.sent,
        report.failed,
        report.failures,
        report.p99_ms,
        report.max_ms,
        report
            .by_profile
            .iter()
            .map(|(k, v)| (k.clone(), v.sent, v.failed))
            .collect::<Vec<_>>()
    );
    assert!(report.sent > 0, "{what}: no request was sent");
    assert_eq!(report.failed, 0, "{what}: {report:?}\n{}", s.log());
}

#[test]
fn upgrades_under_load_from_loadgen_and_python_fail_no_request() {
    let mut s = Server::start(&app_config("rolling", 2, ""), false);
    s.cli_ok(&["deploy", "web", "v1"], 0);
    let instances = s.instance_pids();
    assert_eq!(instances.len(), 2, "{instances:?}");
    let rt = rt();
    let load = rt.block_on(async { mixed_load(s.proxy) });
    let https =
        rt.block_on(async { Load::start_mixed(https_load_specs(s.dir.path(), s.tls_port)) });
    let python = PythonLoad::start(s.proxy, s.dir.path());
    std::thread::sleep(Duration::from_millis(300));
    let mut server = s.wait_single_server();
    let upgrades = upgrades();
    let started = Instant::now();
    for i in 0..upgrades {
        let (old, new) = s.upgrade();
        assert_eq!(
            old,
            i64::from(server),
            "upgrade {i}: answered by another server"
        );
        assert_ne!(new, old, "upgrade {i}: the server pid did not change");
        let now = s.wait_single_server();
        assert_eq!(i64::from(now), new, "upgrade {i}");
        server = now;
        // The apps stayed with the same processes.
        assert_eq!(s.instance_pids(), instances, "upgrade {i}");
    }
    let seconds = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(300));
    let report = rt.block_on(load.stop());
    let https = rt.block_on(https.stop());
    let py = python.stop();
    println!("upgrades: {upgrades} in {seconds:.0} s");
    println!(
        "python http.client: {} requests, {} failed, by mode [sent, ok] {}, failures {}",
        py["sent"], py["failed"], py["by_mode"], py["failures"]
    );
    let plain = report.by_profile.get("plain").cloned().unwrap_or_default();
    println!(
        "loadgen plain (unchecked keep-alive): {} requests, {} failed",
        plain.sent, plain.failed
    );
    assert_no_failure(
        &format!("{upgrades} upgrades under mixed load"),
        &report,
        &s,
    );
    assert_no_failure(
        &format!("{upgrades} upgrades under HTTPS load (keep-alive, new connection, h2)"),
        &https,
        &s,
    );
    for p in [Profile::KeepAlive, Profile::NewConnection, Profile::Http2] {
        let n = https.by_profile.get(p.name()).map_or(0, |c| c.ok);
        assert!(n > 0, "no HTTPS {} request succeeded: {https:?}", p.name());
    }
    assert!(py["sent"].as_u64().unwrap() > 0, "{py}");
    assert_eq!(
        py["failed"].as_u64(),
        Some(0),
        "Python's http.client lost requests across {upgrades} upgrades: {py:#}\n{}",
        s.log()
    );
    let st = s.status();
    assert_eq!(st["stable_version"], "v1");
    assert!(
        st["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["healthy"] == true),
        "{st:#}"
    );
    // The controller works under the last process: a deploy goes through.
    s.cli_ok(&["deploy", "web", "v2"], 0);
    assert_eq!(s.status()["stable_version"], "v2");
}

#[test]
fn upgrade_in_a_paused_canary_keeps_its_step() {
    let mut s = Server::start(&app_config("canary", 2, ""), false);
    s.cli_ok(&["deploy", "web", "v1"], 0);
    let rt = rt();
    let load = rt.block_on(async { mixed_load(s.proxy) });
    s.cli_ok(&["deploy", "web", "v2", "--detach"], 0);
    s.wait_status("canary at 20%", |st| st["weights"]["v2"] == 20);
    s.cli_ok(&["pause", "web"], 0);
    let before = s.wait_status("paused", |st| state(st) == "paused");
    let instances = s.instance_pids();
    let old = s.wait_single_server();
    let (_, new) = s.upgrade();
    assert_eq!(i64::from(s.wait_single_server()), new);
    assert_ne!(i64::from(old), new);
    let after = s.status();
    for field in ["state", "step", "step_index", "id", "version"] {
        assert_eq!(
            after["deployment"][field], before["deployment"][field],
            "{field} changed across the upgrade:\nbefore {before:#}\nafter {after:#}"
        );
    }
    assert_eq!(after["weights"], before["weights"]);
    assert_eq!(s.instance_pids(), instances, "instances changed");
    s.cli_ok(&["resume", "web"], 0);
    s.cli_ok(&["promote", "web"], 0);
    let st = s.wait_status("canary finished", finished);
    assert_eq!(state(&st), "succeeded", "{st:#}");
    assert_eq!(st["stable_version"], "v2");
    let report = rt.block_on(load.stop());
    assert_no_failure("upgrade during a paused canary", &report, &s);
}

#[test]
fn a_new_binary_that_fails_leaves_the_old_one_serving() {
    let mut s = Server::start(&app_config("rolling", 1, ""), true);
    s.cli_ok(&["deploy", "web", "v1"], 0);
    let instances = s.instance_pids();
    let server = s.wait_single_server();
    let rt = rt();
    let load = rt.block_on(async { mixed_load(s.proxy) });

    // A broken build: the new "binary" exits 1 at once.
    s.install_script("#!/bin/sh\necho \"boom: this build is broken\" >&2\nexit 1\n");
    let out = s.cli_ok(&["upgrade"], 1);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    println!("baton upgrade (broken binary): {err}");
    assert!(err.contains("exited with status 1"), "{err}");
    assert!(err.contains("boom: this build is broken"), "{err}");
    assert!(err.contains("keeps serving"), "{err}");

    // A binary that cannot load the config (it changed on disk meanwhile).
    s.install(Path::new(BATON));
    let good = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(&s.config, format!("{good}\n[proxy.oops]\n")).unwrap();
    // The CLI is told the admin socket, since it cannot read the config either.
    let sock = format!("unix:{}", s.dir.path().join("baton.sock").display());
    let out = s.cli_ok(&["upgrade", "--admin", &sock], 1);
    std::fs::write(&s.config, &good).unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    println!("baton upgrade (config that does not load): {err}");
    assert!(err.contains("exited with status 2"), "{err}");
    assert!(err.contains("oops"), "{err}");

    // Still the same server, same instances, and its controller works again.
    assert_eq!(s.server_pids(), vec![server]);
    assert_eq!(s.instance_pids(), instances);
    s.cli_ok(&["deploy", "web", "v2"], 0);
    assert_eq!(s.status()["stable_version"], "v2");
    let report = rt.block_on(load.stop());
    assert_no_failure("failed upgrades", &report, &s);

    // And with a working binary back in place, the upgrade goes through.
    let (old, new) = s.upgrade();
    assert_eq!(old, i64::from(server));
    assert_eq!(i64::from(s.wait_single_server()), new);
}

#[test]
fn sigusr2_upgrades_too() {
    let mut s = Server::start(&app_config("rolling", 2, ""), false);
    s.cli_ok(&["deploy", "web", "v1"], 0);
    let instances = s.instance_pids();
    let rt = rt();
    let load = rt.block_on(async { mixed_load(s.proxy) });
    std::thread::sleep(Duration::from_millis(200));
    let old = s.wait_single_server();
    let ok = Command::new("kill")
        .args(["-USR2", &old.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let deadline = Instant::now() + Duration::from_secs(40);
    let new = loop {
        let pids = s.server_pids();
        if pids.len() == 1 && pids[0] != old {
            break pids[0];
        }
        assert!(
            Instant::now() < deadline,
            "no handover: {pids:?}\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(200));
    let report = rt.block_on(load.stop());
    assert_no_failure("SIGUSR2 upgrade", &report, &s);
    assert_ne!(new, old);
    assert_eq!(s.instance_pids(), instances);
    assert_eq!(s.status()["stable_version"], "v1");
}

#[test]
fn the_cluster_listener_is_handed_over_and_a_proxy_on_another_node_follows_the_new_process() {
    let secrets = tempfile::tempdir().unwrap();
    let token = secrets.path().join("cluster.token");
    std::fs::write(&token, "upgrade-cluster-secret").unwrap();
    let cluster: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let apps = app_config("rolling", 2, "");
    let mut s = Server::start(
        &(apps.clone() + &follower::controller_section(cluster, &token)),
        false,
    );
    s.cli_ok(&["deploy", "web", "v1"], 0);
    let mut f = follower::Follower::start(cluster, &token, &apps);
    f.wait_serving("v1");
    let rt = rt();
    let load = rt.block_on(async { Load::start(LoadSpec::new(f.proxy)) });
    // The new process takes the cluster listener with the others (binding it anew would
    // fail while the old process holds it, and the upgrade with it).
    let (old, new) = s.upgrade();
    assert_ne!(old, new);
    assert_eq!(s.wait_single_server() as i64, new);
    // Only the new process can publish v2: the proxy follows it.
    s.cli_ok(&["deploy", "web", "v2"], 0);
    f.wait_serving("v2");
    let report = rt.block_on(load.stop());
    assert_eq!(report.failed, 0, "{report:?}\n{}", tail(&f.log(), 20));
}

#[test]
fn a_hand_set_handover_variable_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BATON)
        .args(["serve", "-c"])
        .arg(dir.path().join("baton.toml"))
        .env("BATON_UPGRADE_FDS", "proxy:99")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("descriptor 99 was not passed"), "{err}");
    assert!(err.contains("set by `baton upgrade`"), "{err}");
}
