//! `probe` against real sockets on loopback.

#![allow(clippy::unwrap_used)]

mod support;

use baton_core::{HealthSpec, HumanDuration, ProbeKind};
use std::time::Duration;
use support::{refused_addr, TestServer};

fn spec() -> HealthSpec {
    HealthSpec {
        timeout: HumanDuration::from_millis(500),
        ..HealthSpec::default()
    }
}

#[tokio::test]
async fn healthy_server_passes() {
    let server = TestServer::start(200).await;
    assert_eq!(baton_health::probe(server.addr, &spec()).await, Ok(()));
}

#[tokio::test]
async fn server_error_fails_with_its_status() {
    let server = TestServer::start(503).await;
    assert_eq!(
        baton_health::probe(server.addr, &spec()).await,
        Err("status 503".to_string())
    );
}

#[tokio::test]
async fn slow_server_times_out() {
    let server = TestServer::start(200).await;
    server.set_delay(Duration::from_secs(30));
    let spec = HealthSpec {
        timeout: HumanDuration::from_millis(200),
        ..spec()
    };
    assert_eq!(
        baton_health::probe(server.addr, &spec).await,
        Err("timed out after 200ms".to_string())
    );
}

#[tokio::test]
async fn nothing_listening_is_refused() {
    let addr = refused_addr().await;
    assert_eq!(
        baton_health::probe(addr, &spec()).await,
        Err("connection refused".to_string())
    );
}

#[tokio::test]
async fn tcp_kind_only_needs_a_connection() {
    // Accepts but never answers: TCP passes, HTTP times out.
    let server = TestServer::start(0).await;
    let tcp = HealthSpec {
        kind: ProbeKind::Tcp,
        ..spec()
    };
    assert_eq!(baton_health::probe(server.addr, &tcp).await, Ok(()));
    let http = HealthSpec {
        timeout: HumanDuration::from_millis(200),
        ..spec()
    };
    assert!(baton_health::probe(server.addr, &http).await.is_err());
    let refused = refused_addr().await;
    assert_eq!(
        baton_health::probe(refused, &tcp).await,
        Err("connection refused".to_string())
    );
}

#[tokio::test]
async fn expect_status_replaces_the_2xx_rule() {
    let server = TestServer::start(404).await;
    assert!(baton_health::probe(server.addr, &spec()).await.is_err());
    let expect_404 = HealthSpec {
        expect_status: vec![404],
        ..spec()
    };
    assert_eq!(baton_health::probe(server.addr, &expect_404).await, Ok(()));
    server.set_status(200);
    assert_eq!(
        baton_health::probe(server.addr, &expect_404).await,
        Err("status 200".to_string())
    );
}

#[tokio::test]
async fn sends_path_and_host_header() {
    let server = TestServer::start(200).await;
    let with_host = HealthSpec {
        path: "/healthz?deep=1".into(),
        host: Some("app.example.test".into()),
        ..spec()
    };
    baton_health::probe(server.addr, &with_host).await.unwrap();
    baton_health::probe(server.addr, &spec()).await.unwrap();
    let heads = server.heads();
    assert_eq!(heads.len(), 2);
    assert!(
        heads[0].starts_with("get /healthz?deep=1 http/1.1\r\n"),
        "{}",
        heads[0]
    );
    assert!(
        heads[0].contains("\r\nhost: app.example.test\r\n"),
        "{}",
        heads[0]
    );
    let default_host = format!("\r\nhost: {}\r\n", server.addr);
    assert!(heads[1].starts_with("get / http/1.1\r\n"), "{}", heads[1]);
    assert!(heads[1].contains(&default_host), "{}", heads[1]);
}

#[tokio::test]
async fn invalid_path_is_reported_without_sending() {
    let server = TestServer::start(200).await;
    let bad = HealthSpec {
        path: "healthz".into(),
        ..spec()
    };
    let err = baton_health::probe(server.addr, &bad).await.unwrap_err();
    assert!(err.contains("must start with '/'"), "{err}");
    assert!(server.heads().is_empty());
}
