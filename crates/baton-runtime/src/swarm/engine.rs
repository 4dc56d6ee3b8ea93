//! The few Engine API reads bollard's models cannot express: a task's
//! `NetworksAttachments` (its addresses on overlay networks), which bollard's `Task` model
//! leaves out. One GET, answered as JSON, over the same socket bollard uses.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use std::time::Duration;

/// How long one raw read may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// `GET path` on the engine at `host` (`unix:///path` or `tcp://host:port`), parsed as
/// JSON. `Ok(None)` on 404.
pub(crate) async fn get_json(host: &str, path: &str) -> Result<Option<serde_json::Value>, String> {
    match tokio::time::timeout(TIMEOUT, get(host, path)).await {
        Ok(result) => result,
        Err(_) => Err(format!("GET {path}: no answer within {TIMEOUT:?}")),
    }
}

async fn get(host: &str, path: &str) -> Result<Option<serde_json::Value>, String> {
    let request = http::Request::get(path)
        .header(http::header::HOST, "docker")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("GET {path}: {e}"))?;
    let response = if let Some(socket) = host.strip_prefix("unix://") {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|e| format!("connect to {socket}: {e}"))?;
        send(stream, request).await?
    } else {
        let addr = host
            .strip_prefix("tcp://")
            .or_else(|| host.strip_prefix("http://"))
            .unwrap_or(host);
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        send(stream, request).await?
    };
    let (status, body) = response;
    if status == http::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(format!(
            "GET {path}: {status}: {}",
            String::from_utf8_lossy(&body).trim()
        ));
    }
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| format!("GET {path}: the answer is not JSON: {e}"))
}

async fn send<S>(
    stream: S,
    request: http::Request<Empty<Bytes>>,
) -> Result<(http::StatusCode, Bytes), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let path = request.uri().to_string();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("GET {path}: reading the answer: {e}"))?
        .to_bytes();
    Ok((status, body))
}

/// The task's first address on the network named `network` (`NetworksAttachments`, an
/// address in CIDR form such as `10.0.1.7/24`).
pub(crate) fn task_address(task: &serde_json::Value, network: &str) -> Option<std::net::IpAddr> {
    task["NetworksAttachments"]
        .as_array()?
        .iter()
        .find(|a| a["Network"]["Spec"]["Name"] == network)?["Addresses"]
        .as_array()?
        .iter()
        .filter_map(|a| a.as_str())
        .find_map(|cidr| cidr.split('/').next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_on_the_named_network() {
        let task = serde_json::json!({
            "NetworksAttachments": [
                {"Network": {"Spec": {"Name": "ingress"}}, "Addresses": ["10.0.0.5/24"]},
                {"Network": {"Spec": {"Name": "app-net"}}, "Addresses": ["10.231.96.7/24"]}
            ]
        });
        assert_eq!(
            task_address(&task, "app-net"),
            Some("10.231.96.7".parse().unwrap())
        );
        assert_eq!(task_address(&task, "other"), None);
        assert_eq!(task_address(&serde_json::json!({}), "app-net"), None);
    }
}
