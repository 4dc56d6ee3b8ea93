//! The real `sample-app` binary as a process: signals, exit codes, flags and environment.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{Client, PATIENCE};
use http::StatusCode;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// A running `sample-app` process, killed when dropped (even if the test fails).
struct Proc {
    child: Child,
    addr: SocketAddr,
    /// stderr lines, drained in the background so the pipe never fills.
    logs: mpsc::UnboundedReceiver<String>,
}

fn command(args: &[&str], envs: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sample-app"));
    for var in [
        "PORT",
        "BATON_VERSION",
        "SAMPLE_INSTANCE",
        "SAMPLE_FAIL_HEALTH",
    ] {
        cmd.env_remove(var);
    }
    cmd.args(args)
        .envs(envs.iter().copied())
        .env("RUST_LOG", "sample_app=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

impl Proc {
    async fn spawn(args: &[&str], envs: &[(&str, &str)]) -> Proc {
        let mut child = command(args, envs).spawn().unwrap();
        let (tx, logs) = mpsc::unbounded_channel();
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                let _ = tx.send(line);
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(PATIENCE, stdout.next_line())
            .await
            .unwrap()
            .unwrap()
            .expect("sample-app exited before listening");
        let addr = line.strip_prefix("listening on ").unwrap().parse().unwrap();
        Proc { child, addr, logs }
    }

    /// Waits until a stderr line contains `needle`.
    async fn wait_for_log(&mut self, needle: &str) -> String {
        let find = async {
            loop {
                let line = self
                    .logs
                    .recv()
                    .await
                    .expect("stderr closed before the log line");
                if line.contains(needle) {
                    return line;
                }
            }
        };
        tokio::time::timeout(PATIENCE, find).await.unwrap()
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id().unwrap() as i32), signal).unwrap();
    }

    async fn exit_status(&mut self) -> ExitStatus {
        tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .unwrap()
            .unwrap()
    }

    async fn get(&self, path: &str) -> common::Reply {
        Client::connect(self.addr).await.send("GET", path, "").await
    }
}

#[tokio::test]
async fn sigterm_finishes_a_slow_request_then_exits_zero() {
    let mut app = Proc::spawn(&["--port", "0"], &[]).await;
    let mut client = Client::connect(app.addr).await;
    let slow = tokio::spawn(async move { client.send("GET", "/slow?ms=1000", "").await });
    app.wait_for_log("slow request started").await;
    app.signal(Signal::SIGTERM);
    let reply = slow.await.unwrap();
    assert_eq!((reply.status, reply.text()), (StatusCode::OK, "v1\n"));
    assert_eq!(app.exit_status().await.code(), Some(0));
}

#[tokio::test]
async fn sigint_is_graceful_too() {
    let mut app = Proc::spawn(&[], &[]).await;
    assert_eq!(app.get("/").await.status, StatusCode::OK);
    app.signal(Signal::SIGINT);
    assert!(app
        .wait_for_log("graceful shutdown requested")
        .await
        .contains("SIGINT"));
    assert_eq!(app.exit_status().await.code(), Some(0));
}

#[tokio::test]
async fn exit_after_simulates_a_crash_with_status_3() {
    let mut app = Proc::spawn(&["--exit-after-ms", "300"], &[]).await;
    assert_eq!(app.get("/").await.status, StatusCode::OK);
    assert_eq!(app.exit_status().await.code(), Some(3));
}

#[tokio::test]
async fn environment_is_a_fallback_and_flags_win() {
    let envs = [
        ("BATON_VERSION", "v7"),
        ("SAMPLE_INSTANCE", "from-env"),
        ("PORT", "0"),
        ("SAMPLE_FAIL_HEALTH", "1"),
    ];
    let from_env = Proc::spawn(&[], &envs).await;
    let reply = from_env.get("/").await;
    assert_eq!(reply.text(), "v7\n");
    assert_eq!(reply.header("x-instance"), "from-env");
    let health = from_env.get("/health").await.status;
    assert_eq!(health, StatusCode::SERVICE_UNAVAILABLE);
    let flag_wins = Proc::spawn(&["--version", "v8"], &envs).await;
    assert_eq!(flag_wins.get("/").await.header("x-version"), "v8");
}

#[tokio::test]
async fn startup_delay_postpones_binding() {
    let started = Instant::now();
    let mut app = Proc::spawn(&["--startup-delay-ms", "300"], &[]).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    app.wait_for_log("slow start").await;
    assert_eq!(app.get("/health").await.status, StatusCode::OK);
}

#[tokio::test]
async fn bad_flags_exit_2_with_a_reason() {
    let out = command(&["--error-rate", "2"], &[]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("outside 0.0..=1.0"));
}

#[tokio::test]
async fn busy_port_exits_1_with_a_reason() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = tokio::time::timeout(PATIENCE, command(&["--port", &port], &[]).output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot listen on"), "{stderr}");
}
