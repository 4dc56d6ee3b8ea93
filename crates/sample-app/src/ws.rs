//! `GET /ws`: WebSocket echo (text and binary) over a hyper upgrade.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::header::{
    CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use crate::body::{full, AppBody};
use crate::handlers::{text, AppState};

/// How long a closing WebSocket waits for the peer's close frame at shutdown.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Answers the handshake with 101 and spawns the echo loop on the upgraded connection.
pub(crate) fn upgrade(mut req: Request<Incoming>, state: &Arc<AppState>) -> Response<AppBody> {
    let accept = match handshake_accept(req.headers()) {
        Ok(accept) => accept,
        Err(reason) => return text(StatusCode::BAD_REQUEST, format!("{reason}\n")),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let shutdown = state.shutdown.clone();
    state.tasks.spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                        .await;
                echo(ws, shutdown).await;
            }
            Err(error) => tracing::debug!(%error, "websocket upgrade failed"),
        }
    });
    let mut response = Response::new(full(""));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    response
}

/// Checks an RFC 6455 opening handshake; returns the `Sec-WebSocket-Accept` value.
fn handshake_accept(headers: &HeaderMap) -> Result<HeaderValue, &'static str> {
    let has_token = |name, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has_token(UPGRADE, "websocket") || !has_token(CONNECTION, "upgrade") {
        return Err("/ws is a WebSocket endpoint: send Connection: Upgrade and Upgrade: websocket");
    }
    if headers.get(SEC_WEBSOCKET_VERSION).is_none_or(|v| v != "13") {
        return Err("only WebSocket version 13 is supported (Sec-WebSocket-Version: 13)");
    }
    let key = headers
        .get(SEC_WEBSOCKET_KEY)
        .ok_or("missing Sec-WebSocket-Key header")?;
    HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
        .map_err(|_| "invalid Sec-WebSocket-Key")
}

/// Echoes text and binary messages until the peer closes or the server shuts down.
///
/// Pings are answered and close frames acknowledged by tungstenite itself; at shutdown
/// the server sends a 1001 "going away" close and waits briefly for the peer's answer.
async fn echo<S>(mut ws: WebSocketStream<S>, shutdown: CancellationToken)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let message = tokio::select! {
            message = ws.next() => message,
            () = shutdown.cancelled() => break,
        };
        match message {
            Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => {
                if ws.send(message).await.is_err() {
                    return;
                }
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => {
                tracing::debug!(%error, "websocket ended");
                return;
            }
            None => return,
        }
    }
    let going_away = CloseFrame {
        code: CloseCode::Away,
        reason: "server shutting down".into(),
    };
    if ws.close(Some(going_away)).await.is_ok() {
        let drain = async { while let Some(Ok(_)) = ws.next().await {} };
        let _ = tokio::time::timeout(CLOSE_GRACE, drain).await;
    }
}
