//! Who may call the admin API over TCP: a client with the bearer token
//! (`Authorization: Bearer <token>`), or a browser that logged in to the dashboard with
//! that token and holds its session cookie.
//!
//! A session is stateless, so it survives `baton upgrade` and restarts: the cookie is
//! `EXPIRES.NONCE.MAC` with `MAC = HMAC-SHA256(key, EXPIRES.NONCE)`, the key derived from
//! the token (a new token ends every session). The cookie is `HttpOnly` and
//! `SameSite=Strict`; every request that changes something must also carry the session's
//! CSRF token (`X-Baton-CSRF`, an HMAC of the cookie the page received in its HTML), and
//! an `Origin` header, when the browser sends one, must name the host asked. Logging out
//! revokes the cookie in this process until it would have expired.

use axum::extract::Request;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ring::hmac;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "baton_session";
/// The header that carries the CSRF token on requests that change something.
pub const CSRF_HEADER: &str = "x-baton-csrf";
/// Paths served without credentials: the login page and the static files it needs
/// (nothing in them depends on the apps).
const PUBLIC_PREFIXES: [&str; 2] = ["/ui/login", "/ui/assets/"];

/// A logged-in browser, as the guard found it (a request extension).
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// The token the page must send back in `X-Baton-CSRF` to act.
    pub csrf: String,
    /// Unix seconds.
    pub expires: u64,
    /// Sessions may look but not act (`[dashboard] read_only`).
    pub read_only: bool,
}

/// The credentials of a TCP admin listener.
pub struct Access {
    token: String,
    key: hmac::Key,
    lifetime: Duration,
    read_only_sessions: bool,
    /// Logged-out cookies until they would have expired (cookie → expiry).
    revoked: Mutex<HashMap<String, u64>>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Access {
    /// Bearer `token`; browser sessions last `lifetime` and, with `read_only_sessions`,
    /// can only read.
    pub fn new(token: String, lifetime: Duration, read_only_sessions: bool) -> Access {
        // The key is the token's HMAC under a fixed label, so a cookie's MAC never
        // equals anything else made from the token.
        let label = hmac::Key::new(hmac::HMAC_SHA256, b"baton dashboard session key v1");
        let derived = hmac::sign(&label, token.as_bytes());
        Access {
            key: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
            token,
            lifetime,
            read_only_sessions,
            revoked: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `given` is the token (compared in constant time).
    pub fn is_token(&self, given: &str) -> bool {
        constant_time_eq(given.as_bytes(), self.token.as_bytes())
    }

    pub fn session_lifetime(&self) -> Duration {
        self.lifetime
    }

    /// A new session: the cookie value to set, and the session it stands for.
    pub fn new_session(&self) -> Result<(String, Session), String> {
        let mut nonce = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
            .map_err(|_| "the system's random number generator failed".to_string())?;
        let expires = unix_now() + self.lifetime.as_secs().max(1);
        let body = format!("{expires}.{}", hex(&nonce));
        let mac = hmac::sign(&self.key, body.as_bytes());
        let cookie = format!("{body}.{}", hex(mac.as_ref()));
        let session = self.session_of(&cookie, expires);
        Ok((cookie, session))
    }

    fn session_of(&self, cookie: &str, expires: u64) -> Session {
        let csrf = hmac::sign(&self.key, format!("csrf:{cookie}").as_bytes());
        Session {
            csrf: hex(&csrf.as_ref()[..16]),
            expires,
            read_only: self.read_only_sessions,
        }
    }

    /// The session `cookie` stands for, if it is one of ours, unexpired and not logged
    /// out.
    pub fn session(&self, cookie: &str) -> Option<Session> {
        let (body, mac) = cookie.rsplit_once('.')?;
        let (expires, _nonce) = body.split_once('.')?;
        let expires: u64 = expires.parse().ok()?;
        let mac = decode_hex(mac)?;
        hmac::verify(&self.key, body.as_bytes(), &mac).ok()?;
        let now = unix_now();
        if expires <= now {
            return None;
        }
        if self.revoked.lock().ok()?.contains_key(cookie) {
            return None;
        }
        Some(self.session_of(cookie, expires))
    }

    /// Logs `cookie` out (until it would have expired anyway).
    pub fn revoke(&self, cookie: &str) {
        let Some(session) = self.session(cookie) else {
            return;
        };
        if let Ok(mut revoked) = self.revoked.lock() {
            let now = unix_now();
            revoked.retain(|_, exp| *exp > now);
            revoked.insert(cookie.to_string(), session.expires);
        }
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Compares without an early exit, so timing does not reveal how much of a guess matched.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

fn refuse(status: StatusCode, message: &str) -> Response {
    let mut r = (
        status,
        axum::Json(crate::types::ErrorBody::new(message.to_string())),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    r
}

/// Whether the request's `Origin`, if any, is the host it was sent to.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin = origin.to_str().ok();
    match (origin, host) {
        (Some(o), Some(h)) => o
            .strip_prefix("http://")
            .or_else(|| o.strip_prefix("https://"))
            .is_some_and(|rest| rest == h),
        _ => false,
    }
}

/// The guard in front of every route of a TCP admin (or dashboard) listener.
pub async fn guard(access: Arc<Access>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if PUBLIC_PREFIXES.iter().any(|p| path.starts_with(p)) {
        return next.run(req).await;
    }
    let headers = req.headers();
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        let given = auth
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if access.is_token(given) {
            return next.run(req).await;
        }
        return refuse(
            StatusCode::UNAUTHORIZED,
            "wrong bearer token: send `Authorization: Bearer <contents of token_file>`",
        );
    }
    let session = cookie(headers, SESSION_COOKIE).and_then(|c| access.session(c));
    let Some(session) = session else {
        if req.method() == Method::GET && path.starts_with("/ui") {
            return axum::response::Redirect::to("/ui/login").into_response();
        }
        return refuse(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token: send `Authorization: Bearer <contents of token_file>`, or log in to the dashboard at /ui/login",
        );
    };
    let safe = matches!(*req.method(), Method::GET | Method::HEAD);
    if !safe && path != "/ui/logout" {
        if session.read_only {
            return refuse(
                StatusCode::FORBIDDEN,
                "this dashboard is read-only ([dashboard] read_only = true): use the CLI with the token to act",
            );
        }
        let csrf = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !constant_time_eq(csrf.as_bytes(), session.csrf.as_bytes()) {
            return refuse(
                StatusCode::FORBIDDEN,
                "missing or wrong X-Baton-CSRF header: actions must come from the dashboard page; reload it",
            );
        }
        if !same_origin(headers) {
            return refuse(
                StatusCode::FORBIDDEN,
                "the request's Origin is not this dashboard: actions must come from its own page",
            );
        }
    }
    req.extensions_mut().insert(session);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access() -> Access {
        Access::new("s3cret".into(), Duration::from_secs(3600), false)
    }

    #[test]
    fn compares_exactly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret1"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn a_session_is_accepted_until_revoked_and_not_by_another_token() {
        let a = access();
        let (cookie, s) = a.new_session().unwrap();
        assert_eq!(a.session(&cookie), Some(s.clone()));
        assert_eq!(s.csrf.len(), 32);
        let other = Access::new("other".into(), Duration::from_secs(3600), false);
        assert_eq!(
            other.session(&cookie),
            None,
            "a new token ends every session"
        );
        a.revoke(&cookie);
        assert_eq!(a.session(&cookie), None);
        let (second, s2) = a.new_session().unwrap();
        assert_ne!(second, cookie);
        assert_ne!(s2.csrf, s.csrf, "each session has its own CSRF token");
    }

    #[test]
    fn a_forged_or_stretched_cookie_is_refused() {
        let a = access();
        let (cookie, _) = a.new_session().unwrap();
        let (exp, rest) = cookie.split_once('.').unwrap();
        let later: u64 = exp.parse::<u64>().unwrap() + 1_000_000;
        assert_eq!(a.session(&format!("{later}.{rest}")), None);
        let mut flipped = cookie.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        assert_eq!(a.session(&String::from_utf8(flipped).unwrap()), None);
        for junk in ["", ".", "..", "1.2.3", "x.y.zz", "99999999999.00.0"] {
            assert_eq!(a.session(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn an_expired_session_is_refused() {
        let a = Access::new("t".into(), Duration::from_secs(3600), false);
        let body = format!("{}.00", unix_now() - 1);
        let mac = hmac::sign(&a.key, body.as_bytes());
        let cookie = format!("{body}.{}", hex(mac.as_ref()));
        assert_eq!(a.session(&cookie), None);
        let body = format!("{}.00", unix_now() + 60);
        let mac = hmac::sign(&a.key, body.as_bytes());
        assert!(a
            .session(&format!("{body}.{}", hex(mac.as_ref())))
            .is_some());
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            "a=1; baton_session=xyz; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn origin_must_be_the_host_asked() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:9300".parse().unwrap());
        assert!(
            same_origin(&h),
            "no Origin: not a cross-site browser request"
        );
        h.insert(header::ORIGIN, "http://127.0.0.1:9300".parse().unwrap());
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(!same_origin(&h));
    }
}
