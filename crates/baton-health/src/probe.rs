//! One active probe: an HTTP/1.1 GET (hyper's client connection over a plain
//! `TcpStream`, no pooling, one request per connection) or a bare TCP connect, bounded as
//! a whole by the spec's timeout.

use baton_core::{HealthSpec, HumanDuration, ProbeKind};
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use std::io;
use std::net::SocketAddr;
use thiserror::Error;
use tokio::net::TcpStream;

/// Why a probe failed. The `Display` text is short enough for a status line.
#[derive(Debug, Error)]
pub enum ProbeError {
    #[error("connection refused")]
    Refused,
    #[error("connect failed: {0}")]
    Connect(#[source] io::Error),
    #[error("timed out after {0}")]
    Timeout(HumanDuration),
    #[error("status {0}")]
    Status(u16),
    #[error("bad HTTP response: {0}")]
    Http(#[source] hyper::Error),
    #[error("invalid health check path {path:?}: {reason}; set `path` in [apps.X.health] to something like \"/healthz\"")]
    BadPath { path: String, reason: String },
    #[error("invalid health check host {host:?}: set `host` in [apps.X.health] to a plain host name such as \"example.com\"")]
    BadHost { host: String },
}

/// One probe against `addr`; `Err` carries a short human reason such as
/// `"connection refused"`, `"status 503"` or `"timed out after 2s"`.
pub async fn probe(addr: SocketAddr, spec: &HealthSpec) -> Result<(), String> {
    check(addr, spec).await.map_err(|e| e.to_string())
}

/// [`probe`] with a typed error.
pub async fn check(addr: SocketAddr, spec: &HealthSpec) -> Result<(), ProbeError> {
    let attempt = async {
        let stream = connect(addr).await?;
        match spec.kind {
            ProbeKind::Tcp => Ok(()),
            ProbeKind::Http => http_get(stream, addr, spec).await,
        }
    };
    match tokio::time::timeout(spec.timeout.get(), attempt).await {
        Ok(result) => result,
        Err(_) => Err(ProbeError::Timeout(spec.timeout)),
    }
}

async fn connect(addr: SocketAddr) -> Result<TcpStream, ProbeError> {
    TcpStream::connect(addr).await.map_err(|e| match e.kind() {
        io::ErrorKind::ConnectionRefused => ProbeError::Refused,
        _ => ProbeError::Connect(e),
    })
}

async fn http_get(
    stream: TcpStream,
    addr: SocketAddr,
    spec: &HealthSpec,
) -> Result<(), ProbeError> {
    let request = build_request(addr, spec)?;
    let (mut sender, mut conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(ProbeError::Http)?;
    // Drive the connection and the request together; dropping both afterwards closes the
    // socket, so nothing outlives the probe. The connection may finish first (the server
    // answered and closed): the response is then already waiting in `send`.
    let send = sender.send_request(request);
    tokio::pin!(send);
    let response = tokio::select! {
        response = &mut send => response,
        ended = &mut conn => match ended {
            Ok(()) => send.await,
            Err(e) => Err(e),
        },
    }
    .map_err(ProbeError::Http)?;
    let status = response.status().as_u16();
    if spec.accepts(status) {
        Ok(())
    } else {
        Err(ProbeError::Status(status))
    }
}

fn build_request(
    addr: SocketAddr,
    spec: &HealthSpec,
) -> Result<http::Request<Empty<Bytes>>, ProbeError> {
    let host = spec.host.clone().unwrap_or_else(|| addr.to_string());
    let host = http::HeaderValue::from_str(&host).map_err(|_| ProbeError::BadHost { host })?;
    let bad = |reason: String| ProbeError::BadPath {
        path: spec.path.clone(),
        reason,
    };
    if !spec.path.starts_with('/') {
        return Err(bad("it must start with '/'".into()));
    }
    http::Request::get(spec.path.as_str())
        .header(http::header::HOST, host)
        .header(http::header::USER_AGENT, "baton-health")
        .header(http::header::CONNECTION, "close")
        .body(Empty::new())
        .map_err(|e| bad(e.to_string()))
}
