//! The app's endpoints. Every response carries `X-Version` and `X-Instance`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, ALLOW, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::body::{full, AppBody, RepeatBody};

/// `X-Version: <version>` on every response.
pub const X_VERSION: HeaderName = HeaderName::from_static("x-version");
/// `X-Instance: <instance id or port>` on every response.
pub const X_INSTANCE: HeaderName = HeaderName::from_static("x-instance");

/// Largest `POST /write` body accepted.
const MAX_WRITE_BODY: usize = 1024 * 1024;

/// Paths the app serves, to answer 405 rather than 404 on a wrong method.
const KNOWN_PATHS: [&str; 13] = [
    "/",
    "/headers",
    "/users",
    "/health",
    "/slow",
    "/write",
    "/writes",
    "/ws",
    "/bytes",
    "/admin/health",
    "/echo",
    "/abort",
    "/admin/hang",
];

/// Everything the handlers share for the life of the process.
pub(crate) struct AppState {
    /// `X-Version` value (validated once at start).
    pub version_header: HeaderValue,
    /// Body of `/` and `/slow`: the version plus a newline.
    pub version_body: Bytes,
    /// `X-Instance` value.
    pub instance_header: HeaderValue,
    /// Fraction of `/` and `/slow` answered 500.
    pub error_rate: f64,
    /// Added to every `/` request.
    pub latency: Duration,
    /// `/health` answers 503 while set; toggled by `POST /admin/health`.
    pub health_failing: AtomicBool,
    /// While set, every request except `/admin/*` is accepted and never answered (a hung
    /// backend, for fault tests); toggled by `POST /admin/hang`.
    pub hanging: AtomicBool,
    /// Number of `POST /write` requests served.
    pub writes: AtomicU64,
    /// Cancelled when the server shuts down (WebSockets send a close frame then).
    pub shutdown: CancellationToken,
    /// Tracks connection and WebSocket tasks so shutdown can wait for them.
    pub tasks: TaskTracker,
    /// The SQLite file `GET /users` reads (`--db`).
    pub db: Option<std::path::PathBuf>,
}

/// Routes one request and stamps the identity headers on the response.
pub(crate) async fn handle(req: Request<Incoming>, state: Arc<AppState>) -> Response<AppBody> {
    let mut response = route(req, &state).await;
    let headers = response.headers_mut();
    headers.insert(X_VERSION, state.version_header.clone());
    headers.insert(X_INSTANCE, state.instance_header.clone());
    response
}

async fn route(req: Request<Incoming>, state: &Arc<AppState>) -> Response<AppBody> {
    let get = req.method() == Method::GET || req.method() == Method::HEAD;
    let post = req.method() == Method::POST;
    let query = req.uri().query();
    if state.hanging.load(Relaxed) && !req.uri().path().starts_with("/admin/") {
        tracing::debug!(
            path = req.uri().path(),
            "hanging: this request is never answered"
        );
        return std::future::pending().await;
    }
    match req.uri().path() {
        "/" if get => root(state).await,
        "/health" if get => health(state),
        "/headers" if get => headers(&req),
        "/slow" if get => slow(query, state).await,
        "/write" if post => write(req, state).await,
        "/writes" if get => text(StatusCode::OK, state.writes.load(Relaxed).to_string()),
        "/ws" if get => crate::ws::upgrade(req, state),
        "/bytes" if get => bytes(query),
        "/admin/health" if post => admin_health(query, state),
        "/admin/hang" if post => admin_hang(query, state),
        "/echo" if post => echo(req).await,
        "/users" if get => users(state).await,
        "/abort" if get => abort(query),
        path if KNOWN_PATHS.contains(&path) => method_not_allowed(path),
        path => text(StatusCode::NOT_FOUND, format!("no route for {path}\n")),
    }
}

async fn root(state: &AppState) -> Response<AppBody> {
    if !state.latency.is_zero() {
        tokio::time::sleep(state.latency).await;
    }
    version_or_injected_error(state)
}

/// `GET /headers`: the request as the app received it — the request line, then every
/// header as `name: value`, one a line in the order they came — so what a proxy in front
/// added or replaced (`X-Forwarded-Proto`, `X-Forwarded-For`, `Host`) can be seen.
fn headers(req: &Request<Incoming>) -> Response<AppBody> {
    let mut out = format!("{} {} {:?}\n", req.method(), req.uri(), req.version());
    for (name, value) in req.headers() {
        out.push_str(name.as_str());
        out.push_str(": ");
        out.push_str(&String::from_utf8_lossy(value.as_bytes()));
        out.push('\n');
    }
    text(StatusCode::OK, out)
}

/// The rows of the `--db` file; 404 without `--db`, 500 when it cannot be read.
async fn users(state: &AppState) -> Response<AppBody> {
    let Some(path) = state.db.clone() else {
        return text(StatusCode::NOT_FOUND, "no --db given\n");
    };
    match tokio::task::spawn_blocking(move || crate::db::users(&path)).await {
        Ok(Ok(rows)) => text(StatusCode::OK, rows),
        Ok(Err(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

fn health(state: &AppState) -> Response<AppBody> {
    if state.health_failing.load(Relaxed) {
        text(StatusCode::SERVICE_UNAVAILABLE, "failing\n")
    } else {
        text(StatusCode::OK, "ok")
    }
}

async fn slow(query: Option<&str>, state: &AppState) -> Response<AppBody> {
    let Some(ms) = query_param(query, "ms").and_then(|v| v.parse::<u64>().ok()) else {
        return text(
            StatusCode::BAD_REQUEST,
            "usage: /slow?ms=N (N milliseconds, e.g. /slow?ms=500)\n",
        );
    };
    tracing::debug!(ms, "slow request started");
    tokio::time::sleep(Duration::from_millis(ms)).await;
    version_or_injected_error(state)
}

async fn write(req: Request<Incoming>, state: &AppState) -> Response<AppBody> {
    match Limited::new(req.into_body(), MAX_WRITE_BODY)
        .collect()
        .await
    {
        Ok(_) => {
            let count = state.writes.fetch_add(1, Relaxed) + 1;
            text(StatusCode::OK, count.to_string())
        }
        Err(error) if error.is::<http_body_util::LengthLimitError>() => text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("write body over {MAX_WRITE_BODY} bytes; send less\n"),
        ),
        Err(error) => text(
            StatusCode::BAD_REQUEST,
            format!("could not read the body: {error}\n"),
        ),
    }
}

fn bytes(query: Option<&str>) -> Response<AppBody> {
    match query_param(query, "n").and_then(|v| v.parse::<u64>().ok()) {
        Some(n) => with_type(
            Response::new(RepeatBody::new(n)),
            "application/octet-stream",
        ),
        None => text(
            StatusCode::BAD_REQUEST,
            "usage: /bytes?n=N (N bytes, e.g. /bytes?n=1048576)\n",
        ),
    }
}

fn admin_health(query: Option<&str>, state: &AppState) -> Response<AppBody> {
    let fail = match query_param(query, "fail") {
        Some("1" | "true") => true,
        Some("0" | "false") => false,
        _ => {
            return text(
                StatusCode::BAD_REQUEST,
                "usage: POST /admin/health?fail=1 (or fail=0)\n",
            )
        }
    };
    state.health_failing.store(fail, Relaxed);
    tracing::info!(health_failing = fail, "health toggled");
    text(
        StatusCode::OK,
        if fail {
            "health failing\n"
        } else {
            "health ok\n"
        },
    )
}

/// Sets or clears hang mode (`POST /admin/hang?on=1` / `on=0`).
fn admin_hang(query: Option<&str>, state: &AppState) -> Response<AppBody> {
    let on = match query_param(query, "on") {
        Some("1" | "true") => true,
        Some("0" | "false") => false,
        _ => {
            return text(
                StatusCode::BAD_REQUEST,
                "usage: POST /admin/hang?on=1 (or on=0)\n",
            )
        }
    };
    state.hanging.store(on, Relaxed);
    tracing::info!(hanging = on, "hang mode toggled");
    text(StatusCode::OK, if on { "hanging\n" } else { "answering\n" })
}

/// `POST /echo`: answers the request body unchanged (up to the `/write` limit), so a
/// client can check that its whole body arrived.
async fn echo(req: Request<Incoming>) -> Response<AppBody> {
    match Limited::new(req.into_body(), MAX_WRITE_BODY)
        .collect()
        .await
    {
        Ok(body) => with_type(
            Response::new(full(body.to_bytes())),
            "application/octet-stream",
        ),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("echo body over {MAX_WRITE_BODY} bytes; send less\n"),
        ),
        Err(error) => text(
            StatusCode::BAD_REQUEST,
            format!("could not read the body: {error}\n"),
        ),
    }
}

/// `GET /abort?n=N`: promises `2N` body bytes, sends `N`, then fails the body so the
/// connection is cut mid-response (a backend that dies while answering).
fn abort(query: Option<&str>) -> Response<AppBody> {
    match query_param(query, "n").and_then(|v| v.parse::<u64>().ok()) {
        Some(n) => with_type(
            Response::new(RepeatBody::truncated(n)),
            "application/octet-stream",
        ),
        None => text(
            StatusCode::BAD_REQUEST,
            "usage: /abort?n=N (send N of 2N promised bytes, then cut the connection)\n",
        ),
    }
}

/// The version body, or a 500 for the configured fraction of requests.
fn version_or_injected_error(state: &AppState) -> Response<AppBody> {
    if state.error_rate > 0.0 && fastrand::f64() < state.error_rate {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "injected error\n");
    }
    with_type(
        Response::new(full(state.version_body.clone())),
        "text/plain",
    )
}

fn method_not_allowed(path: &str) -> Response<AppBody> {
    let allow = match path {
        "/write" | "/admin/health" => "POST",
        _ => "GET, HEAD",
    };
    let mut response = text(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{path} accepts {allow}\n"),
    );
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    response
}

/// A plain-text response.
pub(crate) fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<AppBody> {
    let mut response = with_type(Response::new(full(body)), "text/plain");
    *response.status_mut() = status;
    response
}

fn with_type(mut response: Response<AppBody>, content_type: &'static str) -> Response<AppBody> {
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Value of `name` in a `a=1&b=2` query string (no percent-decoding: values are numbers).
fn query_param<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params() {
        assert_eq!(query_param(Some("ms=5&n=7"), "n"), Some("7"));
        assert_eq!(query_param(Some("ms=5"), "n"), None);
        assert_eq!(query_param(Some("flag&n=1"), "n"), Some("1"));
        assert_eq!(query_param(None, "n"), None);
    }
}
