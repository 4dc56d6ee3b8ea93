//! The controller's side of `[cluster]`: the listener where proxies on other nodes
//! (`baton proxy`) follow the route table and send their reports. Its own TCP port and its
//! own secret (`[cluster] token_file`), not the admin API: a proxy's token reads routes
//! and reports counts, and can deploy or stop nothing.
//!
//! - `GET /v1/cluster/routes?epoch=E&generation=G` answers the table this controller's
//!   proxy serves, at once when it is not the one at `E`/`G`, otherwise when it next
//!   changes or after [`LONG_POLL`] (the same table again: the proxy asks anew).
//! - `POST /v1/cluster/report` takes a [`ProxyReport`] and answers the current position.
//!
//! Both sides are the same baton release; the bodies are JSON.

use crate::auth::constant_time_eq;
use crate::types::ErrorBody;
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use baton_controller::fleet::{Position, ProxyReport, RoutesFrame};
use baton_controller::Controller;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a routes request waits for a change before answering the same table.
pub const LONG_POLL: Duration = Duration::from_secs(20);

/// Largest report accepted (a proxy with thousands of versions stays far below).
const MAX_REPORT: usize = 8 << 20;

#[derive(Clone)]
struct Cluster {
    controller: Arc<Controller>,
    token: Arc<str>,
}

/// The routes of the cluster listener, behind the token check.
pub fn cluster_router(controller: Arc<Controller>, token: &str) -> Router {
    let state = Cluster {
        controller,
        token: Arc::from(token),
    };
    Router::new()
        .route("/v1/cluster/routes", get(routes))
        .route("/v1/cluster/report", post(report))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_REPORT))
        .layer(middleware::from_fn_with_state(state.clone(), token_guard))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown`.
pub async fn serve_cluster(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn token_guard(State(c): State<Cluster>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(t) if constant_time_eq(t.as_bytes(), c.token.as_bytes()) => next.run(req).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            Json(ErrorBody::new(
                "the cluster listener needs `Authorization: Bearer <token>` with the token in \
                 [cluster] token_file (the same file on every node)",
            )),
        )
            .into_response(),
    }
}

/// The query of a routes request: the position of the table the proxy serves.
pub type Since = Position;

fn position(c: &Cluster) -> Position {
    Position {
        epoch: c.controller.fleet().epoch(),
        generation: c.controller.proxy().generation(),
    }
}

async fn routes(State(c): State<Cluster>, Query(since): Query<Since>) -> Json<RoutesFrame> {
    let proxy = c.controller.proxy().clone();
    let seen = since;
    if position(&c) == seen {
        let _ = tokio::time::timeout(LONG_POLL, proxy.published_since(seen.generation)).await;
    }
    // The generation first: a table published in between is newer than it says, and the
    // proxy then gets it again on its next request.
    let position = position(&c);
    Json(RoutesFrame {
        position,
        table: (*proxy.current_spec()).clone(),
        abandoned: proxy.abandoned(),
    })
}

async fn report(State(c): State<Cluster>, Json(r): Json<ProxyReport>) -> Response {
    if r.name.is_empty() || r.name.len() > 64 {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(ErrorBody::new(
                "a proxy's name is 1 to 64 characters ([cluster] name)",
            )),
        )
            .into_response();
    }
    c.controller.fleet().report(r, Instant::now());
    Json(position(&c)).into_response()
}
