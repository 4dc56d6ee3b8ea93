//! Routes of the admin API. Every route is added through `utoipa_axum::routes!`, which
//! takes its path, method, parameters and bodies from the handler's `#[utoipa::path]`,
//! so a route cannot be served without being in the OpenAPI document; the document is
//! generated from the handlers and the types in [`crate::types`] and served at
//! `/openapi.json`.

use crate::types::{
    AppEventsQuery, AppStatus, Delivery, DeployCreated, DeployRequest, ErrorBody, Event,
    EventsQuery, ForceRequest, HistoryEntry, HistoryQuery, InstanceLogs, LogsQuery, PlanQuery,
    PlanReport, PromoteRequest, ReloadReport, ReloadRequest, UpgradeDone, UpgradeRequest,
};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use baton_config::StrategyKind;
use baton_controller::fleet::ProxyView;
use baton_controller::{ControlError, Controller, Op};
use futures_util::Stream;
use std::convert::Infallible;
use std::sync::Arc;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

type Ctl = Arc<Controller>;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "baton admin API",
        version = "1",
        description = "Deploy and observe apps behind baton. Served on the admin listener (a Unix socket by default; TCP requires `Authorization: Bearer <token>`, answered with 401 and an `ErrorBody` otherwise). Every error answer is an `ErrorBody`."
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerOnTcp)
)]
struct ApiDoc;

/// The bearer token a TCP admin listener requires (`[admin] token_file`); on the Unix
/// socket no credentials are needed, so either requirement satisfies the document.
struct BearerOnTcp;

impl utoipa::Modify for BearerOnTcp {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            Http, HttpAuthScheme, SecurityRequirement, SecurityScheme,
        };
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
        openapi.security = Some(vec![
            SecurityRequirement::default(),
            SecurityRequirement::new("bearer", Vec::<String>::new()),
        ]);
    }
}

/// What the server binary does for the API that the controller cannot: replace the
/// process (`POST /v1/upgrade`), re-read its configuration file (`POST /v1/reload`).
#[derive(Clone, Default)]
pub struct Hooks {
    pub upgrade: Option<UpgradeHook>,
    pub reload: Option<ReloadHook>,
}

/// The admin API over `controller`, plus the routes of the `hooks` the server supplies.
/// `/openapi.json` describes exactly the routes of the router returned.
pub fn router(controller: Arc<Controller>, hooks: Hooks) -> Router {
    let mut api = controller_routes().with_state(controller);
    if let Some(hook) = hooks.upgrade {
        api = api.merge(upgrade_routes().with_state(hook));
    }
    if let Some(hook) = hooks.reload {
        api = api.merge(reload_routes().with_state(hook));
    }
    let (router, doc) = api.merge(plain_routes()).split_for_parts();
    // The document is built from static attributes and types; serializing it cannot
    // fail, and if it did the endpoint would say so rather than the server refusing to
    // start.
    let json = doc.to_pretty_json().unwrap_or_else(|e| {
        serde_json::to_string(&ErrorBody::new(format!(
            "the OpenAPI document could not be serialized: {e}"
        )))
        .unwrap_or_default()
    });
    router
        .fallback(no_such_route)
        .layer(Extension(OpenApiJson(Arc::from(json))))
}

/// The routes served from the controller.
fn controller_routes() -> OpenApiRouter<Ctl> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(list_apps))
        .routes(routes!(app_status))
        .routes(routes!(deploy))
        .routes(routes!(promote))
        .routes(routes!(abort))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(rollback))
        .routes(routes!(history))
        .routes(routes!(delivery))
        .routes(routes!(app_events))
        .routes(routes!(logs))
        .routes(routes!(plan))
        .routes(routes!(events))
        .routes(routes!(cluster_proxies))
        .routes(routes!(metrics))
}

/// `POST /v1/upgrade`.
fn upgrade_routes() -> OpenApiRouter<UpgradeHook> {
    OpenApiRouter::new().routes(routes!(upgrade))
}

/// `POST /v1/reload`.
fn reload_routes() -> OpenApiRouter<ReloadHook> {
    OpenApiRouter::new().routes(routes!(reload))
}

/// Routes that need no state.
fn plain_routes() -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(openapi))
        .routes(routes!(healthz))
}

/// What `POST /v1/upgrade` asks of the server binary: start the new process, hand it
/// the listeners and wait for its verdict. The server supplies it (see [`router`]); the
/// API only carries the request and the answer.
pub type UpgradeHook = Arc<
    dyn Fn(
            UpgradeRequest,
        ) -> futures_util::future::BoxFuture<'static, Result<UpgradeDone, UpgradeFailed>>
        + Send
        + Sync,
>;

/// A handover that did not happen: the running process keeps serving.
#[derive(Debug, Clone)]
pub struct UpgradeFailed {
    /// 409 (another upgrade is running), 400 (bad request) or 500 (the new process
    /// failed).
    pub status: u16,
    pub error: String,
    /// The last lines the new process wrote to stderr.
    pub stderr: Vec<String>,
}

/// Replace the running baton with the binary at its path, handing over every listener.
#[utoipa::path(
    post,
    path = "/v1/upgrade",
    request_body(content = UpgradeRequest, description = "optional; an empty body takes the defaults"),
    responses(
        (status = 200, description = "The new process is serving; this one drains and exits", body = UpgradeDone),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 409, description = "Another upgrade is running", body = ErrorBody),
        (status = 500, description = "The new process failed; this one keeps serving. `stderr` holds its last lines", body = ErrorBody),
    )
)]
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
            let body = ErrorBody {
                error: failed.error,
                stderr: Some(failed.stderr),
            };
            (code, Json(body)).into_response()
        }
    }
}

/// What `POST /v1/reload` asks of the server: re-read the file it was started with,
/// validate it, and apply the difference (or only compute it, for a dry run).
pub type ReloadHook = Arc<
    dyn Fn(
            ReloadRequest,
        ) -> futures_util::future::BoxFuture<'static, Result<ReloadReport, ReloadFailed>>
        + Send
        + Sync,
>;

/// A reload that changed nothing.
#[derive(Debug, Clone)]
pub struct ReloadFailed {
    /// 422 (the file is not a valid configuration: `error` has one `file:line:col:
    /// message` line per problem, as `baton validate`), 409 (refused now: a rollout in
    /// progress, a runtime change with instances running, a reload or upgrade running),
    /// 500 (a new listener cannot be bound), 503 (handing over to a new process).
    pub status: u16,
    pub error: String,
}

/// Re-read the configuration file the server was started with and apply the difference
/// without dropping a request (or, with `dry_run`, only return the difference).
#[utoipa::path(
    post,
    path = "/v1/reload",
    request_body(content = ReloadRequest, description = "optional; an empty body applies"),
    responses(
        (status = 200, description = "The difference and what was applied", body = ReloadReport),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 409, description = "Refused now (a rollout in progress, a runtime change with instances running, another reload); nothing changed", body = ErrorBody),
        (status = 422, description = "The file is not a valid configuration (one `file:line:col: message` line per problem); nothing changed", body = ErrorBody),
        (status = 500, description = "A new listener could not be bound; nothing changed", body = ErrorBody),
        (status = 503, description = "Handing over to a new process", body = ErrorBody),
    )
)]
async fn reload(State(hook): State<ReloadHook>, body: axum::body::Bytes) -> Response {
    let req = if body.iter().all(u8::is_ascii_whitespace) {
        ReloadRequest::default()
    } else {
        match serde_json::from_slice::<ReloadRequest>(&body) {
            Ok(r) => r,
            Err(e) => return bad(format!("invalid reload request: {e}")).into_response(),
        }
    };
    match hook(req).await {
        Ok(report) => Json(report).into_response(),
        Err(failed) => {
            let code =
                StatusCode::from_u16(failed.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (code, Json(ErrorBody::new(failed.error))).into_response()
        }
    }
}

/// Controller errors become an [`ErrorBody`] with a fitting status.
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
        (code, Json(ErrorBody::new(self.0.to_string()))).into_response()
    }
}

fn bad(msg: String) -> ApiError {
    ApiError(ControlError::BadRequest(msg))
}

/// A query string that does not decode is a 400 with an [`ErrorBody`] too.
fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| bad(format!("invalid query string: {}", e.body_text())))
}

async fn no_such_route(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(ErrorBody::new(format!(
            "no such endpoint: {method} {}; GET /openapi.json lists them",
            uri.path()
        ))),
    )
        .into_response()
}

/// The status of every app.
#[utoipa::path(get, path = "/v1/apps", responses(
    (status = 200, description = "Every app's status", body = Vec<AppStatus>),
))]
async fn list_apps(State(c): State<Ctl>) -> Json<Vec<AppStatus>> {
    Json(c.statuses())
}

/// The proxies on other nodes that follow this controller (`[cluster]`): the table each
/// serves, when it last reported, what it counted.
#[utoipa::path(get, path = "/v1/cluster/proxies", responses(
    (status = 200, description = "Every proxy that reported since this controller started", body = Vec<ProxyView>),
))]
async fn cluster_proxies(State(c): State<Ctl>) -> Json<Vec<ProxyView>> {
    Json(c.fleet().view(std::time::Instant::now()))
}

/// One app's status (`baton status APP --json`).
#[utoipa::path(get, path = "/v1/apps/{app}",
    params(("app" = String, Path, description = "App name")),
    responses(
        (status = 200, description = "The app's status", body = AppStatus),
        (status = 404, description = "No such app", body = ErrorBody),
    )
)]
async fn app_status(
    State(c): State<Ctl>,
    Path(app): Path<String>,
) -> Result<Json<AppStatus>, ApiError> {
    Ok(Json(c.status(&app)?))
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

/// Start a deployment; follow it with `GET /v1/apps/{app}`.
#[utoipa::path(post, path = "/v1/apps/{app}/deployments",
    params(("app" = String, Path, description = "App name")),
    request_body = DeployRequest,
    responses(
        (status = 201, description = "Deployment started", body = DeployCreated),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody),
        (status = 409, description = "A deployment is in progress", body = ErrorBody),
        (status = 503, description = "Shutting down or handing over", body = ErrorBody),
    )
)]
async fn deploy(
    State(c): State<Ctl>,
    Path(app): Path<String>,
    body: Result<Json<DeployRequest>, axum::extract::rejection::JsonRejection>,
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
    let id = c
        .deploy(&app, &body.version, strategy, targets, body.irreversible)
        .await?;
    Ok((StatusCode::CREATED, Json(DeployCreated { id })).into_response())
}

/// Promote the running deployment to its next step (a canary), or end an A/B test
/// with the variant `to`.
#[utoipa::path(post, path = "/v1/apps/{app}/promote",
    params(("app" = String, Path, description = "App name")),
    request_body(content = PromoteRequest, description = "optional"),
    responses(
        (status = 200, description = "The app's status after the request", body = AppStatus),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody),
        (status = 409, description = "No deployment in progress", body = ErrorBody),
    )
)]
async fn promote(
    State(c): State<Ctl>,
    Path(app): Path<String>,
    body: Result<Option<Json<PromoteRequest>>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<AppStatus>, ApiError> {
    let body = body.map_err(|e| bad(format!("invalid promote request: {}", e.body_text())))?;
    let to = body.and_then(|Json(b)| b.to);
    op(c, app, Op::Promote { to }).await
}

/// Stop the running deployment and return to the stable version.
#[utoipa::path(post, path = "/v1/apps/{app}/abort",
    params(("app" = String, Path, description = "App name")),
    request_body(content = ForceRequest, description = "optional: `force` after an irreversible release step"),
    responses(
        (status = 200, description = "The app's status after the request", body = AppStatus),
        (status = 400, description = "Invalid request body", body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody),
        (status = 409, description = "No deployment in progress, or its release step was irreversible and `force` was not given", body = ErrorBody),
    )
)]
async fn abort(
    State(c): State<Ctl>,
    Path(app): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<AppStatus>, ApiError> {
    let force = force(&body, "abort")?;
    op(c, app, Op::Abort { force }).await
}

/// The optional `ForceRequest` body of `abort` / `rollback` (no body: not forced).
fn force(body: &[u8], what: &str) -> Result<bool, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(false);
    }
    serde_json::from_slice::<ForceRequest>(body)
        .map(|b| b.force)
        .map_err(|e| {
            bad(format!(
                "invalid {what} request: {e}; send {{\"force\": true}} or no body"
            ))
        })
}

/// Hold the running deployment at its current step.
#[utoipa::path(post, path = "/v1/apps/{app}/pause",
    params(("app" = String, Path, description = "App name")),
    responses(
        (status = 200, description = "The app's status after the request", body = AppStatus),
        (status = 404, description = "No such app", body = ErrorBody),
        (status = 409, description = "No deployment in progress", body = ErrorBody),
    )
)]
async fn pause(State(c): State<Ctl>, Path(app): Path<String>) -> Result<Json<AppStatus>, ApiError> {
    op(c, app, Op::Pause).await
}

/// Continue a paused deployment.
#[utoipa::path(post, path = "/v1/apps/{app}/resume",
    params(("app" = String, Path, description = "App name")),
    responses(
        (status = 200, description = "The app's status after the request", body = AppStatus),
        (status = 404, description = "No such app", body = ErrorBody),
        (status = 409, description = "No deployment in progress", body = ErrorBody),
    )
)]
async fn resume(
    State(c): State<Ctl>,
    Path(app): Path<String>,
) -> Result<Json<AppStatus>, ApiError> {
    op(c, app, Op::Resume).await
}

/// Switch back to the previous version.
#[utoipa::path(post, path = "/v1/apps/{app}/rollback",
    params(("app" = String, Path, description = "App name")),
    request_body(content = ForceRequest, description = "optional: `force` after an irreversible release step"),
    responses(
        (status = 200, description = "The app's status after the request", body = AppStatus),
        (status = 400, description = "Invalid request body", body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody),
        (status = 409, description = "Nothing to roll back to, or the last release step was irreversible and `force` was not given", body = ErrorBody),
    )
)]
async fn rollback(
    State(c): State<Ctl>,
    Path(app): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<AppStatus>, ApiError> {
    let force = force(&body, "rollback")?;
    op(c, app, Op::Rollback { force }).await
}

async fn op(c: Ctl, app: String, op: Op) -> Result<Json<AppStatus>, ApiError> {
    c.op(&app, op).await?;
    Ok(Json(c.status(&app)?))
}

/// Finished deployments, newest first.
#[utoipa::path(get, path = "/v1/apps/{app}/history",
    params(("app" = String, Path, description = "App name"), HistoryQuery),
    responses(
        (status = 200, description = "Finished deployments, newest first", body = Vec<HistoryEntry>),
        (status = 400, description = "Invalid query", body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody),
    )
)]
async fn history(
    State(c): State<Ctl>,
    Path(app): Path<String>,
    q: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<Vec<HistoryEntry>>, ApiError> {
    let q = query(q)?;
    Ok(Json(c.history(&app, q.limit.unwrap_or(50))?))
}

/// How often the app deploys, how often a change fails and how long restoring the
/// previous version takes, over the last 7 and 30 days (from its history: a switch back
/// or a redeploy of the version the previous deployment replaced counts as a restore).
#[utoipa::path(get, path = "/v1/apps/{app}/delivery",
    params(("app" = String, Path, description = "App name")),
    responses(
        (status = 200, description = "The 7- and 30-day figures", body = Delivery),
        (status = 404, description = "No such app", body = ErrorBody),
    )
)]
async fn delivery(
    State(c): State<Ctl>,
    Path(app): Path<String>,
) -> Result<Json<Delivery>, ApiError> {
    Ok(Json(c.delivery(&app)?))
}

/// The app's most recent stored events, oldest first (the live stream is `/v1/events`).
#[utoipa::path(get, path = "/v1/apps/{app}/events",
    params(("app" = String, Path, description = "App name"), AppEventsQuery),
    responses(
        (status = 200, description = "Recent events, oldest first", body = Vec<Event>),
        (status = 400, description = "Invalid query", body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody),
    )
)]
async fn app_events(
    State(c): State<Ctl>,
    Path(app): Path<String>,
    q: Result<Query<AppEventsQuery>, QueryRejection>,
) -> Result<Json<Vec<Event>>, ApiError> {
    let q = query(q)?;
    Ok(Json(c.app_events(&app, q.limit.unwrap_or(100).min(1000))?))
}

/// The recent output of each instance.
#[utoipa::path(get, path = "/v1/apps/{app}/logs",
    params(("app" = String, Path, description = "App name"), LogsQuery),
    responses(
        (status = 200, description = "Each instance's last lines", body = Vec<InstanceLogs>),
        (status = 400, description = "Invalid query", body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody),
    )
)]
async fn logs(
    State(c): State<Ctl>,
    Path(app): Path<String>,
    q: Result<Query<LogsQuery>, QueryRejection>,
) -> Result<Json<Vec<InstanceLogs>>, ApiError> {
    let q = query(q)?;
    let out = c
        .logs(&app, q.version.as_deref(), q.lines.unwrap_or(100))
        .await?;
    Ok(Json(
        out.into_iter()
            .map(|(instance, version, lines)| InstanceLogs {
                instance,
                version,
                lines,
            })
            .collect(),
    ))
}

/// What a deployment would do, without doing it.
#[utoipa::path(get, path = "/v1/apps/{app}/plan",
    params(("app" = String, Path, description = "App name"), PlanQuery),
    responses(
        (status = 200, description = "The plan", body = PlanReport),
        (status = 400, description = "Invalid query", body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody),
    )
)]
async fn plan(
    State(c): State<Ctl>,
    Path(app): Path<String>,
    q: Result<Query<PlanQuery>, QueryRejection>,
) -> Result<Json<PlanReport>, ApiError> {
    let q = query(q)?;
    let strategy = parse_strategy(q.strategy.as_deref())?;
    Ok(Json(c.plan(&app, &q.version, strategy)?))
}

/// Deployment events as Server-Sent Events: the event name is the event's `kind`, its
/// data an `Event` as JSON.
#[utoipa::path(get, path = "/v1/events",
    params(EventsQuery),
    responses(
        (status = 200, description = "A stream of events, each an `Event` as JSON", content_type = "text/event-stream", body = Event),
        (status = 400, description = "Invalid query", body = ErrorBody),
    )
)]
async fn events(
    State(c): State<Ctl>,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let q = query(q)?;
    let stream = BroadcastStream::new(c.subscribe()).filter_map(move |e| {
        let e = e.ok()?;
        if q.app.as_deref().is_some_and(|a| a != e.app) {
            return None;
        }
        let data = serde_json::to_string(&e).ok()?;
        Some(Ok(SseEvent::default().event(e.kind.clone()).data(data)))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Per-app, per-version request metrics in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", responses(
    (status = 200, description = "Prometheus text exposition format 0.0.4", content_type = "text/plain", body = String),
))]
async fn metrics(State(c): State<Ctl>) -> impl IntoResponse {
    let mut out = String::new();
    c.metrics().render_prometheus(&mut out);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// The served OpenAPI document, shared by the router's handlers.
#[derive(Clone)]
struct OpenApiJson(Arc<str>);

/// This document.
#[utoipa::path(get, path = "/openapi.json", responses(
    (status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json", body = Object),
))]
async fn openapi(Extension(doc): Extension<OpenApiJson>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.0.to_string(),
    )
}

/// Liveness: answers while the admin API is up.
#[utoipa::path(get, path = "/healthz", responses(
    (status = 200, description = "`ok`", content_type = "text/plain", body = String),
))]
async fn healthz() -> &'static str {
    "ok\n"
}

/// Fuzzing entry point, not an API: decode a request body the way the endpoint does
/// (`endpoint` 0: deploy, else promote) and run the checks made before anything is
/// handed to the controller. `Err` is the message the client would get.
#[doc(hidden)]
pub fn fuzz_body(endpoint: u8, body: &[u8]) -> Result<(), String> {
    let msg = |e: ApiError| e.0.to_string();
    if endpoint == 0 {
        let Json(body) = Json::<DeployRequest>::from_bytes(body)
            .map_err(|e| format!("invalid deploy request: {}", e.body_text()))?;
        parse_strategy(body.strategy.as_deref()).map_err(msg)?;
        for t in &body.targets {
            t.parse::<std::net::SocketAddr>()
                .map_err(|e| format!("invalid target {t:?}: {e}"))?;
        }
        baton_core::validate_version(&body.version).map_err(|e| e.to_string())
    } else {
        let Json(body) = Json::<PromoteRequest>::from_bytes(body)
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
    use super::*;
    use std::collections::BTreeSet;

    /// The paths an axum router routes, read from its `Debug` form (axum has no other
    /// way to list them): its path router's, not the fallback router's.
    fn routed_paths(router_debug: &str) -> BTreeSet<String> {
        let (routes, fallback) = router_debug
            .split_once("fallback_router")
            .expect("a router's Debug form names its fallback router");
        assert!(routes.contains("path_router"), "{router_debug}");
        assert!(!fallback.is_empty());
        routes
            .split('"')
            .skip(1)
            .step_by(2)
            .filter(|s| s.starts_with('/'))
            .map(str::to_string)
            .collect()
    }

    fn documented_paths(doc: &utoipa::openapi::OpenApi) -> BTreeSet<String> {
        doc.paths.paths.keys().cloned().collect()
    }

    /// Each group of routes routes exactly the paths its generated document lists (the
    /// methods of each path are checked against the served document end to end, in
    /// `crates/baton/tests/operations.rs`).
    #[test]
    fn every_routed_path_is_documented() {
        let mut all = BTreeSet::new();
        for (router, doc) in [
            {
                let (r, d) = controller_routes().split_for_parts();
                (format!("{r:?}"), d)
            },
            {
                let (r, d) = upgrade_routes().split_for_parts();
                (format!("{r:?}"), d)
            },
            {
                let (r, d) = reload_routes().split_for_parts();
                (format!("{r:?}"), d)
            },
            {
                let (r, d) = plain_routes().split_for_parts();
                (format!("{r:?}"), d)
            },
        ] {
            let routed = routed_paths(&router);
            assert!(!routed.is_empty(), "no paths found in {router}");
            assert_eq!(routed, documented_paths(&doc));
            all.extend(routed);
        }
        for p in [
            "/v1/apps/{app}",
            "/v1/upgrade",
            "/v1/reload",
            "/openapi.json",
            "/healthz",
        ] {
            assert!(all.contains(p), "{p} not found in {all:?}");
        }
    }

    /// A route added behind the macros' back is noticed: the check above is not vacuous.
    #[test]
    fn an_undocumented_route_is_noticed() {
        let (r, d) = plain_routes()
            .route("/v1/secret", axum::routing::get(|| async { "" }))
            .split_for_parts();
        let routed = routed_paths(&format!("{r:?}"));
        assert!(routed.contains("/v1/secret"));
        assert_ne!(routed, documented_paths(&d));
    }
}
