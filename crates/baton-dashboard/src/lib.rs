//! The web dashboard, served by baton itself: HTML, CSS and vanilla JavaScript embedded
//! in the binary (`assets/`), no external request of any kind (the pages' Content
//! Security Policy allows their own origin only). The pages read and act through the
//! admin API (`/v1/...`, the calls the CLI makes) and follow a live feed (`/ui/feed`,
//! Server-Sent Events from [`feed::Feed`]).
//!
//! Routes (all under `/ui`): `/ui/` the overview, `/ui/apps/{app}` one app,
//! `/ui/login` (public; `POST` with the admin token sets the session cookie),
//! `/ui/logout`, `/ui/feed`, `/ui/assets/{file}` (public). Credentials are checked in
//! front of the router by [`baton_api::auth::guard`]; this crate only mints and ends
//! sessions.

pub mod feed;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use baton_api::auth::{Access, Session, SESSION_COOKIE};
use feed::Feed;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// What the dashboard's handlers share.
#[derive(Clone)]
struct Ui {
    access: Arc<Access>,
    feed: Arc<Feed>,
}

/// The dashboard's routes; serve them with the admin API's routes, behind
/// [`baton_api::guarded`] with the same `access`.
pub fn router(access: Arc<Access>, feed: Arc<Feed>) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(shell))
        .route("/ui/apps/{app}", get(app_shell))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/feed", get(feed_stream))
        .route("/ui/assets/{file}", get(asset))
        .with_state(Ui { access, feed })
}

/// The embedded files: name, content type, contents.
const ASSETS: [(&str, &str, &str); 4] = [
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/app.js"),
    ),
    (
        "login.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/login.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../assets/style.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../assets/favicon.svg"),
    ),
];

/// Headers every page carries: nothing but this origin, never framed.
fn page_headers() -> [(header::HeaderName, HeaderValue); 5] {
    [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                 connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ]
}

/// Escapes text for HTML content and attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page every dashboard view starts from; `app.js` draws the view the path names.
fn render_shell(session: &Session) -> Response {
    let html = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="baton-csrf" content="{csrf}">
<meta name="baton-read-only" content="{read_only}">
<title>baton</title>
<link rel="icon" href="/ui/assets/favicon.svg">
<link rel="stylesheet" href="/ui/assets/style.css">
<script src="/ui/assets/app.js" defer></script>
</head>
<body>
<header class="top">
  <a class="brand" href="/ui/">baton</a>
  <nav id="crumbs" aria-label="Breadcrumb"></nav>
  <span id="live" class="live" role="status" aria-live="polite">connecting…</span>
  <form method="post" action="/ui/logout" class="logout"><button type="submit">Log out</button></form>
</header>
<main id="main" tabindex="-1"><p class="muted">Loading…</p></main>
<dialog id="confirm" aria-labelledby="confirm-title">
  <form method="dialog">
    <h2 id="confirm-title">Confirm</h2>
    <p id="confirm-effect"></p>
    <div id="confirm-extra"></div>
    <menu>
      <button value="cancel" id="confirm-cancel">Cancel</button>
      <button value="ok" id="confirm-ok" class="danger">Confirm</button>
    </menu>
  </form>
</dialog>
<div id="toast" role="alert" aria-live="assertive"></div>
</body>
</html>
"#,
        csrf = escape(&session.csrf),
        read_only = session.read_only,
    );
    (page_headers(), Html(html)).into_response()
}

/// The guard put the session there; a bearer-token caller (a script) has none and gets
/// the login page's address instead of a page it could not act from.
async fn shell(session: Option<Extension<Session>>) -> Response {
    match session {
        Some(Extension(s)) => render_shell(&s),
        None => Redirect::to("/ui/login").into_response(),
    }
}

async fn app_shell(session: Option<Extension<Session>>, Path(_app): Path<String>) -> Response {
    shell(session).await
}

fn login_html(error: Option<&str>) -> String {
    let error = error
        .map(|e| format!(r#"<p class="error" role="alert">{}</p>"#, escape(e)))
        .unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>baton — log in</title>
<link rel="icon" href="/ui/assets/favicon.svg">
<link rel="stylesheet" href="/ui/assets/style.css">
<script src="/ui/assets/login.js" defer></script>
</head>
<body class="login">
<main>
<h1>baton</h1>
<form method="post" action="/ui/login" id="login">
  <label for="token">Admin token</label>
  <p class="muted">The contents of the file <code>[admin] token_file</code> names.</p>
  <input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
  {error}
  <button type="submit">Log in</button>
</form>
</main>
</body>
</html>
"#
    )
}

async fn login_page() -> Response {
    (page_headers(), Html(login_html(None))).into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

/// A wrong token waits this long before the answer, so guessing is slow.
const WRONG_TOKEN_DELAY: Duration = Duration::from_secs(1);

async fn login(
    State(ui): State<Ui>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let given = form.map(|Form(f)| f.token).unwrap_or_default();
    if !ui.access.is_token(given.trim()) {
        tracing::warn!(
            from = ?headers.get(header::USER_AGENT),
            "dashboard login with a wrong token"
        );
        tokio::time::sleep(WRONG_TOKEN_DELAY).await;
        return (
            StatusCode::UNAUTHORIZED,
            page_headers(),
            Html(login_html(Some(
                "That is not the admin token. Copy it from the token file again.",
            ))),
        )
            .into_response();
    }
    let (cookie, _) = match ui.access.new_session() {
        Ok(s) => s,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html(login_html(Some(&e))),
            )
                .into_response()
        }
    };
    let max_age = ui.access.session_lifetime().as_secs();
    let set =
        format!("{SESSION_COOKIE}={cookie}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}");
    let mut r = Redirect::to("/ui/").into_response();
    if let Ok(v) = HeaderValue::from_str(&set) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn logout(State(ui): State<Ui>, headers: HeaderMap) -> Response {
    if let Some(c) = baton_api::auth::cookie(&headers, SESSION_COOKIE) {
        ui.access.revoke(c);
    }
    let mut r = Redirect::to("/ui/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("baton_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    r
}

#[derive(Deserialize)]
struct FeedQuery {
    app: Option<String>,
}

async fn feed_stream(State(ui): State<Ui>, Query(q): Query<FeedQuery>) -> impl IntoResponse {
    Sse::new(ui.feed.stream(q.app)).keep_alive(KeepAlive::default())
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, kind, body)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
