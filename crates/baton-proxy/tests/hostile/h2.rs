//! HTTP/2 abuse with hand-built frames: rapid reset (CVE-2023-44487) and CONTINUATION
//! floods. The connection must end with GOAWAY `ENHANCE_YOUR_CALM`, the work done
//! must stay bounded, and the proxy must keep serving other clients.

use crate::common::*;
use crate::setup;
use baton_proxy::ProxyConfig;
use http::StatusCode;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const CANCEL: u32 = 0x8;
const ENHANCE_YOUR_CALM: u32 = 0xb;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK: GET http://proxy.test/ from the static table plus one literal authority.
fn get_block() -> Vec<u8> {
    let mut b = vec![0x82, 0x86, 0x84, 0x01, 10];
    b.extend_from_slice(b"proxy.test");
    b
}

fn client_start() -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    out
}

/// Frames read until the server closes (or `limit`): `(type, payload)`.
async fn read_frames(
    mut r: impl AsyncReadExt + Unpin,
    limit: Duration,
) -> (Vec<(u8, Vec<u8>)>, bool) {
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(limit, async {
        let mut chunk = [0u8; 16384];
        loop {
            match r.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .is_ok();
    let mut frames = Vec::new();
    let mut at = 0;
    while buf.len() >= at + 9 {
        let len = u32::from_be_bytes([0, buf[at], buf[at + 1], buf[at + 2]]) as usize;
        let end = (at + 9 + len).min(buf.len());
        frames.push((buf[at + 3], buf[at + 9..end].to_vec()));
        at += 9 + len;
    }
    (frames, closed)
}

fn goaway_code(frames: &[(u8, Vec<u8>)]) -> Option<u32> {
    frames
        .iter()
        .find(|(kind, p)| *kind == GOAWAY && p.len() >= 8)
        .map(|(_, p)| u32::from_be_bytes([p[4], p[5], p[6], p[7]]))
}

async fn still_serves(p: &TestProxy) {
    let mut c = h2(p.addr).await;
    let answer = try_send_h2(&mut c, request("GET", "/", &[], ""), p.addr)
        .await
        .unwrap();
    assert_eq!(answer.0, StatusCode::OK);
}

#[tokio::test]
async fn rapid_reset_gets_goaway_enhance_your_calm_and_bounded_work() {
    let (p, backend) = setup(ProxyConfig::default()).await;
    let attempts: u32 = 2000;
    let mut attack = client_start();
    for i in 0..attempts {
        let id = 2 * i + 1;
        attack.extend(frame(HEADERS, END_STREAM | END_HEADERS, id, &get_block()));
        attack.extend(frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
    }
    let s = TcpStream::connect(p.addr).await.unwrap();
    let (r, mut w) = s.into_split();
    let reader = tokio::spawn(read_frames(r, Duration::from_secs(10)));
    let _ = w.write_all(&attack).await;
    let (frames, closed) = reader.await.unwrap();
    let reached = backend.count();
    println!(
        "rapid reset: {attempts} streams opened and reset, backend saw {reached}, goaway={:?}",
        goaway_code(&frames)
    );
    assert_eq!(
        goaway_code(&frames),
        Some(ENHANCE_YOUR_CALM),
        "frames: {:?}",
        frames.iter().map(|f| f.0).collect::<Vec<_>>()
    );
    assert!(closed, "the connection was not closed");
    // Bounded: far fewer than the streams sent ever became upstream requests.
    assert!(
        reached <= 256,
        "{reached} of {attempts} reset streams reached the backend"
    );
    still_serves(&p).await;
}

#[tokio::test]
async fn continuation_flood_is_cut_off_with_goaway() {
    let (p, backend) = setup(ProxyConfig::default()).await;
    let s = TcpStream::connect(p.addr).await.unwrap();
    let (r, mut w) = s.into_split();
    let reader = tokio::spawn(read_frames(r, Duration::from_secs(20)));
    let mut start = client_start();
    start.extend(frame(HEADERS, END_STREAM, 1, &get_block()));
    w.write_all(&start).await.unwrap();
    // Endless CONTINUATION frames, never END_HEADERS: 16 KiB of valid literal headers
    // each, up to 64 MiB in all.
    let mut field = vec![0x00, 3];
    field.extend_from_slice(b"x-a");
    field.push(100);
    field.extend_from_slice(&[b'a'; 100]);
    let payload: Vec<u8> = field
        .iter()
        .copied()
        .cycle()
        .take(16384 / field.len() * field.len())
        .collect();
    let continuation = frame(CONTINUATION, 0, 1, &payload);
    let mut sent = 0usize;
    while sent < 64 << 20 {
        match tokio::time::timeout(Duration::from_secs(5), w.write_all(&continuation)).await {
            Ok(Ok(())) => sent += continuation.len(),
            Ok(Err(_)) | Err(_) => break,
        }
    }
    let (frames, closed) = reader.await.unwrap();
    println!(
        "continuation flood: wrote {} KiB before the proxy stopped reading, goaway={:?}",
        sent / 1024,
        goaway_code(&frames)
    );
    assert!(
        sent < 16 << 20,
        "the proxy kept reading {sent} bytes of one header block"
    );
    assert_eq!(goaway_code(&frames), Some(ENHANCE_YOUR_CALM));
    assert!(closed);
    assert_eq!(backend.count(), 0);
    still_serves(&p).await;
}
