//! Every endpoint over real loopback sockets against an in-process server.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::TestApp;
use http::StatusCode;
use sample_app::SampleOptions;

fn opts() -> SampleOptions {
    SampleOptions::default()
}

#[tokio::test]
async fn root_answers_its_version_with_identity_headers() {
    let app = TestApp::start(SampleOptions {
        app_version: "v7".into(),
        instance: Some("i-1".into()),
        ..opts()
    })
    .await;
    let reply = app.get("/").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "v7\n");
    assert_eq!(reply.header("x-version"), "v7");
    assert_eq!(reply.header("x-instance"), "i-1");
    app.stop().await;
}

#[tokio::test]
async fn instance_defaults_to_the_port() {
    let app = TestApp::start(opts()).await;
    let reply = app.get("/").await;
    assert_eq!(reply.header("x-instance"), app.addr.port().to_string());
    assert_eq!(reply.header("x-version"), "v1");
    app.stop().await;
}

#[tokio::test]
async fn health_can_be_toggled_at_runtime() {
    let app = TestApp::start(opts()).await;
    let reply = app.get("/health").await;
    assert_eq!((reply.status, reply.text()), (StatusCode::OK, "ok"));
    assert_eq!(
        app.post("/admin/health?fail=1", "").await.status,
        StatusCode::OK
    );
    let reply = app.get("/health").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.header("x-version"), "v1");
    assert_eq!(
        app.post("/admin/health?fail=0", "").await.status,
        StatusCode::OK
    );
    assert_eq!(app.get("/health").await.status, StatusCode::OK);
    assert_eq!(
        app.post("/admin/health?fail=maybe", "").await.status,
        StatusCode::BAD_REQUEST
    );
    app.stop().await;
}

#[tokio::test]
async fn fail_health_flag_starts_unhealthy() {
    let app = TestApp::start(SampleOptions {
        fail_health: true,
        ..opts()
    })
    .await;
    assert_eq!(
        app.get("/health").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(app.get("/").await.status, StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn slow_waits_at_least_the_requested_time() {
    let app = TestApp::start(opts()).await;
    let started = Instant::now();
    let reply = app.get("/slow?ms=200").await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!((reply.status, reply.text()), (StatusCode::OK, "v1\n"));
    assert_eq!(app.get("/slow").await.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        app.get("/slow?ms=soon").await.status,
        StatusCode::BAD_REQUEST
    );
    app.stop().await;
}

#[tokio::test]
async fn latency_flag_delays_root() {
    let app = TestApp::start(SampleOptions {
        latency_ms: 150,
        ..opts()
    })
    .await;
    let started = Instant::now();
    assert_eq!(app.get("/").await.status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(150));
    app.stop().await;
}

#[tokio::test]
async fn writes_are_counted() {
    let app = TestApp::start(opts()).await;
    assert_eq!(app.get("/writes").await.text(), "0");
    let mut client = app.client().await;
    for expected in ["1", "2", "3"] {
        let reply = client.send("POST", "/write", "some payload").await;
        assert_eq!((reply.status, reply.text()), (StatusCode::OK, expected));
    }
    assert_eq!(app.get("/writes").await.text(), "3");
    let too_big = "x".repeat(1024 * 1024 + 1);
    assert_eq!(
        app.post("/write", &too_big).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(app.get("/writes").await.text(), "3");
    app.stop().await;
}

#[tokio::test]
async fn bytes_sends_exactly_n_bytes() {
    let app = TestApp::start(opts()).await;
    for n in [0usize, 1, 65_536, 1_000_003] {
        let reply = app.get(&format!("/bytes?n={n}")).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body.len(), n);
        assert_eq!(reply.header("content-length"), n.to_string());
        assert_eq!(reply.header("x-version"), "v1");
    }
    assert_eq!(app.get("/bytes").await.status, StatusCode::BAD_REQUEST);
    app.stop().await;
}

#[tokio::test]
async fn unknown_paths_and_methods_are_rejected_with_headers() {
    let app = TestApp::start(opts()).await;
    let reply = app.get("/nope").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.header("x-version"), "v1");
    let reply = app.get("/write").await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.header("allow"), "POST");
    assert_eq!(
        app.post("/", "").await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    app.stop().await;
}

/// Counts 500s among `n` requests to `path` over one keep-alive connection.
async fn count_errors(app: &TestApp, path: &str, n: usize) -> usize {
    let mut client = app.client().await;
    let mut errors = 0;
    for _ in 0..n {
        let reply = client.send("GET", path, "").await;
        assert_eq!(reply.header("x-version"), "v1");
        match reply.status {
            StatusCode::OK => {}
            StatusCode::INTERNAL_SERVER_ERROR => errors += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    errors
}

#[tokio::test]
async fn error_rate_is_respected_within_binomial_bounds() {
    let app = TestApp::start(SampleOptions {
        error_rate: 0.25,
        ..opts()
    })
    .await;
    let n = 2_000;
    let errors = count_errors(&app, "/", n).await;
    // Binomial(2000, 0.25): mean 500, sd ~19.4; +-6 sd fails about once in 10^9 runs.
    assert!(
        (384..=616).contains(&errors),
        "{errors} errors in {n} requests at rate 0.25"
    );
    app.stop().await;
}

#[tokio::test]
async fn error_rate_extremes_and_slow_endpoint() {
    let always = TestApp::start(SampleOptions {
        error_rate: 1.0,
        ..opts()
    })
    .await;
    assert_eq!(count_errors(&always, "/slow?ms=0", 50).await, 50);
    assert_eq!(
        always.get("/health").await.status,
        StatusCode::OK,
        "health is never failed by error-rate"
    );
    always.stop().await;
    let never = TestApp::start(opts()).await;
    assert_eq!(count_errors(&never, "/", 200).await, 0);
    never.stop().await;
}

#[tokio::test]
async fn echo_answers_the_body_unchanged() {
    let app = TestApp::start(opts()).await;
    let body = "0123456789".repeat(1000);
    let reply = app.post("/echo", &body).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), body);
    assert_eq!(
        app.get("/echo").await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    app.stop().await;
}

#[tokio::test]
async fn hang_mode_accepts_requests_and_never_answers_until_cleared() {
    let app = TestApp::start(opts()).await;
    assert_eq!(
        app.post("/admin/hang?on=1", "").await.status,
        StatusCode::OK
    );
    let mut client = app.client().await;
    let hung = tokio::time::timeout(Duration::from_millis(500), client.send("GET", "/", "")).await;
    assert!(hung.is_err(), "a hung app answered: {hung:?}");
    assert_eq!(
        app.post("/admin/hang?on=0", "").await.status,
        StatusCode::OK
    );
    assert_eq!(app.get("/").await.status, StatusCode::OK);
    assert_eq!(
        app.post("/admin/hang?on=maybe", "").await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn abort_cuts_the_connection_mid_response() {
    let app = TestApp::start(opts()).await;
    let stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = http::Request::get("/abort?n=1000")
        .header("host", "sample.test")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-length"], "2000");
    let body = http_body_util::BodyExt::collect(response.into_body()).await;
    assert!(body.is_err(), "the body was not cut");
    app.stop().await;
}

#[tokio::test]
async fn headers_echoes_the_request_line_and_headers() {
    let app = TestApp::start(opts()).await;
    let reply = app.get("/headers?x=1").await;
    assert_eq!(reply.status, StatusCode::OK);
    let text = reply.text();
    assert!(text.starts_with("GET /headers?x=1 HTTP/1.1\n"), "{text}");
    assert!(text.contains("\nhost: sample.test\n"), "{text}");
    assert_eq!(reply.header("x-version"), "v1");
    assert_eq!(
        app.post("/headers", "").await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    app.stop().await;
}
