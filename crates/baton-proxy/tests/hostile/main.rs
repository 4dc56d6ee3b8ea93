//! Hostile input against the real proxy over real sockets: a request-smuggling corpus,
//! oversized and too-slow heads, oversized, slow and stalled bodies, `Connection` abuse,
//! spoofed `X-Forwarded-For`, HTTP/2 rapid reset, CONTINUATION floods and malformed
//! streams, and the request rules (`Upgrade`, underscore header names, Host and
//! request-target checks, canonical lengths, GET bodies). Every refused case also proves
//! that nothing reached the backend (it counts or records what it receives).
//! docs/SECURITY.md lists the cases
//! and the status each gets.
#![allow(clippy::unwrap_used)]

mod body;
#[allow(dead_code)]
#[path = "../acceptance/common.rs"]
mod common;
mod forwarding;
mod h1;
mod h1_edges;
mod h2;
mod requests;
mod slow_body;

use common::*;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A proxy routing everything to one counting backend.
pub async fn setup(config: baton_proxy::ProxyConfig) -> (TestProxy, Counting) {
    let backend = counting("c1", "v1", 200).await;
    let p = start_proxy(config).await;
    p.proxy
        .publish(&table(pools(vec![pool("v1", 100, vec![backend.spec()])])))
        .unwrap();
    (p, backend)
}

/// What a raw client saw: the status of every response, and whether the server
/// closed the connection (within 5 s).
#[derive(Debug)]
pub struct Seen {
    pub statuses: Vec<u16>,
    pub closed: bool,
    pub text: String,
}

/// Write `bytes` on a fresh connection (write errors ignored: the server may close
/// early), then read until the server closes or 5 s pass.
pub async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Seen {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(bytes).await;
    read_rest(&mut s, Duration::from_secs(5)).await
}

/// Read until EOF, a reset, or `limit`.
pub async fn read_rest(s: &mut TcpStream, limit: Duration) -> Seen {
    let mut out = Vec::new();
    let closed = match tokio::time::timeout(limit, s.read_to_end(&mut out)).await {
        Ok(Ok(_)) | Ok(Err(_)) => true,
        Err(_) => false,
    };
    let text = String::from_utf8_lossy(&out).into_owned();
    Seen {
        statuses: statuses(&text),
        closed,
        text,
    }
}

/// Status codes of the HTTP/1.x status lines in `text` (the test backend's bodies
/// are short version names, so every match is a status line).
pub fn statuses(text: &str) -> Vec<u16> {
    text.match_indices("HTTP/1.")
        .filter_map(|(at, _)| text.get(at + 9..at + 12)?.parse().ok())
        .collect()
}
