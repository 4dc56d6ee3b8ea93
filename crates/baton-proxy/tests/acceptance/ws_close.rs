//! A WebSocket held past its backend's drain deadline ends with a close handshake, not
//! a bare TCP close: the client gets every echo the backend owed it, then a Close 1001
//! (Going Away), and the backend gets a Close too. A frame in transfer at the deadline
//! is finished before the Close is injected.

use crate::common::*;
use baton_proxy::ProxyConfig;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_util::sync::CancellationToken;

/// A tungstenite echo server that records the close code each session received.
struct EchoBackend {
    addr: SocketAddr,
    closes: Arc<Mutex<Vec<Option<u16>>>>,
    stop: CancellationToken,
}

impl Drop for EchoBackend {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn echo_backend() -> EchoBackend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let closes = Arc::new(Mutex::new(Vec::new()));
    let stop = CancellationToken::new();
    let (c, s) = (closes.clone(), stop.clone());
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = s.cancelled() => return,
                accepted = listener.accept() => accepted.unwrap().0,
            };
            let (c, s) = (c.clone(), s.clone());
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                loop {
                    let message = tokio::select! {
                        _ = s.cancelled() => return,
                        m = ws.next() => m,
                    };
                    match message {
                        Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                            if ws.send(m).await.is_err() {
                                return;
                            }
                        }
                        Some(Ok(Message::Close(frame))) => {
                            c.lock().unwrap().push(frame.map(|f| u16::from(f.code)));
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => return,
                    }
                }
            });
        }
    });
    EchoBackend { addr, closes, stop }
}

fn spec(id: &str, addr: SocketAddr) -> baton_core::BackendSpec {
    baton_core::BackendSpec {
        id: id.to_string(),
        addr,
    }
}

/// A proxy routing to the echo backend as `a1`.
async fn proxy_to(backend: &EchoBackend) -> TestProxy {
    let p = start_proxy(ProxyConfig::default()).await;
    p.proxy
        .publish(&table(pools(vec![pool(
            "v1",
            100,
            vec![spec("a1", backend.addr)],
        )])))
        .unwrap();
    p
}

fn big_payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

#[tokio::test]
async fn held_websocket_gets_every_echo_then_going_away_at_the_drain_deadline() {
    let backend = echo_backend().await;
    let other = sample("b1", "v2", None).await;
    let p = proxy_to(&backend).await;
    let url = format!("ws://{}/ws", p.addr);
    let (ws, resp) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    let (mut sink, mut stream) = ws.split();

    // Sent messages, in order; a 1 MiB binary message every 5th.
    let sent: Arc<Mutex<Vec<Message>>> = Arc::default();
    let sender = {
        let sent = sent.clone();
        tokio::spawn(async move {
            for i in 0u32..2000 {
                let m = if i % 5 == 4 {
                    Message::Binary(Bytes::from(big_payload(1 << 20, i as u8)))
                } else {
                    Message::text(format!("message {i}"))
                };
                // Recorded first: a message being written when the close comes may or
                // may not have reached the backend.
                sent.lock().unwrap().push(m.clone());
                if sink.send(m).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    // Some traffic before the instance is replaced.
    let mut echoed: Vec<Message> = Vec::new();
    while echoed.len() < 10 {
        match stream.next().await {
            Some(Ok(m)) if m.is_text() || m.is_binary() => echoed.push(m),
            other => panic!("before the drain: {other:?}"),
        }
    }
    p.proxy
        .publish(&table(pools(vec![pool("v2", 100, vec![other.spec()])])))
        .unwrap();
    let sent_before_drain = sent.lock().unwrap().len();
    // The client keeps reading while the drain runs, as a live client does: one that
    // stops reading fills the socket buffers, and a frame stuck mid-transfer at the
    // deadline leaves no boundary at which a Close could be written. Reading on after
    // the Close sends the client's reply, which the drain waits for.
    let client = tokio::time::timeout(Duration::from_secs(20), async {
        let close = loop {
            match stream.next().await {
                Some(Ok(Message::Close(frame))) => break frame,
                Some(Ok(m)) if m.is_text() || m.is_binary() => echoed.push(m),
                Some(Ok(_)) => {}
                other => panic!("the WebSocket ended without a close frame: {other:?}"),
            }
        };
        (close, stream.next().await)
    });
    let (report, client) = tokio::join!(p.proxy.drain("a1", Duration::from_millis(600)), client);
    assert!(!report.completed, "{report:?}");
    assert_eq!(report.upgraded_closed, 1);
    let (close, end) = client.expect("no close frame, or no end of the connection after it");
    let close = close.expect("the close frame carries a status");
    assert_eq!(close.code, CloseCode::Away);
    assert!(close.reason.contains("draining"), "{}", close.reason);
    // After the close, the stream ends without a protocol error.
    assert!(end.is_none(), "after the close: {end:?}");
    let _ = sender.await;

    let sent = sent.lock().unwrap().clone();
    assert!(
        echoed.len() >= sent_before_drain,
        "{} echoes for {sent_before_drain} messages sent before the drain began",
        echoed.len()
    );
    assert!(echoed.len() <= sent.len());
    for (i, (back, out)) in echoed.iter().zip(sent.iter()).enumerate() {
        assert!(back == out, "echo {i} differs from what was sent");
    }
    assert!(
        echoed.iter().filter(|m| m.len() == 1 << 20).count() >= sent_before_drain / 5,
        "large messages were lost"
    );
    assert!(eventually(300, || backend.closes.lock().unwrap().len() == 1).await);
    assert_eq!(backend.closes.lock().unwrap()[0], Some(1001));
    assert!(eventually(300, || p.proxy.in_flight("a1") == 0).await);
}

/// Read one unmasked frame: (first byte, payload).
async fn read_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    s.read_exact(&mut head).await.unwrap();
    assert_eq!(head[1] & 0x80, 0, "frames to the client are not masked");
    let len = match head[1] & 0x7f {
        126 => u64::from(s.read_u16().await.unwrap()),
        127 => s.read_u64().await.unwrap(),
        n => u64::from(n),
    };
    let mut payload = vec![0u8; usize::try_from(len).unwrap()];
    s.read_exact(&mut payload).await.unwrap();
    (head[0], payload)
}

fn masked_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let mut f = vec![first];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

#[tokio::test]
async fn a_frame_in_transfer_at_the_deadline_is_finished_before_the_close() {
    let backend = echo_backend().await;
    let other = sample("b1", "v2", None).await;
    let p = proxy_to(&backend).await;
    let mut s = ws_connect(p.addr).await;
    let small = masked_frame(0x81, b"before");
    s.write_all(&small).await.unwrap();
    assert_eq!(read_frame(&mut s).await, (0x81, b"before".to_vec()));

    // Half of a 1 MiB binary frame before the deadline, the rest after it.
    let payload = big_payload(1 << 20, 7);
    let big = masked_frame(0x82, &payload);
    let half = big.len() / 2;
    s.write_all(&big[..half]).await.unwrap();
    p.proxy
        .publish(&table(pools(vec![pool("v2", 100, vec![other.spec()])])))
        .unwrap();
    // The drain waits past its deadline for the tunnel's close handshake, so the client
    // side runs beside it.
    let client = async {
        // The deadline (200 ms) has passed; the proxy is waiting for the frame's end.
        tokio::time::sleep(Duration::from_millis(300)).await;
        s.write_all(&big[half..]).await.unwrap();

        let (first, echo) = read_frame(&mut s).await;
        assert_eq!(first, 0x82);
        assert!(echo == payload, "the 1 MiB echo was damaged");
        let (first, close) = read_frame(&mut s).await;
        assert_eq!(first, 0x88, "expected a close frame");
        assert_eq!(u16::from_be_bytes([close[0], close[1]]), 1001);
        // Answer the close; the proxy then closes the TCP connection (EOF, not a reset).
        s.write_all(&masked_frame(0x88, &close[..2])).await.unwrap();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
        read.expect("the proxy never closed the connection")
            .expect("reset instead of FIN");
        assert!(
            rest.is_empty(),
            "bytes after the close frame: {}",
            rest.len()
        );
    };
    let (report, ()) = tokio::join!(p.proxy.drain("a1", Duration::from_millis(200)), client);
    assert!(!report.completed, "{report:?}");
    assert_eq!(report.upgraded_closed, 1);
    assert_eq!(
        p.proxy.in_flight("a1"),
        0,
        "drain returned before the tunnel's close handshake ended"
    );
    assert!(eventually(300, || backend.closes.lock().unwrap().len() == 1).await);
    assert_eq!(backend.closes.lock().unwrap()[0], Some(1001));
}
