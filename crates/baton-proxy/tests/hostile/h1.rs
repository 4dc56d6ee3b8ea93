//! The HTTP/1.1 request-smuggling and malformed-head corpus. Each case is sent alone
//! on a fresh connection, most with a second request smuggled behind it; a refused
//! case must get exactly its status, have its connection closed, and reach no
//! backend. Controls (valid requests) prove the harness sees success too.

use crate::common::*;
use crate::{exchange, read_rest, setup};
use baton_proxy::ProxyConfig;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";

/// One request head (and body) built from header lines.
fn post(headers: &str, body: &str) -> Vec<u8> {
    format!("POST / HTTP/1.1\r\nHost: x\r\n{headers}\r\n\r\n{body}{SMUGGLED}").into_bytes()
}

fn chunked(body: &str) -> Vec<u8> {
    post("Transfer-Encoding: chunked", body)
}

/// `(name, request bytes, expected status, requests the backend may see)`.
fn corpus() -> Vec<(&'static str, Vec<u8>, u16)> {
    let long_ext = format!("5;{}\r\nhello\r\n0\r\n\r\n", "x".repeat(5000));
    vec![
        // Content-Length + Transfer-Encoding in every order and disguise.
        ("CL then TE", post("Content-Length: 4\r\nTransfer-Encoding: chunked", "0\r\n\r\n"), 400),
        ("TE then CL", post("Transfer-Encoding: chunked\r\nContent-Length: 40", "0\r\n\r\n"), 400),
        ("CL 0 + TE", post("Content-Length: 0\r\nTransfer-Encoding: chunked", "0\r\n\r\n"), 400),
        ("TE with tab + CL", post("Transfer-Encoding:\tchunked\r\nContent-Length: 5", "0\r\n\r\n"), 400),
        ("TE xchunked + CL", post("Transfer-Encoding: xchunked\r\nContent-Length: 5", "0\r\n\r\n"), 400),
        // Duplicate, empty and non-decimal lengths.
        ("CL twice, different", post("Content-Length: 5\r\nContent-Length: 6", "hello!"), 400),
        ("CL twice, same", post("Content-Length: 5\r\nContent-Length: 5", "hello"), 400),
        ("CL list, same", post("Content-Length: 5, 5", "hello"), 400),
        ("CL list, different", post("Content-Length: 5, 6", "hello!"), 400),
        ("CL empty", post("Content-Length: ", ""), 400),
        ("CL +5", post("Content-Length: +5", "hello"), 400),
        ("CL -5", post("Content-Length: -5", "hello"), 400),
        ("CL 0x5", post("Content-Length: 0x5", "hello"), 400),
        ("CL 5 5", post("Content-Length: 5 5", "hello"), 400),
        ("CL overflow", post("Content-Length: 184467440737095516160", "hello"), 400),
        // Line folding.
        ("obs-fold", post("X-A: a\r\n b\r\nContent-Length: 0", ""), 400),
        ("obs-fold TE", post("Transfer-Encoding: identity\r\n chunked", "0\r\n\r\n"), 400),
        ("obs-fold CL", post("Content-Length:\r\n 5", "hello"), 400),
        // Invalid chunk sizes and framing (arriving with the head).
        ("chunk size not hex", chunked("zz\r\nhello\r\n0\r\n\r\n"), 400),
        ("chunk size overflow", chunked("1ffffffffffffffff\r\nhello\r\n0\r\n\r\n"), 400),
        ("chunk size negative", chunked("-5\r\nhello\r\n0\r\n\r\n"), 400),
        ("chunk size with space inside", chunked("5 5\r\nhello\r\n0\r\n\r\n"), 400),
        ("chunk size 0x prefix", chunked("0x5\r\nhello\r\n0\r\n\r\n"), 400),
        ("chunk extension with bare LF", chunked("5;a\nhello\r\n0\r\n\r\n"), 400),
        ("chunk extension over 4 KiB", chunked(&long_ext), 400),
        ("chunk size line bare LF", chunked("5\nhello\r\n0\r\n\r\n"), 400),
        ("chunk data without CRLF", chunked("5\r\nhelloX0\r\n\r\n"), 400),
        // Transfer codings other than one `chunked`.
        ("TE chunked, identity", post("Transfer-Encoding: chunked, identity", "0\r\n\r\n"), 400),
        ("TE identity", post("Transfer-Encoding: identity", "0\r\n\r\n"), 400),
        ("TE gzip, chunked", post("Transfer-Encoding: gzip, chunked", "0\r\n\r\n"), 400),
        ("TE twice", post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked", "0\r\n\r\n"), 400),
        ("TE gzip + TE chunked", post("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked", "0\r\n\r\n"), 400),
        ("TE empty", post("Transfer-Encoding: ", "0\r\n\r\n"), 400),
        (
            "TE in HTTP/1.0",
            format!("POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}").into_bytes(),
            400,
        ),
        // Header and line syntax.
        ("space before colon", post("Content-Length : 5", "hello"), 400),
        ("space before colon, TE", post("Transfer-Encoding : chunked", "0\r\n\r\n"), 400),
        ("header name with (", post("X(A): 1\r\nContent-Length: 0", ""), 400),
        ("two Host headers", post("Host: y\r\nContent-Length: 0", ""), 400),
        ("bare LF line endings", b"GET / HTTP/1.1\nHost: x\n\n".to_vec(), 400),
        ("bare LF after one header", b"GET / HTTP/1.1\r\nHost: x\nX-A: 1\r\n\r\n".to_vec(), 400),
        ("bare CR line ending", b"GET / HTTP/1.1\rHost: x\r\n\r\n".to_vec(), 400),
        ("CR inside a value", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n".to_vec(), 400),
        ("NUL inside a value", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n".to_vec(), 400),
        ("two spaces in request line", b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 400),
        ("unknown major version", b"GET / HTTP/2.1\r\nHost: x\r\n\r\n".to_vec(), 400),
        ("request line junk", b"GET / HTTP/1.1 x\r\nHost: x\r\n\r\n".to_vec(), 400),
        // Sizes.
        (
            "URI over 64 KiB",
            format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70 * 1024)).into_bytes(),
            431,
        ),
        (
            "one header over 64 KiB",
            format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(70 * 1024)).into_bytes(),
            431,
        ),
        (
            "101 headers",
            format!("GET / HTTP/1.1\r\nHost: x\r\n{}\r\n", "X-H: v\r\n".repeat(101)).into_bytes(),
            431,
        ),
        ("CONNECT", b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n".to_vec(), 405),
    ]
}

#[tokio::test]
async fn the_smuggling_corpus_is_refused_and_reaches_no_backend() {
    let (p, backend) = setup(ProxyConfig::default()).await;
    let mut failures = Vec::new();
    for (name, bytes, want) in corpus() {
        let before = backend.count();
        let seen = exchange(p.addr, &bytes).await;
        let reached = backend.count() - before;
        let got = seen.statuses.first().copied();
        println!(
            "{name:32} -> {got:?} closed={} backend+{reached}",
            seen.closed
        );
        if got != Some(want) || seen.statuses.len() != 1 || !seen.closed || reached != 0 {
            failures.push(format!(
                "{name}: want {want}, closed, backend +0; got {:?}, closed={}, backend +{reached}: {:?}",
                seen.statuses, seen.closed, seen.text
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn valid_requests_that_look_alike_are_served() {
    let (p, backend) = setup(ProxyConfig::default()).await;
    let valid: [&[u8]; 5] = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: CHUNKED\r\n\r\n5;name=v\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length:   5  \r\n\r\nhello",
        b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    ];
    for (i, req) in valid.iter().enumerate() {
        let before = backend.count();
        let mut bytes = req.to_vec();
        bytes.extend_from_slice(b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let seen = exchange(p.addr, &bytes).await;
        assert_eq!(seen.statuses, [200, 200], "valid {i}: {}", seen.text);
        assert_eq!(backend.count() - before, 2, "valid {i}");
    }
}

/// A chunk-size error that arrives after the request was sent on cannot be answered
/// with 400 any more; the upstream request is aborted, so the backend never gets a
/// complete request, and the client connection is closed.
#[tokio::test]
async fn a_late_chunk_error_aborts_the_upstream_request() {
    // Streaming (no read-ahead), so the head reaches the backend before the bad chunk.
    let (p, backend) = setup(ProxyConfig {
        request_buffering: None,
        ..ProxyConfig::default()
    })
    .await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        .await
        .unwrap();
    assert!(
        eventually(500, || backend.count() == 1).await,
        "head never forwarded"
    );
    s.write_all(b"zz\r\n").await.unwrap();
    let seen = read_rest(&mut s, Duration::from_secs(5)).await;
    assert!(seen.closed, "connection left open: {}", seen.text);
    assert!(seen.statuses.iter().all(|c| *c >= 400), "{}", seen.text);
    assert!(
        eventually(500, || backend
            .open
            .load(std::sync::atomic::Ordering::SeqCst)
            == 0)
        .await,
        "the upstream connection carrying the broken body stayed open"
    );
}

/// Absolute-form: the URI's authority wins over `Host` (RFC 9112 §3.2.2), for routing
/// and for what the backend sees, so the two can never disagree.
#[tokio::test]
async fn absolute_form_routes_by_its_own_authority() {
    let backend = counting("c1", "v1", 200).await;
    let p = start_proxy(ProxyConfig::default()).await;
    let mut t = table(pools(vec![pool("v1", 100, vec![backend.spec()])]));
    t.routes[0].host = Some("good.test".into());
    p.proxy.publish(&t).unwrap();

    let seen = exchange(
        p.addr,
        b"GET http://evil.test/ HTTP/1.1\r\nHost: good.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(seen.statuses, [404], "{}", seen.text);
    assert_eq!(backend.count(), 0);

    let seen = exchange(
        p.addr,
        b"GET http://good.test/x HTTP/1.1\r\nHost: evil.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(seen.statuses, [200], "{}", seen.text);
    let h = backend.headers();
    assert_eq!(h["host"], "good.test");
    assert_eq!(h["x-forwarded-host"], "good.test");
}

/// Slowloris: a head dribbled slower than `client_header_timeout` gets 408 and its
/// connection closed; nothing reaches the backend.
#[tokio::test]
async fn a_dribbled_head_gets_408_and_is_closed() {
    let (p, backend) = setup(ProxyConfig {
        client_header_timeout: Duration::from_millis(300),
        ..ProxyConfig::default()
    })
    .await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    // One header line every 50 ms for at most 10 s, until writes fail or the answer
    // arrives.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut i = 0;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut probe = [0u8; 1];
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(1), s.peek(&mut probe)).await
        {
            break;
        }
        if s.write_all(format!("X-Drip-{i}: 1\r\n").as_bytes())
            .await
            .is_err()
        {
            break;
        }
        i += 1;
    }
    let seen = read_rest(&mut s, Duration::from_secs(5)).await;
    assert_eq!(seen.statuses, [408], "{}", seen.text);
    assert!(seen.closed);
    assert_eq!(backend.count(), 0);
}
