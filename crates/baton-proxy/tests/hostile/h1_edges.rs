//! HTTP/1 edge cases where the framing guard, not hyper, decides: a bare LF in a
//! chunked trailer section (hyper alone would wait for ever holding a half request
//! open upstream) and `HTTP/1.2`-style minor versions (RFC 9110 §2.5: handled as
//! HTTP/1.1; hyper alone refuses them).

use crate::common::*;
use crate::{exchange, read_rest, setup};
use baton_proxy::ProxyConfig;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const CHUNKED_HEAD: &[u8] = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";

/// Trailer sections with a bare LF, each after a first chunk, as the client sent them.
/// In the last, hyper alone would read the bare LF as part of a trailer line, end the
/// body at the blank line and serve the smuggled request behind it.
fn bare_lf_trailers() -> [&'static [u8]; 4] {
    [
        b"0\r\nX-Trailer: 1\n\r\n",
        b"0\r\n\n",
        b"0\r\nX-Trailer: 1\r\n\n",
        b"0\r\nX-Trailer: 1\n\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
}

#[tokio::test]
async fn a_bare_lf_in_a_trailer_arriving_with_the_head_gets_400_at_once() {
    let (p, backend) = setup(ProxyConfig::default()).await;
    for trailer in bare_lf_trailers() {
        let bytes = [CHUNKED_HEAD, b"5\r\nhello\r\n", trailer].concat();
        let seen = exchange(p.addr, &bytes).await;
        assert_eq!(
            seen.statuses,
            [400],
            "{:?}: {}",
            String::from_utf8_lossy(trailer),
            seen.text
        );
        assert!(seen.closed, "{:?}", String::from_utf8_lossy(trailer));
        assert_eq!(backend.count(), 0, "{:?}", String::from_utf8_lossy(trailer));
    }
}

/// The trailer arrives after the head and first chunk were sent on: the upstream
/// request is aborted (the backend never gets a complete request, its connection is
/// closed) and the client connection ends with an error status, instead of both
/// hanging until the upstream timeout.
#[tokio::test]
async fn a_bare_lf_in_a_late_trailer_aborts_the_upstream_request() {
    // Streaming (no read-ahead): the head reaches the backend before the trailer.
    let (p, backend) = setup(ProxyConfig {
        request_buffering: None,
        ..ProxyConfig::default()
    })
    .await;
    for (i, trailer) in bare_lf_trailers().into_iter().enumerate() {
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        s.write_all(&[CHUNKED_HEAD, b"5\r\nhello\r\n"].concat())
            .await
            .unwrap();
        let reached = i as u64 + 1;
        assert!(
            eventually(500, || backend.count() == reached).await,
            "head never forwarded"
        );
        s.write_all(trailer).await.unwrap();
        let seen = read_rest(&mut s, Duration::from_secs(5)).await;
        assert!(seen.closed, "connection left open: {}", seen.text);
        assert!(seen.statuses.iter().all(|c| *c >= 400), "{}", seen.text);
        assert!(
            eventually(500, || backend.open.load(SeqCst) == 0).await,
            "the upstream connection carrying the half request stayed open"
        );
        assert_eq!(backend.complete.load(SeqCst), 0, "a half request completed");
    }
    // The connection-level fix leaves proper trailers alone.
    let ok = [
        CHUNKED_HEAD,
        b"5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n",
        b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ]
    .concat();
    let seen = exchange(p.addr, &ok).await;
    assert_eq!(seen.statuses, [200, 200], "{}", seen.text);
}

#[tokio::test]
async fn a_bare_lf_in_a_late_trailer_read_ahead_gets_400_before_any_backend() {
    // The default read-ahead reads the whole body, trailer included, before routing.
    let (p, backend) = setup(ProxyConfig::default()).await;
    for trailer in bare_lf_trailers() {
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        s.write_all(&[CHUNKED_HEAD, b"5\r\nhello\r\n"].concat())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.write_all(trailer).await.unwrap();
        let seen = read_rest(&mut s, Duration::from_secs(5)).await;
        assert!(seen.closed, "connection left open: {}", seen.text);
        assert!(
            !seen.statuses.is_empty() && seen.statuses.iter().all(|c| *c >= 400),
            "{}",
            seen.text
        );
    }
    assert_eq!(
        backend.count(),
        0,
        "a request with a bad trailer reached the backend"
    );
}

#[tokio::test]
async fn minor_versions_above_one_are_served_as_http_1_1() {
    let (p, backend) = setup(ProxyConfig::default()).await;
    for version in ["HTTP/1.2", "HTTP/1.9"] {
        let before = backend.count();
        let bytes = format!(
            "POST /a {version}\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
             GET /last {version}\r\nHost: x\r\nConnection: close\r\n\r\n"
        );
        let seen = exchange(p.addr, bytes.as_bytes()).await;
        assert_eq!(seen.statuses, [200, 200], "{version}: {}", seen.text);
        assert!(seen.text.starts_with("HTTP/1.1 200"), "{}", seen.text);
        assert_eq!(backend.count() - before, 2, "{version}");
        assert_eq!(backend.complete.load(SeqCst), backend.count());
    }
    // Not a one-digit minor version of HTTP/1: still refused, reaching no backend.
    for line in [
        "GET / HTTP/1.10",
        "GET / HTTP/1.2x",
        "GET / HTTP/2.0",
        "GET / HTTP/1.",
    ] {
        let before = backend.count();
        let seen = exchange(p.addr, format!("{line}\r\nHost: x\r\n\r\n").as_bytes()).await;
        assert_eq!(seen.statuses, [400], "{line}: {}", seen.text);
        assert_eq!(backend.count(), before, "{line}");
    }
}
