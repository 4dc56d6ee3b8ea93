//! Oversized request bodies against `max_request_body`: a declared length over the
//! limit is refused with 413 before any backend is contacted; a body without a length
//! (chunked, or HTTP/2 without content-length) that grows past it is cut off, so the
//! backend never receives it complete, and the client gets 413. Bodies within the
//! limit pass untouched, and without a limit nothing is refused.

use crate::common::*;
use crate::{exchange, read_rest, setup};
use baton_proxy::ProxyConfig;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const LIMIT: u64 = 1024;

fn limited() -> ProxyConfig {
    ProxyConfig {
        max_request_body: Some(LIMIT),
        ..ProxyConfig::default()
    }
}

#[tokio::test]
async fn a_declared_length_over_the_limit_gets_413_before_any_backend() {
    let (p, backend) = setup(limited()).await;
    // curl sends `Expect: 100-continue` for large bodies: refused without a 100, so the
    // client never sends the body.
    let seen = exchange(
        p.addr,
        b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n\r\n",
    )
    .await;
    assert_eq!(seen.statuses, vec![413], "{}", seen.text);
    assert!(seen.closed, "connection left open: {}", seen.text);
    assert!(
        seen.text.contains("x-baton-error: body_too_large"),
        "{}",
        seen.text
    );
    assert!(seen.text.contains("1024 bytes"), "{}", seen.text);
    // One byte over, declared, with no body sent yet.
    let seen = exchange(
        p.addr,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1025\r\nExpect: 100-continue\r\n\r\n",
    )
    .await;
    assert_eq!(seen.statuses, vec![413], "{}", seen.text);
    assert_eq!(backend.count(), 0, "a refused request reached the backend");

    // HTTP/2 with a declared length over the limit.
    let mut c = h2(p.addr).await;
    let body = "x".repeat(LIMIT as usize + 1);
    let answer = try_send_h2(&mut c, request("POST", "/", &[], &body), p.addr)
        .await
        .unwrap();
    assert_eq!(answer.0, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        backend.count(),
        0,
        "a refused h2 request reached the backend"
    );
}

#[tokio::test]
async fn a_chunked_body_growing_past_the_limit_is_cut_off_with_413() {
    // Streaming (no read-ahead), so the head reaches the backend before the body ends.
    let (p, backend) = setup(ProxyConfig {
        request_buffering: None,
        ..limited()
    })
    .await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let chunk = format!("320\r\n{}\r\n", "a".repeat(0x320)); // 800 bytes
    s.write_all(
        format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{chunk}")
            .as_bytes(),
    )
    .await
    .unwrap();
    assert!(
        eventually(500, || backend.count() == 1).await,
        "head never forwarded"
    );
    // 1,600 bytes in all: past the limit, before the body's end.
    s.write_all(chunk.as_bytes()).await.unwrap();
    let seen = read_rest(&mut s, Duration::from_secs(5)).await;
    assert_eq!(seen.statuses, vec![413], "{}", seen.text);
    assert!(seen.closed, "connection left open: {}", seen.text);
    assert!(
        eventually(500, || backend.open.load(SeqCst) == 0).await,
        "the upstream connection carrying the cut body stayed open"
    );
    assert_eq!(
        backend.complete.load(SeqCst),
        0,
        "the backend got the whole body"
    );
}

#[tokio::test]
async fn an_h2_body_without_length_growing_past_the_limit_is_cut_off_with_413() {
    let (p, backend) = setup(limited()).await;
    let stream = TcpStream::connect(p.addr).await.unwrap();
    let (mut c, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    // A stream body has no exact size, so no content-length is sent.
    let frames = (0..2).map(|_| Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'a'; 800]))));
    let body = StreamBody::new(futures_util::stream::iter(frames));
    let req = Request::post(format!("http://proxy.test:{}/", p.addr.port()))
        .body(body)
        .unwrap();
    let res = c.send_request(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let text = res.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&text).contains("1024 bytes"));
    assert_eq!(
        backend.complete.load(SeqCst),
        0,
        "the backend got the whole body"
    );
}

#[tokio::test]
async fn bodies_within_the_limit_pass_and_no_limit_refuses_nothing() {
    let (p, backend) = setup(limited()).await;
    let mut c = h1(p.addr).await;
    let exact = "x".repeat(LIMIT as usize);
    let answer = try_send(&mut c, request("POST", "/", &[], &exact))
        .await
        .unwrap();
    assert_eq!(answer.0, StatusCode::OK);
    // Chunked, exactly at the limit, on a fresh connection.
    let chunk = format!("200\r\n{}\r\n", "b".repeat(0x200));
    let seen = exchange(
        p.addr,
        format!(
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{chunk}{chunk}0\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(seen.statuses, vec![200], "{}", seen.text);
    assert_eq!(backend.complete.load(SeqCst), 2);

    let (p, backend) = setup(ProxyConfig::default()).await;
    let mut c = h1(p.addr).await;
    let big = "y".repeat(4 << 20);
    let answer = try_send(&mut c, request("POST", "/", &[], &big))
        .await
        .unwrap();
    assert_eq!(answer.0, StatusCode::OK);
    assert_eq!(backend.complete.load(SeqCst), 1);
}
