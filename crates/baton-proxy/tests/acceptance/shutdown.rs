//! Shutting down (what the old process does after `baton upgrade` hands over) without
//! failing a request from a client that reuses kept-alive connections without checking
//! them and never retries, as Python's `http.client` does: an idle connection is not
//! closed under the client's next request, that request is answered with
//! `Connection: close`, a request in progress is answered with it too, and an idle
//! connection is finally closed with a FIN (never a reset). Raw sockets, so nothing
//! between the test and the proxy checks the connection first.

use crate::common::*;
use baton_proxy::ProxyConfig;
use std::io;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: proxy.test\r\n\r\n";

/// Reads one response with a Content-Length body; returns its head (lowercased).
async fn read_response(s: &mut TcpStream) -> io::Result<String> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("closed after {} bytes", buf.len()),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = buf.len() - head_end;
    while body < len {
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await?;
        assert!(n > 0, "body cut");
        body += n;
    }
    Ok(head)
}

/// The end of the stream, as a clean FIN (`Ok`) or an error (a reset).
async fn read_end(s: &mut TcpStream) -> io::Result<usize> {
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut rest))
        .await
        .expect("the connection was not closed within 30 s")
}

async fn proxy_with_app() -> (TestProxy, Sample) {
    let a = sample("a1", "v1", None).await;
    let p = start_proxy(ProxyConfig::default()).await;
    p.proxy
        .publish(&table(pools(vec![pool("v1", 100, vec![a.spec()])])))
        .unwrap();
    (p, a)
}

#[tokio::test]
async fn a_request_sent_on_an_idle_connection_after_shutdown_is_answered_with_close() {
    let (mut p, _a) = proxy_with_app().await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(GET).await.unwrap();
    let head = read_response(&mut s).await.unwrap();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");

    let served = p.shutdown();
    // Idle for longer than the drain used to wait before closing (1 s), the client sends
    // its next request without looking at the connection first.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.write_all(GET).await.unwrap();
    let head = read_response(&mut s)
        .await
        .expect("the request sent on the idle connection got no answer");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert_eq!(read_end(&mut s).await.unwrap(), 0);
    served.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_request_in_progress_at_shutdown_is_answered_with_close() {
    a_request_in_progress_at_shutdown_is_answered_with_close_scenario().await;
}

/// The same with two proxy workers (`baton_proxy::start_workers`).
#[tokio::test]
async fn a_request_in_progress_at_shutdown_is_answered_with_close_with_two_workers() {
    baton_proxy::start_workers(2).unwrap();
    a_request_in_progress_at_shutdown_is_answered_with_close_scenario().await;
}

async fn a_request_in_progress_at_shutdown_is_answered_with_close_scenario() {
    let (mut p, _a) = proxy_with_app().await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET /slow?ms=500 HTTP/1.1\r\nHost: proxy.test\r\n\r\n")
        .await
        .unwrap();
    assert!(eventually(300, || p.proxy.in_flight("a1") == 1).await);
    let served = p.shutdown();
    let head = read_response(&mut s).await.unwrap();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert_eq!(read_end(&mut s).await.unwrap(), 0);
    served.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_idle_connection_is_closed_at_shutdown_with_a_fin_not_a_reset() {
    an_idle_connection_is_closed_at_shutdown_with_a_fin_not_a_reset_scenario().await;
}

/// The same with two proxy workers (`baton_proxy::start_workers`).
#[tokio::test]
async fn an_idle_connection_is_closed_at_shutdown_with_a_fin_not_a_reset_with_two_workers() {
    baton_proxy::start_workers(2).unwrap();
    an_idle_connection_is_closed_at_shutdown_with_a_fin_not_a_reset_scenario().await;
}

async fn an_idle_connection_is_closed_at_shutdown_with_a_fin_not_a_reset_scenario() {
    let (mut p, _a) = proxy_with_app().await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(GET).await.unwrap();
    read_response(&mut s).await.unwrap();
    let served = p.shutdown();
    // Nothing more is sent: after its grace the connection ends with a FIN.
    assert_eq!(read_end(&mut s).await.unwrap(), 0);
    drop(s);
    served.await.unwrap().unwrap();
}

#[tokio::test]
async fn back_to_back_requests_across_shutdown_are_all_answered() {
    back_to_back_requests_across_shutdown_are_all_answered_scenario().await;
}

/// The same with two proxy workers (`baton_proxy::start_workers`).
#[tokio::test]
async fn back_to_back_requests_across_shutdown_are_all_answered_with_two_workers() {
    baton_proxy::start_workers(2).unwrap();
    back_to_back_requests_across_shutdown_are_all_answered_scenario().await;
}

async fn back_to_back_requests_across_shutdown_are_all_answered_scenario() {
    let (mut p, _a) = proxy_with_app().await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let mut served = None;
    let mut answered = 0;
    // The next request goes out as soon as a response is read; the shutdown lands
    // somewhere in the middle. Every request is answered, the last with `close`.
    loop {
        s.write_all(GET).await.unwrap();
        let head = read_response(&mut s)
            .await
            .unwrap_or_else(|e| panic!("request {answered} got no answer: {e}"));
        assert!(head.starts_with("http/1.1 200"), "{head}");
        answered += 1;
        if head.contains("connection: close") {
            break;
        }
        if answered == 20 {
            served = Some(p.shutdown());
        }
        assert!(answered < 100_000, "never told to close");
    }
    assert!(served.is_some(), "closed before the shutdown");
    assert_eq!(read_end(&mut s).await.unwrap(), 0);
    served.unwrap().await.unwrap().unwrap();
}
