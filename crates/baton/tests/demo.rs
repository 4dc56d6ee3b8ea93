//! `baton demo` runs end to end: canary succeeds, the broken version is rolled back,
//! the summary reports zero failed requests, and nothing is left running.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the whole demo may take before the test fails with what it printed so far
/// (about 30 s on a quiet machine; the demo itself gives up on a deploy after 180 s).
const DEMO_LIMIT: Duration = Duration::from_secs(240);

/// The demo process; a test that fails half-way still stops it (Ctrl-C, as a user would,
/// so it stops its instances too) rather than leaving it serving.
struct Demo(std::process::Child);

impl Drop for Demo {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
            for _ in 0..200 {
                if !matches!(self.0.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The demo prints its config path, which names its process id.
fn out_pid(stdout: &str) -> String {
    stdout
        .split("baton-demo-")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .unwrap_or("none")
        .to_string()
}

/// `baton demo --keep`: the canary succeeds, the broken version is rolled back, the
/// summary reports zero failed requests; the dashboard's login link is printed first and
/// stays up after the demo, and really logs in and shows the demo app; Ctrl-C (SIGINT)
/// then stops everything and leaves nothing behind. (One test, not two: two demos at
/// once would make the output hard to read; the instances listen in a port block of
/// their own, so other tests' instances never take their ports.)
#[test]
fn demo_runs_with_zero_failed_requests_keeps_the_dashboard_and_cleans_up() {
    use std::io::{BufRead, BufReader, Read, Write};
    let ports = common::port_range();
    let mut demo = Demo(
        Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(["demo", "--quick", "--keep", "--ports", &ports])
            .env("BATON_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let child = &mut demo.0;
    // Read on a thread, so a demo that stops printing fails the test with its output
    // instead of holding it until the harness kills it.
    let (tx, lines) = mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + DEMO_LIMIT;
    let next = |seen: &str| {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => Some(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("the demo printed nothing for the rest of {DEMO_LIMIT:?}; so far:\n{seen}")
            }
        }
    };
    let mut seen = String::new();
    let mut link = None;
    while let Some(line) = next(&seen) {
        seen.push_str(&line);
        seen.push('\n');
        if link.is_none() {
            link = line.strip_prefix("dashboard: ").map(str::to_string);
        }
        if line.contains("keep running") {
            break;
        }
    }
    assert!(seen.contains("failed: 0"), "{seen}");
    assert!(
        seen.contains("deploy v2 (canary 10% → 50% → 100%): succeeded"),
        "{seen}"
    );
    assert!(
        seen.contains("deploy v3 (never healthy):           failed"),
        "{seen}"
    );
    assert!(seen.contains("now serving: v2"), "{seen}");
    let link = link.unwrap_or_else(|| panic!("no dashboard link printed first:\n{seen}"));
    // http://127.0.0.1:PORT/ui/login#token=TOKEN
    let (base, token) = link.split_once("/ui/login#token=").unwrap();
    let addr = base.strip_prefix("http://").unwrap().to_string();
    let request = |req: String| {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let body = format!("token={token}");
    let login = request(format!(
        "POST /ui/login HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    let cookie = login
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .unwrap_or_else(|| panic!("the link's token did not log in:\n{login}"))
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let apps = request(format!(
        "GET /v1/apps HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nCookie: {cookie}\r\n\r\n"
    ));
    assert!(apps.starts_with("HTTP/1.1 200"), "{apps}");
    assert!(apps.contains("\"app\":\"demo\""), "{apps}");
    assert!(apps.contains("\"stable_version\":\"v2\""), "{apps}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let mut rest = Vec::new();
    while let Some(line) = next(&seen) {
        rest.push(line);
    }
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "exit {status:?}; output after Ctrl-C: {rest:?}"
    );
    let dir = std::env::temp_dir().join(format!("baton-demo-{}", out_pid(&seen)));
    assert!(!dir.exists(), "demo left {} behind", dir.display());
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "the dashboard still answers after Ctrl-C"
    );
    let owner = format!("BATON_OWNER={}/state", dir.display());
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("environ"))
                .map(|env| env.split(|b| *b == 0).any(|kv| kv == owner.as_bytes()))
                .unwrap_or(false)
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(left.is_empty(), "demo left processes running: {left:?}");
}
