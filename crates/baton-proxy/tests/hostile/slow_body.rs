//! Slow and stalled request bodies. With `request_buffering` a body is read before any
//! backend is chosen, so many clients (or HTTP/2 streams) trickling bodies byte by
//! byte hold no backend connection and no in-flight slot, while other requests are
//! served; their requests
//! reach the backend complete once their bodies are in. With `body_read_timeout` a
//! body whose client stops sending is cut: 408 to the client, the backend never gets a
//! complete request (an upstream request already streaming is aborted), and
//! `baton_request_body_timeouts_total` counts it.

use crate::common::*;
use crate::{read_rest, setup};
use baton_proxy::ProxyConfig;
use bytes::Bytes;
use futures_util::future::join_all;
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

/// Slow clients in the buffering test.
const SLOW: usize = 200;
/// Ordinary requests timed at idle, then again while the slow clients trickle.
const NORMAL: usize = 500;

/// Sends `NORMAL` POSTs one after another on one connection; their latencies, sorted.
async fn timed_posts(addr: std::net::SocketAddr) -> Vec<Duration> {
    let mut c = h1(addr).await;
    let mut took = Vec::with_capacity(NORMAL);
    for _ in 0..NORMAL {
        let start = std::time::Instant::now();
        let answer = try_send(&mut c, request("POST", "/", &[], "hello"))
            .await
            .unwrap();
        took.push(start.elapsed());
        assert_eq!(answer.0, StatusCode::OK);
    }
    took.sort();
    took
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn short_body_timeout() -> ProxyConfig {
    ProxyConfig {
        body_read_timeout: Duration::from_millis(300),
        ..ProxyConfig::default()
    }
}

/// The proxy's Prometheus text.
fn exported(p: &TestProxy) -> String {
    let mut out = String::new();
    p.metrics.render_prometheus(&mut out);
    out
}

#[tokio::test]
async fn slow_bodies_hold_no_backend_connection_while_they_are_buffered() {
    // The default configuration buffers (1 MiB).
    let (p, backend) = setup(ProxyConfig::default()).await;
    // The idle baseline for the latency figure (printed, not asserted: the machine is
    // shared).
    let idle = timed_posts(p.addr).await;
    let body = b"abcdefgh";
    let mut slow = Vec::new();
    for _ in 0..SLOW {
        let s = TcpStream::connect(p.addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        slow.push(s);
    }
    for s in &mut slow {
        s.write_all(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    }
    // Half of every body, one byte per write, round after round over all clients.
    for byte in &body[..4] {
        for s in &mut slow {
            s.write_all(&[*byte]).await.unwrap();
        }
    }
    // Other clients are served meanwhile.
    let busy = timed_posts(p.addr).await;
    println!(
        "normal POSTs, p50 / p99: idle {:?} / {:?}; with {SLOW} slow bodies {:?} / {:?} (p99 {:.2}x idle)",
        quantile(&idle, 0.5),
        quantile(&idle, 0.99),
        quantile(&busy, 0.5),
        quantile(&busy, 0.99),
        quantile(&busy, 0.99).as_secs_f64() / quantile(&idle, 0.99).as_secs_f64()
    );
    println!(
        "{SLOW} slow bodies in progress: backend saw {} requests on {} open connections",
        backend.count(),
        backend.open.load(SeqCst)
    );
    assert_eq!(
        backend.count(),
        2 * NORMAL as u64,
        "requests whose bodies are still arriving reached the backend"
    );
    assert_eq!(
        p.proxy.in_flight("c1"),
        0,
        "slow bodies count as in flight on the backend"
    );
    // The rest of every body: each request now reaches the backend complete.
    for s in &mut slow {
        s.write_all(&body[4..]).await.unwrap();
    }
    let seen = join_all(
        slow.iter_mut()
            .map(|s| read_rest(s, Duration::from_secs(10))),
    )
    .await;
    for s in &seen {
        assert_eq!(s.statuses, vec![200], "{}", s.text);
    }
    assert_eq!(backend.count(), (2 * NORMAL + SLOW) as u64);
    assert_eq!(backend.complete.load(SeqCst), (2 * NORMAL + SLOW) as u64);
}

#[tokio::test]
async fn slow_h2_streams_hold_no_backend_connection_while_they_are_buffered() {
    const STREAMS: usize = 50;
    let (p, backend) = setup(ProxyConfig::default()).await;
    let stream = TcpStream::connect(p.addr).await.unwrap();
    let (c, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    // Every stream sends one byte of its body and then waits.
    let mut senders = Vec::new();
    let mut answers = Vec::new();
    for _ in 0..STREAMS {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
        tx.send(Ok(Frame::data(Bytes::from_static(b"a"))))
            .await
            .unwrap();
        senders.push(tx);
        let req = Request::post(format!("http://proxy.test:{}/", p.addr.port()))
            .body(StreamBody::new(tokio_stream_from(rx)))
            .unwrap();
        let mut c = c.clone();
        answers.push(tokio::spawn(async move {
            let res = c.send_request(req).await.unwrap();
            let status = res.status();
            let body = res.into_body().collect().await.unwrap().to_bytes();
            (status, body)
        }));
    }
    // Another client is served meanwhile.
    let mut other = h1(p.addr).await;
    for _ in 0..NORMAL {
        let answer = try_send(&mut other, request("POST", "/", &[], "hello"))
            .await
            .unwrap();
        assert_eq!(answer.0, StatusCode::OK);
    }
    assert_eq!(
        backend.count(),
        NORMAL as u64,
        "streams whose bodies are still arriving reached the backend"
    );
    assert_eq!(p.proxy.in_flight("c1"), 0);
    // The rest of every body, then its end.
    for tx in senders {
        tx.send(Ok(Frame::data(Bytes::from_static(b"bc"))))
            .await
            .unwrap();
    }
    for answer in answers {
        let (status, body) = answer.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(&body[..], b"v1");
    }
    assert_eq!(backend.count(), (NORMAL + STREAMS) as u64);
    assert_eq!(backend.complete.load(SeqCst), (NORMAL + STREAMS) as u64);
}

#[tokio::test]
async fn a_stalled_body_gets_408_before_any_backend_and_is_counted() {
    let (p, backend) = setup(short_body_timeout()).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        .await
        .unwrap();
    // The client keeps the connection open and sends nothing more.
    let seen = read_rest(&mut s, Duration::from_secs(5)).await;
    assert_eq!(seen.statuses, vec![408], "{}", seen.text);
    assert!(seen.closed, "connection left open: {}", seen.text);
    assert!(
        seen.text.contains("x-baton-error: body_timeout"),
        "{}",
        seen.text
    );
    assert_eq!(
        backend.count(),
        0,
        "the stalled request reached the backend"
    );
    assert_eq!(p.metrics.request_body_timeouts(), 1);
    let text = exported(&p);
    assert!(
        text.contains("\nbaton_request_body_timeouts_total 1\n"),
        "{text}"
    );
    // A body that keeps arriving, however slowly, is not cut.
    let mut c = h1(p.addr).await;
    let answer = try_send(&mut c, request("POST", "/", &[], "fine"))
        .await
        .unwrap();
    assert_eq!(answer.0, StatusCode::OK);
    assert_eq!(p.metrics.request_body_timeouts(), 1);
}

#[tokio::test]
async fn a_body_stalling_while_it_streams_aborts_the_upstream_request_with_408() {
    let (p, backend) = setup(ProxyConfig {
        request_buffering: None,
        ..short_body_timeout()
    })
    .await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        .await
        .unwrap();
    assert!(
        eventually(500, || backend.count() == 1).await,
        "without buffering the head is forwarded at once"
    );
    let seen = read_rest(&mut s, Duration::from_secs(5)).await;
    assert_eq!(seen.statuses, vec![408], "{}", seen.text);
    assert!(seen.closed, "connection left open: {}", seen.text);
    assert!(
        eventually(500, || backend.open.load(SeqCst) == 0).await,
        "the upstream connection carrying the stalled body stayed open"
    );
    assert_eq!(
        backend.complete.load(SeqCst),
        0,
        "the backend got a complete request"
    );
    assert_eq!(p.metrics.request_body_timeouts(), 1);
}

#[tokio::test]
async fn a_stalled_h2_body_gets_408_and_the_connection_keeps_serving() {
    let (p, backend) = setup(short_body_timeout()).await;
    let stream = TcpStream::connect(p.addr).await.unwrap();
    let (mut c, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    // One data frame, then nothing: the sender stays alive and silent.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
    tx.send(Ok(Frame::data(Bytes::from_static(b"abc"))))
        .await
        .unwrap();
    let body = StreamBody::new(tokio_stream_from(rx));
    let req = Request::post(format!("http://proxy.test:{}/", p.addr.port()))
        .body(body)
        .unwrap();
    let res = c.send_request(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::REQUEST_TIMEOUT);
    assert_eq!(backend.count(), 0);
    assert_eq!(p.metrics.request_body_timeouts(), 1);
    // Another stream on the same connection is served.
    let (done, empty) = tokio::sync::mpsc::channel(1);
    drop(done);
    let req = Request::get(format!("http://proxy.test:{}/", p.addr.port()))
        .body(StreamBody::new(tokio_stream_from(empty)))
        .unwrap();
    let res = c.send_request(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let _ = res.into_body().collect().await.unwrap();
    drop(tx);
}

#[tokio::test]
async fn with_buffering_a_body_growing_past_the_limit_gets_413_before_any_backend() {
    let (p, backend) = setup(ProxyConfig {
        max_request_body: Some(1024),
        ..ProxyConfig::default()
    })
    .await;
    let chunk = format!("320\r\n{}\r\n", "a".repeat(0x320)); // 800 bytes
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(
        format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{chunk}")
            .as_bytes(),
    )
    .await
    .unwrap();
    // Another request completes meanwhile (streaming would have forwarded the head by
    // now); then the second chunk takes the body past the limit.
    let mut c = h1(p.addr).await;
    let answer = try_send(&mut c, request("GET", "/", &[], ""))
        .await
        .unwrap();
    assert_eq!(answer.0, StatusCode::OK);
    s.write_all(chunk.as_bytes()).await.unwrap();
    let seen = read_rest(&mut s, Duration::from_secs(5)).await;
    assert_eq!(seen.statuses, vec![413], "{}", seen.text);
    assert_eq!(
        backend.count(),
        1,
        "the oversized request reached the backend"
    );
}

#[tokio::test]
async fn a_broken_chunk_while_read_ahead_gets_400_before_any_backend() {
    let (p, backend) = setup(ProxyConfig::default()).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        .await
        .unwrap();
    let mut c = h1(p.addr).await;
    let answer = try_send(&mut c, request("GET", "/", &[], ""))
        .await
        .unwrap();
    assert_eq!(answer.0, StatusCode::OK);
    s.write_all(b"zz\r\n").await.unwrap();
    let seen = read_rest(&mut s, Duration::from_secs(5)).await;
    assert_eq!(seen.statuses, vec![400], "{}", seen.text);
    assert!(seen.closed, "connection left open: {}", seen.text);
    assert_eq!(backend.count(), 1, "the broken request reached the backend");
}

/// A `Stream` over an mpsc receiver.
fn tokio_stream_from<T>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
