//! Request rules where the proxy is stricter than a plain HTTP parser, against a backend
//! that records everything that reaches it (method, target, headers, body):
//! `Upgrade` only for protocols the proxy can carry (WebSocket, or what the app names;
//! `h2c` never), header names with `_` dropped or kept from shadowing the proxy's own
//! headers, Host and request-target rules, `Content-Length` in canonical decimal, and
//! GET / HEAD bodies forwarded with their framing instead of dropped.

use crate::common::*;
use crate::exchange;
use baton_core::{AppRouteSpec, UnderscoreHeaders};
use baton_proxy::ProxyConfig;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// One request as the backend received it; `body` is `None` when it never completed.
#[derive(Debug, Clone)]
struct Recorded {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Option<Bytes>,
}

/// A backend that records every request and answers 200.
struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Recorded>>>,
}

impl Recorder {
    async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = log.clone();
                let service = service_fn(move |req: Request<Incoming>| {
                    let log = log.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.ok().map(|b| b.to_bytes());
                        log.lock().unwrap().push(Recorded {
                            method: parts.method,
                            uri: parts.uri,
                            headers: parts.headers,
                            body,
                        });
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                            Bytes::from_static(b"ok"),
                        )))
                    }
                });
                tokio::spawn(
                    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned(),
                );
            }
        });
        Recorder { addr, seen }
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn last(&self) -> Recorded {
        self.seen.lock().unwrap().last().cloned().unwrap()
    }
}

/// A proxy sending everything to one recording backend, with the app's request policy.
async fn setup_with(app: impl FnOnce(&mut AppRouteSpec)) -> (TestProxy, Recorder) {
    let backend = Recorder::start().await;
    let p = start_proxy(ProxyConfig::default()).await;
    let mut spec = pools(vec![pool(
        "v1",
        100,
        vec![baton_core::BackendSpec {
            id: "r1".into(),
            addr: backend.addr,
        }],
    )]);
    app(&mut spec);
    p.proxy.publish(&table(spec)).unwrap();
    (p, backend)
}

/// Send raw bytes; expect one answer with `status`, and return what the backend got.
async fn expect(p: &TestProxy, backend: &Recorder, raw: &str, status: u16) -> Option<Recorded> {
    let before = backend.count();
    let seen = exchange(p.addr, raw.as_bytes()).await;
    assert_eq!(seen.statuses, [status], "{raw:?}: {}", seen.text);
    let reached = backend.count() - before;
    if status == 400 {
        assert_eq!(reached, 0, "{raw:?} was refused but reached the backend");
        assert!(seen.closed, "{raw:?}: connection left open after 400");
        return None;
    }
    assert_eq!(reached, 1, "{raw:?}");
    Some(backend.last())
}

fn upgrade_request(protocol: &str) -> String {
    format!(
        "GET /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n\
         Upgrade: {protocol}\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nX-After: 1\r\n\
         Connection: close\r\n\r\n"
    )
}

#[tokio::test]
async fn upgrade_is_forwarded_only_for_websocket_and_protocols_the_app_names() {
    let (p, backend) = setup_with(|_| {}).await;
    // h2c: a plain request, without any of the upgrade's headers.
    for offer in ["h2c", "H2C", "h2c, foo/1"] {
        let got = expect(&p, &backend, &upgrade_request(offer), 200)
            .await
            .unwrap();
        for gone in ["upgrade", "connection", "http2-settings"] {
            assert!(
                !got.headers.contains_key(gone),
                "{offer}: {gone} reached the backend: {:?}",
                got.headers
            );
        }
        assert_eq!(got.headers["x-after"], "1", "{offer}");
    }
    // WebSocket is always offered on; unnamed protocols are not.
    let got = expect(&p, &backend, &upgrade_request("websocket"), 200)
        .await
        .unwrap();
    assert_eq!(got.headers["upgrade"], "websocket");
    assert_eq!(got.headers["connection"], "upgrade");
    let got = expect(
        &p,
        &backend,
        &upgrade_request("h2c, websocket, myproto/2"),
        200,
    )
    .await
    .unwrap();
    assert_eq!(got.headers["upgrade"], "websocket");

    // An app that names a protocol gets it, but never h2c, even if its spec names it.
    let (p, backend) = setup_with(|app| {
        app.upgrade_protocols = vec!["MyProto".into(), "h2c".into()];
    })
    .await;
    let got = expect(&p, &backend, &upgrade_request("myproto/2"), 200)
        .await
        .unwrap();
    assert_eq!(got.headers["upgrade"], "myproto/2");
    let got = expect(&p, &backend, &upgrade_request("h2c"), 200)
        .await
        .unwrap();
    assert!(!got.headers.contains_key("upgrade"), "{:?}", got.headers);
    let got = expect(&p, &backend, &upgrade_request("other"), 200)
        .await
        .unwrap();
    assert!(!got.headers.contains_key("upgrade"), "{:?}", got.headers);
}

const UNDERSCORED: [(&str, &str); 6] = [
    ("x_forwarded_for", "6.6.6.6"),
    ("X_Real_IP", "6.6.6.6"),
    ("x_request_id", "spoofed"),
    ("Transfer_Encoding", "chunked"),
    ("content_length", "3"),
    ("x_custom", "1"),
];

async fn underscores_over_h1_and_h2(p: &TestProxy, backend: &Recorder) -> [HeaderMap; 2] {
    let lines: String = UNDERSCORED
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let raw = format!(
        "POST / HTTP/1.1\r\nHost: x\r\n{lines}Content-Length: 5\r\nConnection: close\r\n\r\nhello"
    );
    let h1 = expect(p, backend, &raw, 200).await.unwrap();
    assert_eq!(h1.body.as_deref(), Some(&b"hello"[..]));

    let mut c = h2(p.addr).await;
    let req = request("POST", "/", &UNDERSCORED, "hello");
    let answer = try_send_h2(&mut c, req, p.addr).await.unwrap();
    assert_eq!(answer.0, StatusCode::OK);
    let h2 = backend.last();
    assert_eq!(h2.body.as_deref(), Some(&b"hello"[..]));
    [h1.headers, h2.headers]
}

#[tokio::test]
async fn header_names_with_underscores_are_dropped_by_default() {
    let (p, backend) = setup_with(|_| {}).await;
    for (proto, seen) in ["HTTP/1.1", "HTTP/2"]
        .iter()
        .zip(underscores_over_h1_and_h2(&p, &backend).await)
    {
        let names: Vec<&str> = seen.keys().map(|k| k.as_str()).collect();
        assert!(names.iter().all(|n| !n.contains('_')), "{proto}: {names:?}");
        assert_eq!(seen["x-forwarded-for"], "127.0.0.1", "{proto}");
        assert_eq!(seen["content-length"], "5", "{proto}");
        assert!(!seen.contains_key("transfer-encoding"), "{proto}");
    }
}

#[tokio::test]
async fn forwarded_underscores_never_shadow_proxy_or_framing_headers() {
    let (p, backend) = setup_with(|app| {
        app.underscores_in_headers = UnderscoreHeaders::Forward;
    })
    .await;
    for (proto, seen) in ["HTTP/1.1", "HTTP/2"]
        .iter()
        .zip(underscores_over_h1_and_h2(&p, &backend).await)
    {
        let names: Vec<&str> = seen.keys().map(|k| k.as_str()).collect();
        assert_eq!(seen["x_custom"], "1", "{proto}: {names:?}");
        let underscored: Vec<&&str> = names.iter().filter(|n| n.contains('_')).collect();
        assert_eq!(underscored, [&"x_custom"], "{proto}");
        assert_eq!(seen["x-forwarded-for"], "127.0.0.1", "{proto}");
        assert_ne!(seen["x-request-id"], "spoofed", "{proto}");
    }
}

#[tokio::test]
async fn host_and_request_target_rules() {
    let (p, backend) = setup_with(|_| {}).await;
    let mut refused_wrongly = Vec::new();
    for raw in [
        "GET / HTTP/1.1\r\nX-A: 1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x/../y\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: u@evil.test\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x:80a\r\n\r\n",
        "GET http://u@evil.test/p HTTP/1.1\r\nHost: evil.test\r\n\r\n",
        "GET http://u:pw@evil.test/p HTTP/1.1\r\nHost: evil.test\r\n\r\n",
        "GET /a/../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /.. HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /%2e%2e/etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /a/%2E%2e/%2e./etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let before = backend.count();
        let seen = exchange(p.addr, raw.as_bytes()).await;
        let reached = backend.count() - before;
        if seen.statuses != [400] || !seen.closed || reached != 0 {
            refused_wrongly.push(format!(
                "{raw:?}: got {:?}, closed={}, backend +{reached}",
                seen.statuses, seen.closed
            ));
        }
    }
    assert!(refused_wrongly.is_empty(), "{refused_wrongly:#?}");
    // In the root, dot-segments are resolved before routing and forwarding.
    for (raw, want) in [
        (
            "GET /a/b/../c?q=/../x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            "/a/c?q=/../x",
        ),
        (
            "GET /a/./%2e%2E/b/. HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            "/b/",
        ),
        (
            "GET /a/..b/... HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            "/a/..b/...",
        ),
    ] {
        let got = expect(&p, &backend, raw, 200).await.unwrap();
        assert_eq!(got.uri, want, "{raw:?}");
    }
    // Controls: HTTP/1.0 may omit Host; valid hosts and an empty Host pass.
    for raw in [
        "GET / HTTP/1.0\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: [::1]:8080\r\nConnection: close\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a-b.example.com:80\r\nConnection: close\r\n\r\n",
        "GET / HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n",
    ] {
        expect(&p, &backend, raw, 200).await;
    }
}

#[tokio::test]
async fn http2_authority_and_host_must_agree() {
    let (p, backend) = setup_with(|_| {}).await;
    let mut c = h2(p.addr).await;
    let send = |authority: &str, host: &str| {
        Request::builder()
            .uri(format!("http://{authority}/"))
            .header("host", host)
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    for (authority, host, want) in [
        ("a.test", "b.test", StatusCode::BAD_REQUEST),
        ("a.test", "a.test:80", StatusCode::BAD_REQUEST),
        ("a.test", "A.TEST", StatusCode::OK),
    ] {
        let before = backend.count();
        c.ready().await.unwrap();
        let res = c.send_request(send(authority, host)).await.unwrap();
        assert_eq!(res.status(), want, "{authority} vs {host}");
        let reached = backend.count() - before;
        assert_eq!(
            reached,
            usize::from(want == StatusCode::OK),
            "{authority} vs {host}"
        );
    }
    // The connection survives a refused stream: the next request on it is served.
    c.ready().await.unwrap();
    let res = c.send_request(send("a.test", "a.test")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn content_length_is_forwarded_in_canonical_decimal() {
    let (p, backend) = setup_with(|_| {}).await;
    let got = expect(
        &p,
        &backend,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 010\r\nConnection: close\r\n\r\n0123456789",
        200,
    )
    .await
    .unwrap();
    assert_eq!(got.headers["content-length"], "10");
    assert_eq!(got.body.as_deref(), Some(&b"0123456789"[..]));
    let got = expect(
        &p,
        &backend,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 000\r\nConnection: close\r\n\r\n",
        200,
    )
    .await
    .unwrap();
    assert_eq!(got.headers["content-length"], "0");
}

#[tokio::test]
async fn get_and_head_bodies_are_forwarded_with_their_framing() {
    let (p, backend) = setup_with(|_| {}).await;
    for method in ["GET", "HEAD"] {
        for framing in [
            "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "Content-Length: 5\r\n\r\nhello",
        ] {
            let raw = format!("{method} / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{framing}");
            let got = expect(&p, &backend, &raw, 200).await.unwrap();
            assert_eq!(got.method, method);
            assert_eq!(
                got.body.as_deref(),
                Some(&b"hello"[..]),
                "{method} with {framing:?}: {:?}",
                got.headers
            );
        }
    }
    // HTTP/2 GET with a body and no content-length.
    let body = http_body_util::StreamBody::new(futures_util::stream::iter(vec![Ok::<
        _,
        std::convert::Infallible,
    >(
        hyper::body::Frame::data(Bytes::from_static(b"hello")),
    )]));
    let stream = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    let (mut raw_c, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .method("GET")
        .uri(format!("http://proxy.test:{}/", p.addr.port()))
        .body(body)
        .unwrap();
    let res = raw_c.send_request(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let got = backend.last();
    assert_eq!(
        got.body.as_deref(),
        Some(&b"hello"[..]),
        "{:?}",
        got.headers
    );
}
