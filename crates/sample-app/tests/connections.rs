//! Connection-level behaviour over real sockets: WebSocket echo, idle timeout, and what a
//! graceful shutdown does to idle, busy and upgraded connections.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Client, TestApp, PATIENCE};
use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use sample_app::SampleOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

async fn open_ws(app: &TestApp) -> Ws {
    let stream = TcpStream::connect(app.addr).await.unwrap();
    let url = format!("ws://{}/ws", app.addr);
    let (ws, response) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    assert_eq!(response.headers()["x-version"], "v1");
    ws
}

async fn next(ws: &mut Ws) -> Message {
    tokio::time::timeout(PATIENCE, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}

/// Sends one raw HTTP/1.1 GET and reads until the whole `v1\n` response has arrived.
async fn raw_get_root(stream: &mut TcpStream) {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    while !response.ends_with(b"\r\n\r\nv1\n") {
        let mut buf = [0; 1024];
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(
            n > 0,
            "server closed mid-response: {:?}",
            String::from_utf8_lossy(&response)
        );
        response.extend_from_slice(&buf[..n]);
    }
    assert!(response.starts_with(b"HTTP/1.1 200 OK\r\n"));
}

/// Waits for the server to close the connection: the next read returns end-of-file.
async fn expect_closed(stream: &mut TcpStream) {
    let mut buf = [0; 64];
    let n = tokio::time::timeout(PATIENCE, stream.read(&mut buf)).await;
    assert!(
        matches!(n, Ok(Ok(0)) | Ok(Err(_))),
        "connection still open: {n:?}"
    );
}

#[tokio::test]
async fn websocket_echoes_text_and_binary_and_answers_close() {
    let app = TestApp::start(SampleOptions::default()).await;
    let mut ws = open_ws(&app).await;
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("hello"));
    ws.send(Message::binary(vec![0u8, 159, 255])).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::binary(vec![0u8, 159, 255]));
    ws.send(Message::Ping(b"p".to_vec().into())).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::Pong(b"p".to_vec().into()));
    ws.close(None).await.unwrap();
    assert!(matches!(next(&mut ws).await, Message::Close(_)));
    app.stop().await;
}

#[tokio::test]
async fn websocket_handshake_requires_upgrade_headers() {
    let app = TestApp::start(SampleOptions::default()).await;
    let reply = app.get("/ws").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    app.stop().await;
}

#[tokio::test]
async fn idle_timeout_closes_an_idle_keep_alive_connection() {
    let app = TestApp::start(SampleOptions {
        idle_timeout_ms: Some(200),
        ..Default::default()
    })
    .await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    raw_get_root(&mut stream).await;
    expect_closed(&mut stream).await;
    app.stop().await;
}

#[tokio::test]
async fn idle_timeout_counts_from_the_end_of_the_last_request() {
    let app = TestApp::start(SampleOptions {
        idle_timeout_ms: Some(500),
        ..Default::default()
    })
    .await;
    let mut client = Client::connect(app.addr).await;
    // Longer than the idle timeout: the connection must not be marked idle meanwhile,
    // so it is still open for the next request right after.
    assert_eq!(
        client.send("GET", "/slow?ms=1200", "").await.status,
        StatusCode::OK
    );
    assert_eq!(client.send("GET", "/", "").await.status, StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn shutdown_closes_idle_connections_and_returns() {
    let mut app = TestApp::start(SampleOptions::default()).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    raw_get_root(&mut stream).await;
    app.begin_shutdown();
    expect_closed(&mut stream).await;
    app.stop().await;
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests() {
    let mut app = TestApp::start(SampleOptions::default()).await;
    let mut client = Client::connect(app.addr).await;
    // Prove the connection is being served before shutting down.
    assert_eq!(client.send("GET", "/", "").await.status, StatusCode::OK);
    let slow = tokio::spawn(async move { client.send("GET", "/slow?ms=800", "").await });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await; // let the request arrive
    app.begin_shutdown();
    let reply = slow.await.unwrap();
    assert_eq!((reply.status, reply.text()), (StatusCode::OK, "v1\n"));
    app.stop().await;
}

#[tokio::test]
async fn shutdown_sends_websockets_going_away() {
    let mut app = TestApp::start(SampleOptions::default()).await;
    let mut ws = open_ws(&app).await;
    ws.send(Message::text("before")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("before"));
    app.begin_shutdown();
    match next(&mut ws).await {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Away),
        other => panic!("expected a close frame, got {other:?}"),
    }
    // Reading on flushes our close reply; the server then ends the stream.
    let end = tokio::time::timeout(PATIENCE, ws.next()).await.unwrap();
    assert!(
        end.is_none() || end.is_some_and(|m| m.is_err()),
        "stream continued"
    );
    app.stop().await;
}
