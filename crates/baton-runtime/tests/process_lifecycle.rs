//! Exit detection, stop (SIGTERM, then SIGKILL) and adoption after a restart, on real
//! processes.

#![allow(clippy::unwrap_used)]

mod support;

use baton_runtime::{HandleDetail, ProcessRuntime, Runtime, RuntimeEvent};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::time::Duration;
use support::{group_has_live_members, is_running, process_of, wait_listening, Fixture};
use tokio::sync::mpsc;

fn exited(ev: RuntimeEvent) -> (String, String, Vec<String>) {
    let RuntimeEvent::Exited {
        id,
        status,
        last_logs,
    } = ev;
    (id, status, last_logs)
}

#[tokio::test]
async fn an_exit_is_reported_with_status_and_last_lines() {
    let mut fx = Fixture::new("sh -c 'echo starting; echo boom >&2; exit 3'");
    fx.start("web-v1-1", "v1").await;
    let (id, status, logs) = exited(fx.next_event().await);
    assert_eq!(id, "web-v1-1");
    assert_eq!(status, "exited with status 3");
    assert_eq!(logs.last().map(String::as_str), Some("boom"), "{logs:?}");
    assert!(logs.iter().any(|l| l == "starting"), "{logs:?}");
}

#[tokio::test]
async fn a_kill_is_reported_with_its_signal() {
    let mut fx = Fixture::new("sh -c 'kill -9 $$'");
    fx.start("web-v1-1", "v1").await;
    let (_, status, _) = exited(fx.next_event().await);
    assert_eq!(status, "killed by signal 9 (SIGKILL)");
}

#[tokio::test]
async fn stop_ends_a_server_gracefully_without_an_exit_event() {
    let mut fx = Fixture::new("python3 -m http.server --bind 127.0.0.1 {port}");
    let h = fx.start("web-v1-1", "v1").await;
    wait_listening(h.addr).await;
    fx.rt.stop(&h).await.unwrap();
    assert!(!is_running(&h));
    assert!(tokio::net::TcpStream::connect(h.addr).await.is_err());
    assert!(
        fx.events.try_recv().is_err(),
        "a requested stop is not news"
    );
    // Stopping again is fine: it is already gone.
    fx.rt.stop(&h).await.unwrap();
}

#[tokio::test]
async fn stop_sends_sigkill_after_stop_timeout_to_a_process_that_ignores_sigterm() {
    let script = r#"sh -c 'trap "echo got TERM" TERM; echo ready; while true; do sleep 0.1; done'"#;
    let mut fx = Fixture::with(script, |s| s.stop_timeout = Duration::from_millis(300));
    let h = fx.start("web-v1-1", "v1").await;
    fx.logs_until_last(&h, "ready").await;
    fx.rt.stop(&h).await.unwrap();
    // It survived SIGTERM (the trap ran) and is gone: only SIGKILL does that.
    assert!(!is_running(&h));
    let logs = fx.rt.logs(&h, 20).await.unwrap();
    assert!(logs.iter().any(|l| l == "got TERM"), "{logs:?}");
    assert!(fx.events.try_recv().is_err());
}

#[tokio::test]
async fn stop_kills_the_whole_group_when_terminate_is_ignored() {
    // The brief's case: SIG_IGN is inherited, so neither sh nor sleep reacts to TERM.
    let mut fx = Fixture::with("sh -c 'trap \"\" TERM; echo ready; sleep 60'", |s| {
        s.stop_timeout = Duration::from_millis(300)
    });
    let h = fx.start("web-v1-1", "v1").await;
    fx.logs_until_last(&h, "ready").await;
    fx.rt.stop(&h).await.unwrap();
    assert!(!is_running(&h));
    let (pid, _, _) = process_of(&h);
    assert!(
        !group_has_live_members(pid),
        "a member of the group survived"
    );
    assert!(fx.events.try_recv().is_err());
}

#[tokio::test]
async fn a_restarted_runtime_adopts_the_same_process_and_never_a_reused_pid() {
    let fx = Fixture::new("sh -c 'echo up; exec sleep 60'");
    let h = fx.start("web-v1-1", "v1").await;
    // A second runtime, as a restarted baton would build it from the same config.
    let (tx, mut events) = mpsc::unbounded_channel();
    let restarted = ProcessRuntime::new(fx.spec.clone(), tx);

    let mut other_start = h.clone();
    if let HandleDetail::Process {
        proc_start_ticks, ..
    } = &mut other_start.detail
    {
        *proc_start_ticks += 1;
    }
    assert!(
        !restarted.adopt(&other_start).await.unwrap(),
        "pid alive, start time differs"
    );
    assert!(restarted.adopt(&h).await.unwrap());
    assert!(
        restarted.adopt(&h).await.unwrap(),
        "adopting twice is harmless"
    );

    // The shell may not have written its line yet: wait (bounded) until it has, so the
    // last log line reported with the exit is known.
    for _ in 0..250 {
        if restarted
            .logs(&h, 5)
            .await
            .unwrap()
            .iter()
            .any(|l| l == "up")
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Its exit is noticed by polling, since it is not the restarted runtime's child.
    let (pid, _, _) = process_of(&h);
    killpg(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let ev = tokio::time::timeout(support::PATIENCE, events.recv())
        .await
        .unwrap()
        .unwrap();
    let (id, status, logs) = exited(ev);
    assert_eq!(id, "web-v1-1");
    assert!(status.contains("adopted after a baton restart"), "{status}");
    assert_eq!(logs.last().map(String::as_str), Some("up"));
    assert!(
        !restarted.adopt(&h).await.unwrap(),
        "a gone process is not adopted"
    );
}

#[tokio::test]
async fn an_adopted_instance_is_stopped_without_an_exit_event() {
    let fx = Fixture::new("sleep 60");
    let h = fx.start("web-v1-1", "v1").await;
    let (tx, mut events) = mpsc::unbounded_channel();
    let restarted = ProcessRuntime::new(fx.spec.clone(), tx);
    assert!(restarted.adopt(&h).await.unwrap());
    restarted.stop(&h).await.unwrap();
    assert!(!is_running(&h));
    assert!(events.try_recv().is_err());
}

#[tokio::test]
async fn damaged_handles_are_never_signalled() {
    let fx = Fixture::new("sleep 60");
    let mut h = fx.start("web-v1-1", "v1").await;
    let original = h.clone();
    if let HandleDetail::Process { pid, pgid, .. } = &mut h.detail {
        *pid = 0;
        *pgid = 0;
    }
    let err = fx.rt.stop(&h).await.unwrap_err();
    assert!(err.to_string().contains("refusing to signal"), "{err}");
    assert!(is_running(&original));
}
