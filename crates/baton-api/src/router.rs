//! Routes of the admin API. Every JSON endpoint here is listed in `openapi.json` (a test
//! checks that no route is missing from it).

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use baton_config::StrategyKind;
use baton_controller::{ControlError, Controller, Op};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;

/// The OpenAPI 3.1 document served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

type Ctl = Arc<Controller>;

pub fn router(controller: Arc<Controller>) -> Router {
    Router::new()
        .route("/v1/apps", get(list_apps))
        .route("/v1/apps/{app}", get(app_status))
        .route("/v1/apps/{app}/deployments", post(deploy))
        .route("/v1/apps/{app}/promote", post(promote))
        .route("/v1/apps/{app}/abort", post(abort))
        .route("/v1/apps/{app}/pause", post(pause))
        .route("/v1/apps/{app}/resume", post(resume))
        .route("/v1/apps/{app}/rollback", post(rollback))
        .route("/v1/apps/{app}/history", get(history))
        .route("/v1/apps/{app}/logs", get(logs))
        .route("/v1/apps/{app}/plan", get(plan))
        .route("/v1/events", get(events))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(controller)
}

/// What `POST /v1/upgrade` asks of the server binary: start the new process, hand it
/// the listeners and wait for its verdict. The server supplies it (see
/// [`upgrade_router`]); the API only carries the request and the answer.
pub type UpgradeHook = Arc<
    dyn Fn(
            UpgradeRequest,
        ) -> futures_util::future::BoxFuture<'static, Result<UpgradeDone, UpgradeFailed>>
        + Send
        + Sync,
>;

/// The body of `POST /v1/upgrade` (all optional).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeRequest {
    /// How long the new process may take to report ready, e.g. `"30s"`.
    #[serde(default)]
    pub timeout: Option<String>,
}

/// A handover that happened: the old process now drains and exits.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UpgradeDone {
    pub old_pid: u32,
    pub new_pid: u32,
    pub binary: String,
}

/// A handover that did not happen: the running process keeps serving.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UpgradeFailed {
    /// 409 (another upgrade is running), 400 (bad request) or 500 (the new process
    /// failed).
    #[serde(skip)]
    pub status: u16,
    pub error: String,
    /// The last lines the new process wrote to stderr.
    pub stderr: Vec<String>,
}

/// `POST /v1/upgrade`, merged into the admin router by servers that can upgrade.
pub fn upgrade_router(hook: UpgradeHook) -> Router {
    Router::new()
        .route("/v1/upgrade", post(upgrade))
        .with_state(hook)
}

async fn upgrade(State(hook): State<UpgradeHook>, body: axum::body::Bytes) -> Response {
    let req = if body.iter().all(u8::is_ascii_whitespace) {
        UpgradeRequest::default()
    } else {
        match serde_json::from_slice::<UpgradeRequest>(&body) {
            Ok(r) => r,
            Err(e) => return bad(format!("invalid upgrade request: {e}")).into_response(),
        }
    };
    match hook(req).await {
        Ok(done) => Json(done).into_response(),
        Err(failed) => {
            let code =
                StatusCode::from_u16(failed.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (code, Json(failed)).into_response()
        }
    }
}

/// Controller errors become JSON `{"error": "..."}` with a fitting status.
struct ApiError(ControlError);

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code =
            StatusCode::from_u16(self.0.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, Json(json!({ "error": self.0.to_string() }))).into_response()
    }
}

fn bad(msg: String) -> ApiError {
    ApiError(ControlError::BadRequest(msg))
}

async fn list_apps(State(c): State<Ctl>) -> impl IntoResponse {
    Json(c.statuses())
}

async fn app_status(State(c): State<Ctl>, Path(app): Path<String>) -> Result<Response, ApiError> {
    Ok(Json(c.status(&app)?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeployBody {
    version: String,
    #[serde(default)]
    strategy: Option<String>,
    #[serde(default)]
    targets: Vec<String>,
}

fn parse_strategy(s: Option<&str>) -> Result<Option<StrategyKind>, ApiError> {
    s.map(|s| {
        s.parse::<StrategyKind>().map_err(|_| {
            bad(format!(
                "unknown strategy {s:?}: use recreate, blue_green, rolling, canary or ab_test"
            ))
        })
    })
    .transpose()
}

async fn deploy(
    State(c): State<Ctl>,
    Path(app): Path<String>,
    body: Result<Json<DeployBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| bad(format!("invalid deploy request: {}", e.body_text())))?;
    let strategy = parse_strategy(body.strategy.as_deref())?;
    let targets = body
        .targets
        .iter()
        .map(|t| {
            t.parse().map_err(|_| {
                bad(format!(
                    "invalid --target {t:?}: write it as HOST:PORT, e.g. 127.0.0.1:3000"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let id = c.deploy(&app, &body.version, strategy, targets).await?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PromoteBody {
    #[serde(default)]
    to: Option<String>,
}

async fn promote(
    State(c): State<Ctl>,
    Path(app): Path<String>,
    body: Option<Json<PromoteBody>>,
) -> Result<Response, ApiError> {
    let to = body.and_then(|Json(b)| b.to);
    op(c, app, Op::Promote { to }).await
}

async fn abort(State(c): State<Ctl>, Path(app): Path<String>) -> Result<Response, ApiError> {
    op(c, app, Op::Abort).await
}

async fn pause(State(c): State<Ctl>, Path(app): Path<String>) -> Result<Response, ApiError> {
    op(c, app, Op::Pause).await
}

async fn resume(State(c): State<Ctl>, Path(app): Path<String>) -> Result<Response, ApiError> {
    op(c, app, Op::Resume).await
}

async fn rollback(State(c): State<Ctl>, Path(app): Path<String>) -> Result<Response, ApiError> {
    op(c, app, Op::Rollback).await
}

async fn op(c: Ctl, app: String, op: Op) -> Result<Response, ApiError> {
    c.op(&app, op).await?;
    Ok(Json(c.status(&app)?).into_response())
}

#[derive(Deserialize)]
struct HistoryQuery {
    limit: Option<usize>,
}

async fn history(
    State(c): State<Ctl>,
    Path(app): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Response, ApiError> {
    Ok(Json(c.history(&app, q.limit.unwrap_or(50))?).into_response())
}

#[derive(Deserialize)]
struct LogsQuery {
    version: Option<String>,
    lines: Option<usize>,
}

async fn logs(
    State(c): State<Ctl>,
    Path(app): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    let out = c
        .logs(&app, q.version.as_deref(), q.lines.unwrap_or(100))
        .await?;
    let out: Vec<_> = out
        .into_iter()
        .map(|(instance, version, lines)| json!({"instance": instance, "version": version, "lines": lines}))
        .collect();
    Ok(Json(out).into_response())
}

#[derive(Deserialize)]
struct PlanQuery {
    version: String,
    strategy: Option<String>,
}

async fn plan(
    State(c): State<Ctl>,
    Path(app): Path<String>,
    Query(q): Query<PlanQuery>,
) -> Result<Response, ApiError> {
    let strategy = parse_strategy(q.strategy.as_deref())?;
    Ok(Json(c.plan(&app, &q.version, strategy)?).into_response())
}

#[derive(Deserialize)]
struct EventsQuery {
    app: Option<String>,
}

async fn events(
    State(c): State<Ctl>,
    Query(q): Query<EventsQuery>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let stream = BroadcastStream::new(c.subscribe()).filter_map(move |e| {
        let e = e.ok()?;
        if q.app.as_deref().is_some_and(|a| a != e.app) {
            return None;
        }
        let data = serde_json::to_string(&e).ok()?;
        Some(Ok(SseEvent::default().event(e.kind.clone()).data(data)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn metrics(State(c): State<Ctl>) -> impl IntoResponse {
    let mut out = String::new();
    c.metrics().render_prometheus(&mut out);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// Fuzzing entry point, not an API: decode a request body the way the endpoint does
/// (`endpoint` 0: deploy, else promote) and run the checks made before anything is
/// handed to the controller. `Err` is the message the client would get.
#[doc(hidden)]
pub fn fuzz_body(endpoint: u8, body: &[u8]) -> Result<(), String> {
    let msg = |e: ApiError| e.0.to_string();
    if endpoint == 0 {
        let Json(body) = Json::<DeployBody>::from_bytes(body)
            .map_err(|e| format!("invalid deploy request: {}", e.body_text()))?;
        parse_strategy(body.strategy.as_deref()).map_err(msg)?;
        for t in &body.targets {
            t.parse::<std::net::SocketAddr>()
                .map_err(|e| format!("invalid target {t:?}: {e}"))?;
        }
        baton_core::validate_version(&body.version).map_err(|e| e.to_string())
    } else {
        let Json(body) = Json::<PromoteBody>::from_bytes(body)
            .map_err(|e| format!("invalid promote request: {}", e.body_text()))?;
        match body.to {
            Some(v) => baton_core::validate_version(&v).map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::OPENAPI;

    /// Every route registered in `router()` is described in the OpenAPI document.
    #[test]
    fn openapi_lists_every_route() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        let source = include_str!("router.rs");
        let routes: Vec<&str> = source
            .lines()
            .filter_map(|l| l.trim().strip_prefix(".route(\""))
            .filter_map(|l| l.split('"').next())
            .collect();
        assert!(routes.len() >= 15, "found {routes:?}");
        for r in routes {
            assert!(
                paths.contains_key(r),
                "route {r} is missing from openapi.json"
            );
        }
    }
}
