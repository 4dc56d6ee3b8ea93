//! Draining a removed backend: slow requests finish with 200, idle upstream connections
//! are closed by the proxy, and a WebSocket keeps working until the drain deadline,
//! then ends with a Going Away close frame and a clean close (EOF, not a reset).

use crate::common::*;
use baton_proxy::ProxyConfig;
use http::StatusCode;
use std::io;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn slow_requests_complete_after_their_backend_is_removed_and_drained() {
    let (a, b) = (
        sample("a1", "v1", None).await,
        sample("b1", "v2", None).await,
    );
    let p = start_proxy(ProxyConfig::default()).await;
    p.proxy
        .publish(&table(pools(vec![pool("v1", 100, vec![a.spec()])])))
        .unwrap();
    let addr = p.addr;
    let slow: Vec<_> = (0..5)
        .map(|_| tokio::spawn(async move { get_once(addr, "/slow?ms=2000", &[]).await }))
        .collect();
    assert!(eventually(300, || p.proxy.in_flight("a1") == 5).await);

    p.proxy
        .publish(&table(pools(vec![pool("v2", 100, vec![b.spec()])])))
        .unwrap();
    assert_eq!(version_of(&get_once(p.addr, "/", &[]).await), "v2");
    let report = p.proxy.drain("a1", Duration::from_secs(20)).await;
    assert!(report.completed, "{report:?}");
    assert_eq!(report.in_flight_at_deadline, 0);
    for t in slow {
        let answer = t.await.unwrap();
        assert_eq!(answer.0, StatusCode::OK);
        assert_eq!(version_of(&answer), "v1");
    }
    assert_eq!(p.proxy.in_flight("a1"), 0);
    // Idempotent: a second drain (the backend is forgotten by now) returns at once.
    assert!(p.proxy.drain("a1", Duration::from_secs(20)).await.completed);
}

#[tokio::test]
async fn removal_closes_idle_upstream_connections_and_drain_needs_removal() {
    removal_closes_idle_upstream_connections_and_drain_needs_removal_scenario().await;
}

/// The same with two proxy workers (`baton_proxy::start_workers`).
#[tokio::test]
async fn removal_closes_idle_upstream_connections_and_drain_needs_removal_with_two_workers() {
    baton_proxy::start_workers(2).unwrap();
    removal_closes_idle_upstream_connections_and_drain_needs_removal_scenario().await;
}

async fn removal_closes_idle_upstream_connections_and_drain_needs_removal_scenario() {
    let backend = counting("c1", "v1", 200).await;
    let other = counting("c2", "v2", 200).await;
    let p = start_proxy(ProxyConfig::default()).await;
    p.proxy
        .publish(&table(pools(vec![pool("v1", 100, vec![backend.spec()])])))
        .unwrap();
    assert_eq!(get_once(p.addr, "/", &[]).await.0, StatusCode::OK);
    assert!(
        eventually(300, || backend
            .open
            .load(std::sync::atomic::Ordering::SeqCst)
            == 1)
        .await
    );

    // Still routed: drain refuses to wait.
    let report = p.proxy.drain("c1", Duration::from_secs(20)).await;
    assert!(!report.completed);

    p.proxy
        .publish(&table(pools(vec![pool("v2", 100, vec![other.spec()])])))
        .unwrap();
    assert!(p.proxy.drain("c1", Duration::from_secs(20)).await.completed);
    let closed = eventually(300, || {
        backend.open.load(std::sync::atomic::Ordering::SeqCst) == 0
    });
    assert!(
        closed.await,
        "the proxy kept its idle connection to a drained backend"
    );
}

#[tokio::test]
async fn websocket_keeps_echoing_until_the_drain_deadline_then_closes_cleanly() {
    let (a, b) = (
        sample("a1", "v1", None).await,
        sample("b1", "v2", None).await,
    );
    let p = start_proxy(ProxyConfig::default()).await;
    p.proxy
        .publish(&table(pools(vec![pool("v1", 100, vec![a.spec()])])))
        .unwrap();
    let mut ws = ws_connect(p.addr).await;
    assert_eq!(ws_echo(&mut ws, "hello").await.unwrap(), "hello");
    assert_eq!(p.proxy.in_flight("a1"), 1);

    p.proxy
        .publish(&table(pools(vec![pool("v2", 100, vec![b.spec()])])))
        .unwrap();
    assert_eq!(
        ws_echo(&mut ws, "after removal").await.unwrap(),
        "after removal"
    );
    let proxy = p.proxy.clone();
    let drain = tokio::spawn(async move { proxy.drain("a1", Duration::from_millis(800)).await });
    let mut echoed = 0;
    while !drain.is_finished() {
        let msg = format!("during drain {echoed}");
        match ws_echo(&mut ws, &msg).await {
            Ok(back) => {
                assert_eq!(back, msg);
                echoed += 1;
            }
            // Only the deadline may end it, and only with a Going Away close.
            Err(e) => {
                assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted, "{e}");
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let report = drain.await.unwrap();
    assert!(
        echoed > 0,
        "the WebSocket stopped working before the deadline"
    );
    assert!(!report.completed);
    assert_eq!(report.upgraded_closed, 1);
    assert_eq!(report.in_flight_at_deadline, 1);

    // Then EOF (after the close frame, if the loop above did not read it).
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), ws.read_to_end(&mut rest)).await;
    read.expect("the proxy never closed the WebSocket")
        .expect("reset instead of FIN");
    assert!(
        rest.is_empty() || (rest[0] == 0x88 && rest[2..4] == [0x03, 0xe9]),
        "{rest:?}"
    );
    assert!(eventually(300, || p.proxy.in_flight("a1") == 0).await);
    assert_eq!(version_of(&get_once(p.addr, "/", &[]).await), "v2");
}

/// Send one masked text frame and read the echoed (unmasked) frame.
async fn ws_echo(s: &mut TcpStream, msg: &str) -> io::Result<String> {
    assert!(msg.len() < 126);
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | msg.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(msg.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&frame).await?;
    let mut head = [0u8; 2];
    s.read_exact(&mut head).await?;
    if head[0] == 0x88 {
        let mut payload = vec![0u8; usize::from(head[1] & 0x7f)];
        s.read_exact(&mut payload).await?;
        assert_eq!(payload[..2], [0x03, 0xe9], "close status 1001");
        return Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "close 1001",
        ));
    }
    assert_eq!(head[0], 0x81, "not a text frame");
    let mut payload = vec![0u8; usize::from(head[1] & 0x7f)];
    s.read_exact(&mut payload).await?;
    Ok(String::from_utf8(payload).unwrap())
}

#[tokio::test]
async fn proxy_shutdown_stops_accepting_and_finishes_open_requests() {
    proxy_shutdown_stops_accepting_and_finishes_open_requests_scenario().await;
}

/// The same with two proxy workers (`baton_proxy::start_workers`).
#[tokio::test]
async fn proxy_shutdown_stops_accepting_and_finishes_open_requests_with_two_workers() {
    baton_proxy::start_workers(2).unwrap();
    proxy_shutdown_stops_accepting_and_finishes_open_requests_scenario().await;
}

async fn proxy_shutdown_stops_accepting_and_finishes_open_requests_scenario() {
    let a = sample("a1", "v1", None).await;
    let mut p = start_proxy(ProxyConfig::default()).await;
    p.proxy
        .publish(&table(pools(vec![pool("v1", 100, vec![a.spec()])])))
        .unwrap();
    let mut idle = h1(p.addr).await;
    assert_eq!(get(&mut idle, "/").await.0, StatusCode::OK);
    let addr = p.addr;
    let slow = tokio::spawn(async move { get_once(addr, "/slow?ms=1000", &[]).await });
    assert!(eventually(300, || p.proxy.in_flight("a1") == 1).await);

    let served = p.shutdown();
    let mut refused = false;
    for _ in 0..300 {
        if TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "the proxy kept accepting after shutdown");
    let answer = slow.await.unwrap();
    assert_eq!(answer.0, StatusCode::OK);
    served.await.unwrap().unwrap();
    // The idle keep-alive connection was closed, not left hanging.
    assert!(try_send(&mut idle, request("GET", "/", &[], ""))
        .await
        .is_err());
}

#[tokio::test]
async fn requests_still_running_at_the_drain_deadline_are_cancelled_not_retried() {
    let (a, b) = (
        sample("a1", "v1", None).await,
        sample("b1", "v2", None).await,
    );
    let p = start_proxy(ProxyConfig::default()).await;
    p.proxy
        .publish(&table(pools(vec![pool("v1", 100, vec![a.spec()])])))
        .unwrap();
    let addr = p.addr;
    let slow = tokio::spawn(async move { get_once(addr, "/slow?ms=30000", &[]).await });
    assert!(eventually(300, || p.proxy.in_flight("a1") == 1).await);
    p.proxy
        .publish(&table(pools(vec![pool("v2", 100, vec![b.spec()])])))
        .unwrap();

    let report = p.proxy.drain("a1", Duration::from_millis(300)).await;
    assert!(!report.completed);
    assert_eq!(
        (report.in_flight_at_deadline, report.upgraded_closed),
        (1, 0)
    );
    let answer = tokio::time::timeout(Duration::from_secs(10), slow).await;
    let answer = answer.expect("the cancelled request kept running").unwrap();
    assert_eq!(answer.0, StatusCode::BAD_GATEWAY);
    assert!(eventually(300, || p.proxy.in_flight("a1") == 0).await);
}
