//! The CLI's side of the admin API: plain HTTP/1.1 over the Unix socket or TCP (with the
//! bearer token), JSON in and out.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Clone)]
pub enum AdminAddr {
    Unix(PathBuf),
    Tcp(String),
}

impl std::fmt::Display for AdminAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            AdminAddr::Tcp(a) => write!(f, "{a}"),
        }
    }
}

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot reach baton at {addr} ({source}); is `baton serve` running with this config? Start it with `baton serve -c baton.toml`, or pass --admin")]
    Unreachable {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("admin API at {addr}: {detail}")]
    Protocol { addr: String, detail: String },
    /// The server answered with an error status; `message` is its explanation.
    #[error("{message}")]
    Api { status: u16, message: String },
}

pub struct AdminClient {
    addr: AdminAddr,
    token: Option<String>,
}

impl AdminClient {
    pub fn new(addr: AdminAddr, token: Option<String>) -> Self {
        AdminClient { addr, token }
    }

    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.call("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<Value, ClientError> {
        self.call("POST", path, Some(body)).await
    }

    /// `POST /v1/upgrade`: the server starts the binary at its path, hands it the
    /// listeners and answers once the new process is ready (or failed to be).
    /// `timeout` bounds the wait for the new process, e.g. `"30s"`.
    pub async fn upgrade(&self, timeout: Option<&str>) -> Result<Value, ClientError> {
        self.post("/v1/upgrade", serde_json::json!({ "timeout": timeout }))
            .await
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ClientError> {
        let (status, bytes) = self.send(method, path, body).await?;
        if status >= 400 {
            return Err(api_error(status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol {
            addr: self.addr.to_string(),
            detail: format!("invalid JSON in answer: {e}"),
        })
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Bytes), ClientError> {
        let addr = self.addr.to_string();
        let unreachable = |source| ClientError::Unreachable {
            addr: addr.clone(),
            source,
        };
        let proto = |detail: String| ClientError::Protocol {
            addr: addr.clone(),
            detail,
        };
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "baton")
            .header("content-type", "application/json");
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req
            .body(Full::new(Bytes::from(payload)))
            .map_err(|e| proto(e.to_string()))?;
        let resp = match &self.addr {
            AdminAddr::Unix(p) => {
                let s = tokio::net::UnixStream::connect(p)
                    .await
                    .map_err(unreachable)?;
                exchange(TokioIo::new(s), req).await
            }
            AdminAddr::Tcp(a) => {
                let s = tokio::net::TcpStream::connect(a.as_str())
                    .await
                    .map_err(unreachable)?;
                exchange(TokioIo::new(s), req).await
            }
        };
        resp.map_err(|e| proto(e.to_string()))
    }
}

async fn exchange<T>(io: T, req: Request<Full<Bytes>>) -> Result<(u16, Bytes), hyper::Error>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(conn);
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

fn api_error(status: u16, body: &[u8]) -> ClientError {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    ClientError::Api { status, message }
}
