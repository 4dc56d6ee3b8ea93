//! Hostile and malformed clients, over raw sockets: conflicting framing, oversized and
//! too-slow heads never reach a backend; `Connection` cannot strip the proxy's headers.

use crate::common::*;
use baton_proxy::ProxyConfig;
use http::StatusCode;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn setup(config: ProxyConfig) -> (TestProxy, Counting) {
    let backend = counting("c1", "v1", 200).await;
    let p = start_proxy(config).await;
    p.proxy
        .publish(&table(pools(vec![pool("v1", 100, vec![backend.spec()])])))
        .unwrap();
    (p, backend)
}

#[tokio::test]
async fn conflicting_framing_is_refused_and_never_reaches_the_backend() {
    let (p, backend) = setup(ProxyConfig::default()).await;
    let attacks: [&[u8]; 5] = [
        // CL first, then TE; the body smuggles a second request.
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        // TE first, then CL.
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 30\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
        // Obfuscated TE casing with a CL.
        b"POST / HTTP/1.1\r\nHost: x\r\ncontent-length: 5\r\nTRANSFER-ENCODING: chunked\r\n\r\n0\r\n\r\n",
        // Two different Content-Length values.
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        // The conflict on the second request of a keep-alive connection.
        b"GET /first HTTP/1.1\r\nHost: x\r\n\r\nPOST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ];
    for (i, attack) in attacks.iter().enumerate() {
        let before = backend.count();
        let answer = raw_exchange(p.addr, attack).await;
        let last = answer
            .rfind("HTTP/1.1 ")
            .map(|at| &answer[at..])
            .unwrap_or("");
        assert!(last.starts_with("HTTP/1.1 400"), "attack {i}: {answer}");
        let expected = u64::from(i == 4); // only the honest first request
        assert_eq!(
            backend.count() - before,
            expected,
            "attack {i} reached the backend"
        );
    }
}

#[tokio::test]
async fn oversized_heads_get_431_and_never_reach_the_backend() {
    let (p, backend) = setup(ProxyConfig::default()).await;
    let big = "a".repeat(70 * 1024);
    let req = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let answer = raw_exchange(p.addr, req.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let req = format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    let answer = raw_exchange(p.addr, req.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert_eq!(backend.count(), 0);
}

#[tokio::test]
async fn too_slow_heads_get_the_connection_closed_but_idle_keep_alive_does_not() {
    let config = ProxyConfig {
        client_header_timeout: Duration::from_millis(300),
        ..ProxyConfig::default()
    };
    let (p, backend) = setup(config).await;

    // Slowloris: a head that never ends, one header line every 50 ms.
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut closed = false;
    for i in 0..200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if s.write_all(format!("X-Drip-{i}: 1\r\n").as_bytes())
            .await
            .is_err()
        {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            // The slow head is answered 408, then the connection closes.
            Ok(Ok(n)) => {
                let answer = String::from_utf8_lossy(&buf[..n]);
                assert!(
                    answer.starts_with("HTTP/1.1 408"),
                    "unexpected answer: {answer}"
                );
            }
            Err(_) => {}
        }
    }
    assert!(closed, "a head dripping for 10 s was never cut off");
    assert_eq!(backend.count(), 0);

    // A keep-alive connection that is merely idle longer than the header timeout
    // stays usable.
    let mut c = h1(p.addr).await;
    assert_eq!(get(&mut c, "/").await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(get(&mut c, "/").await.0, StatusCode::OK);
    assert_eq!(backend.count(), 2);
}

#[tokio::test]
async fn idle_client_connections_are_closed_after_the_idle_timeout() {
    let config = ProxyConfig {
        client_idle_timeout: Duration::from_millis(300),
        ..ProxyConfig::default()
    };
    let (p, _backend) = setup(config).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    // The proxy answers, then closes the idle connection: read_to_end returns.
    let read = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "idle connection was never closed");
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn connection_header_cannot_strip_the_proxy_headers() {
    let (p, backend) = setup(ProxyConfig::default()).await;
    let answer = get_once(
        p.addr,
        "/",
        &[
            (
                "connection",
                "close, X-Forwarded-For, X-Forwarded-Host, X-Request-Id, X-Secret",
            ),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-secret", "hop"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("host", "Site.Example:8080"),
        ],
    )
    .await;
    assert_eq!(answer.0, StatusCode::OK);
    let seen = backend.headers();
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["x-forwarded-host"], "Site.Example:8080");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["host"], "Site.Example:8080");
    assert_eq!(seen["x-request-id"].len(), 32);
    for gone in ["x-secret", "keep-alive", "te", "proxy-authorization"] {
        assert!(!seen.contains_key(gone), "{gone} reached the backend");
    }

    // A request id from the client is kept; X-Forwarded-For from a trusted peer is
    // extended, from anyone else replaced.
    get_once(
        p.addr,
        "/",
        &[("x-request-id", "req-1"), ("x-forwarded-for", "1.2.3.4")],
    )
    .await;
    let seen = backend.headers();
    assert_eq!(seen["x-request-id"], "req-1");
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    let trusting = start_proxy(ProxyConfig {
        trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
        ..ProxyConfig::default()
    })
    .await;
    trusting
        .proxy
        .publish(&table(pools(vec![pool("v1", 100, vec![backend.spec()])])))
        .unwrap();
    get_once(trusting.addr, "/", &[("x-forwarded-for", "1.2.3.4")]).await;
    assert_eq!(backend.headers()["x-forwarded-for"], "1.2.3.4, 127.0.0.1");
}

#[tokio::test]
async fn http2_requests_reach_http11_backends_with_host_and_joined_cookies() {
    let (p, backend) = setup(ProxyConfig::default()).await;
    let mut c = h2(p.addr).await;
    let req = request("GET", "/x?y=1", &[("cookie", "a=1"), ("cookie", "b=2")], "");
    let answer = try_send_h2(&mut c, req, p.addr).await.unwrap();
    assert_eq!(answer.0, StatusCode::OK);
    let seen = backend.headers();
    let authority = format!("proxy.test:{}", p.addr.port());
    assert_eq!(seen["host"], authority.as_str());
    assert_eq!(seen["x-forwarded-host"], authority.as_str());
    assert_eq!(seen["cookie"], "a=1; b=2");
}

#[tokio::test]
async fn connect_requests_are_refused() {
    let (p, backend) = setup(ProxyConfig::default()).await;
    let answer = raw_exchange(
        p.addr,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    assert_eq!(backend.count(), 0);
}

#[tokio::test]
async fn http10_requests_without_host_are_served() {
    let (p, backend) = setup(ProxyConfig::default()).await;
    let answer = raw_exchange(p.addr, b"GET / HTTP/1.0\r\n\r\n").await;
    assert!(
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
        "{answer}"
    );
    assert_eq!(backend.headers()["host"], backend.addr.to_string().as_str());
}

#[tokio::test]
async fn a_pipelined_partial_head_does_not_cut_the_response_in_progress() {
    let a = sample("a1", "v1", None).await;
    let p = start_proxy(ProxyConfig {
        client_header_timeout: Duration::from_millis(200),
        ..ProxyConfig::default()
    })
    .await;
    p.proxy
        .publish(&table(pools(vec![pool("v1", 100, vec![a.spec()])])))
        .unwrap();
    // A slow request, and right behind it the start of a head that never ends.
    let answer = raw_exchange(
        p.addr,
        b"GET /slow?ms=1000 HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHo",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("v1\n"), "{answer}");
}
