//! `spawn_monitor` against a real server whose answer changes while it is watched.

#![allow(clippy::unwrap_used)]

mod support;

use baton_core::{HealthSpec, HumanDuration};
use baton_health::{spawn_monitor, HealthEvent};
use std::time::Duration;
use support::{refused_addr, TestServer};
use tokio::sync::mpsc;

fn fast_spec() -> HealthSpec {
    HealthSpec {
        interval: HumanDuration::from_millis(50),
        timeout: HumanDuration::from_millis(500),
        healthy: 2,
        unhealthy: 2,
        startup_timeout: HumanDuration::from_secs(30),
        ..HealthSpec::default()
    }
}

/// The next event; a bound only so a broken monitor fails the test instead of hanging it.
async fn next(rx: &mut mpsc::Receiver<HealthEvent>) -> HealthEvent {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("no health event within 20s")
        .expect("monitor ended without an event")
}

fn healthy(id: &str) -> HealthEvent {
    HealthEvent::Healthy { id: id.into() }
}

#[tokio::test]
async fn reports_healthy_then_unhealthy_then_healthy_again() {
    let server = TestServer::start(200).await;
    let (tx, mut rx) = mpsc::channel(8);
    let _monitor = spawn_monitor("web-1".into(), server.addr, fast_spec(), tx);
    assert_eq!(next(&mut rx).await, healthy("web-1"));
    server.set_status(500);
    assert_eq!(
        next(&mut rx).await,
        HealthEvent::Unhealthy {
            id: "web-1".into(),
            reason: "status 500".into()
        }
    );
    server.set_status(204);
    assert_eq!(next(&mut rx).await, healthy("web-1"));
}

#[tokio::test]
async fn startup_timeout_when_never_healthy() {
    let server = TestServer::start(503).await;
    let spec = HealthSpec {
        startup_timeout: HumanDuration::from_millis(300),
        ..fast_spec()
    };
    let (tx, mut rx) = mpsc::channel(8);
    let monitor = spawn_monitor("web-2".into(), server.addr, spec, tx);
    assert_eq!(
        next(&mut rx).await,
        HealthEvent::StartupTimeout {
            id: "web-2".into(),
            last_error: "status 503".into()
        }
    );
    // The monitor is done: the channel closes with nothing more.
    assert_eq!(rx.recv().await, None);
    assert!(monitor.is_finished());
}

#[tokio::test]
async fn startup_timeout_reports_the_last_connect_error() {
    let addr = refused_addr().await;
    let spec = HealthSpec {
        startup_timeout: HumanDuration::from_millis(300),
        ..fast_spec()
    };
    let (tx, mut rx) = mpsc::channel(8);
    let _monitor = spawn_monitor("web-3".into(), addr, spec, tx);
    assert_eq!(
        next(&mut rx).await,
        HealthEvent::StartupTimeout {
            id: "web-3".into(),
            last_error: "connection refused".into()
        }
    );
}

#[tokio::test]
async fn failures_before_healthy_do_not_report_unhealthy() {
    // Starts failing, then comes up: the only event is Healthy.
    let server = TestServer::start(503).await;
    let (tx, mut rx) = mpsc::channel(8);
    let _monitor = spawn_monitor("web-4".into(), server.addr, fast_spec(), tx);
    // Let several failing probes happen (observed, not timed) before recovering.
    for _ in 0..200 {
        if server.heads().len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        server.heads().len() >= 4,
        "the monitor did not keep probing"
    );
    server.set_status(200);
    assert_eq!(next(&mut rx).await, healthy("web-4"));
}

#[tokio::test]
async fn dropping_the_handle_ends_the_task() {
    let server = TestServer::start(200).await;
    let (tx, mut rx) = mpsc::channel(8);
    let monitor = spawn_monitor("web-5".into(), server.addr, fast_spec(), tx);
    assert_eq!(next(&mut rx).await, healthy("web-5"));
    monitor.stop();
    // The task owned the only sender: the channel closes once it is gone.
    let end = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await;
    assert_eq!(end.unwrap(), None);
}
