//! Tunables of the data plane: timeouts, limits, trusted peers, passive ejection and
//! response compression.

use crate::compress::Compression;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// Default of [`ProxyConfig::request_buffering`]: 1 MiB (docs/SECURITY.md says why).
pub const DEFAULT_REQUEST_BUFFERING: u64 = 1 << 20;

/// How the proxy treats clients and upstreams. `Default` gives production values.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyConfig {
    /// TCP connect to a backend. A failed connect is retried once on another backend.
    pub connect_timeout: Duration,
    /// From the request being handed to the upstream connection to the response head.
    /// Beyond it the client gets 504.
    pub upstream_header_timeout: Duration,
    /// An HTTP/1.1 request head must arrive completely within this time of its first
    /// byte (slowloris guard); otherwise the client gets 408 and the connection is
    /// closed. An idle keep-alive connection is not affected.
    pub client_header_timeout: Duration,
    /// A client connection with no request in progress that sends nothing for this
    /// long is closed gracefully (HTTP/2: GOAWAY).
    pub client_idle_timeout: Duration,
    /// Pooled idle upstream connections older than this are discarded at checkout.
    pub upstream_idle_timeout: Duration,
    /// Largest request head accepted; beyond it the client gets 431. hyper's buffer
    /// cannot be smaller than 8 KiB, so smaller values act as 8 KiB.
    pub max_header_bytes: usize,
    /// Largest request body accepted; beyond it the client gets 413. A larger
    /// `Content-Length` is refused before any backend is contacted; a body without one
    /// (chunked, HTTP/2) that grows past the limit aborts its upstream request, so the
    /// backend never gets it complete. `None` = no limit (as HAProxy and kamal-proxy).
    pub max_request_body: Option<u64>,
    /// A request body is read ahead up to this many bytes before a backend is chosen,
    /// so a slow client holds no backend connection (and no in-flight slot) while it
    /// sends them; a longer body streams once this much is in hand. Memory per request
    /// grows with the bytes received, up to this. `None` = stream every body at once.
    pub request_buffering: Option<u64>,
    /// The longest a client may pause while sending a request body (measured between
    /// reads, as nginx's `client_body_timeout`). A stalled body gets 408 and, if it
    /// was already streaming upstream, the upstream request is aborted, so the backend
    /// never gets it complete.
    pub body_read_timeout: Duration,
    /// Idle upstream connections kept per backend, by each worker (`cores.rs`), at
    /// most: as many as the backend's peak concurrency left idle, each closed once it
    /// has been idle for `upstream_idle_timeout` (`pool::IdlePool`). High enough for
    /// HTTP/2 clients' many streams, so connections are not opened and closed under
    /// a steady load.
    pub max_idle_per_backend: usize,
    /// Peers whose `X-Forwarded-For` is extended; from anyone else it is replaced.
    pub trusted_proxies: Vec<IpAddr>,
    /// Consecutive 5xx / connect failures before a backend is skipped; 0 disables.
    pub eject_after: u32,
    /// How long an ejected backend is skipped.
    pub eject_time: Duration,
    /// Response compression (`[proxy.compression]`); `None` = off.
    pub compression: Option<Arc<Compression>>,
    /// Requests on HTTP listeners get `308 Permanent Redirect` to `https://` on this
    /// port (443 leaves the port out), except ACME HTTP-01 challenges. `None`: served.
    pub https_redirect: Option<u16>,
    /// `Strict-Transport-Security` added to every response over TLS that has none.
    pub hsts: Option<http::HeaderValue>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            connect_timeout: Duration::from_secs(3),
            upstream_header_timeout: Duration::from_secs(60),
            client_header_timeout: Duration::from_secs(10),
            client_idle_timeout: Duration::from_secs(60),
            upstream_idle_timeout: Duration::from_secs(15),
            max_header_bytes: 64 * 1024,
            max_request_body: None,
            request_buffering: Some(DEFAULT_REQUEST_BUFFERING),
            body_read_timeout: Duration::from_secs(60),
            max_idle_per_backend: 1024,
            trusted_proxies: Vec::new(),
            eject_after: 5,
            eject_time: Duration::from_secs(30),
            compression: None,
            https_redirect: None,
            hsts: None,
        }
    }
}

impl ProxyConfig {
    /// Whether `X-Forwarded-For` from this peer is kept and appended to.
    pub(crate) fn trusts(&self, peer: IpAddr) -> bool {
        self.trusted_proxies.contains(&peer)
    }
}
