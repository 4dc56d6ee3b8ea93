//! Errors: `RouteError` for a route table that cannot be published, `ProxyError` for a
//! request that cannot be served, and the one function that turns the latter into a
//! status code and a short plain-text body.

use crate::body::ResponseBody;
use http::{header, HeaderValue, Response, StatusCode};
use std::sync::Arc;

/// Why a route table was rejected. The previous snapshot keeps serving.
#[derive(thiserror::Error, Debug)]
pub enum RouteError {
    #[error("app {app}: every pool has weight 0 and there is no rule and no hold, so no request could reach it; give a version a weight > 0, add a match rule, or enable hold")]
    NoTraffic { app: String },
    #[error("app {app}: {used_by} names version {version:?}, which has no pool; add a pool for it or fix the version name (pools: {known})")]
    UnknownVersion {
        app: String,
        version: String,
        used_by: String,
        known: String,
    },
    #[error("app {app}: version {version:?} has two pools; merge their backends into one pool")]
    DuplicateVersion { app: String, version: String },
    #[error("app {app}: rule {rule} has an invalid regex {pattern:?}: {source}; fix the pattern (regex crate syntax)")]
    InvalidRegex {
        app: String,
        rule: usize,
        pattern: String,
        #[source]
        source: regex::Error,
    },
    #[error("app {app}: {what} {name:?} is not a valid HTTP header or cookie name; use letters, digits and -")]
    BadName {
        app: String,
        what: &'static str,
        name: String,
    },
    #[error("app {app}: {source}")]
    InvalidName {
        app: String,
        #[source]
        source: baton_core::NameError,
    },
    #[error("backend {id:?} appears twice (in app {first} and app {second}); every instance needs its own id")]
    DuplicateBackend {
        id: String,
        first: String,
        second: String,
    },
    #[error("route {host}{path} points at app {app:?}, which is not in the table; add the app or fix the route")]
    UnknownApp {
        host: String,
        path: String,
        app: String,
    },
    #[error(
        "route host {host:?} is not valid: {reason}; write \"example.com\" or \"*.example.com\""
    )]
    BadHost { host: String, reason: &'static str },
    #[error("route path prefix {path:?} for app {app} must start with '/'")]
    BadPathPrefix { app: String, path: String },
    #[error("two routes for {host}{path} (apps {first} and {second}); keep one")]
    DuplicateRoute {
        host: String,
        path: String,
        first: String,
        second: String,
    },
}

/// Why the proxy answered a request itself instead of forwarding the backend's answer.
#[derive(Debug, Clone)]
pub(crate) enum ProxyError {
    NoRoute,
    BadRequest(&'static str),
    /// CONNECT: baton is a reverse proxy, not a forward proxy.
    MethodNotAllowed,
    NoVersion {
        app: Arc<str>,
    },
    NoBackend {
        app: Arc<str>,
    },
    HoldTimeout {
        app: Arc<str>,
    },
    HoldFull {
        app: Arc<str>,
    },
    Connect {
        app: Arc<str>,
        version: Arc<str>,
    },
    Upstream {
        app: Arc<str>,
        version: Arc<str>,
    },
    UpstreamTimeout {
        app: Arc<str>,
        version: Arc<str>,
    },
    /// The request body is (or declares itself) larger than `max_request_body`.
    BodyTooLarge {
        limit: u64,
    },
    /// The client stopped sending the request body for `body_read_timeout`.
    BodyTimeout {
        timeout: std::time::Duration,
    },
}

impl ProxyError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::NoVersion { .. }
            | ProxyError::NoBackend { .. }
            | ProxyError::HoldTimeout { .. }
            | ProxyError::HoldFull { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Connect { .. } | ProxyError::Upstream { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// The app and version the error is about, for the access log.
    pub(crate) fn app_version(&self) -> (Option<Arc<str>>, Option<Arc<str>>) {
        match self {
            ProxyError::NoVersion { app }
            | ProxyError::NoBackend { app }
            | ProxyError::HoldTimeout { app }
            | ProxyError::HoldFull { app } => (Some(app.clone()), None),
            ProxyError::Connect { app, version }
            | ProxyError::Upstream { app, version }
            | ProxyError::UpstreamTimeout { app, version } => {
                (Some(app.clone()), Some(version.clone()))
            }
            _ => (None, None),
        }
    }

    /// Machine-readable kind, sent as `X-Baton-Error`.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            ProxyError::NoRoute => "no_route",
            ProxyError::BadRequest(_) => "bad_request",
            ProxyError::MethodNotAllowed => "method_not_allowed",
            ProxyError::NoVersion { .. } => "no_version",
            ProxyError::NoBackend { .. } => "no_backend",
            ProxyError::HoldTimeout { .. } => "hold_timeout",
            ProxyError::HoldFull { .. } => "hold_full",
            ProxyError::Connect { .. } => "connect",
            ProxyError::Upstream { .. } => "upstream",
            ProxyError::UpstreamTimeout { .. } => "upstream_timeout",
            ProxyError::BodyTooLarge { .. } => "body_too_large",
            ProxyError::BodyTimeout { .. } => "body_timeout",
        }
    }

    fn message(&self) -> String {
        match self {
            ProxyError::NoRoute => "baton: no route for this host and path\n".into(),
            ProxyError::BadRequest(why) => format!("baton: bad request: {why}\n"),
            ProxyError::MethodNotAllowed => "baton: CONNECT is not supported\n".into(),
            ProxyError::NoVersion { app } => {
                format!("baton: no version of app {app} takes this traffic\n")
            }
            ProxyError::NoBackend { app } => format!("baton: no healthy instance of app {app}\n"),
            ProxyError::HoldTimeout { app } => {
                format!("baton: app {app} had no ready instance within the hold timeout\n")
            }
            ProxyError::HoldFull { app } => {
                format!("baton: app {app} has no ready instance and its hold queue is full\n")
            }
            ProxyError::Connect { app, version } => {
                format!("baton: cannot connect to app {app} version {version}\n")
            }
            ProxyError::Upstream { app, version } => {
                format!("baton: app {app} version {version} failed to answer\n")
            }
            ProxyError::UpstreamTimeout { app, version } => {
                format!("baton: app {app} version {version} did not answer in time\n")
            }
            ProxyError::BodyTooLarge { limit } => {
                format!("baton: the request body is larger than the {limit} bytes this server accepts\n")
            }
            ProxyError::BodyTimeout { timeout } => format!(
                "baton: the request body stalled: nothing arrived for {} ms\n",
                timeout.as_millis()
            ),
        }
    }

    /// Whether the client connection must be closed after the answer (request framing
    /// could not be trusted, or a body is left unread).
    fn closes_connection(&self) -> bool {
        matches!(
            self,
            ProxyError::BadRequest(_)
                | ProxyError::MethodNotAllowed
                | ProxyError::BodyTooLarge { .. }
                | ProxyError::BodyTimeout { .. }
        )
    }
}

/// The one place that turns a proxy error into the response the client sees.
pub(crate) fn error_response(err: &ProxyError) -> Response<ResponseBody> {
    let mut res = Response::new(ResponseBody::full(err.message().into()));
    *res.status_mut() = err.status();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert("x-baton-error", HeaderValue::from_static(err.kind()));
    if err.closes_connection() {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    res
}
