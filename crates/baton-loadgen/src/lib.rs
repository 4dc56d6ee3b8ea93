//! A load client for proving "no failed request": every request is counted with its
//! outcome and the version that served it (`X-Version`), latencies go to an HDR
//! histogram, and nothing is ever retried — a reset, a timeout or a 5xx is a failure,
//! full stop.
//!
//! Profiles: keep-alive back to back (or with idle gaps), a new connection per request,
//! HTTP/2, POSTs whose echoed body is checked byte for byte, slow multi-second requests,
//! WebSockets held open with periodic echoed messages, and a plain keep-alive client that
//! writes its requests straight to the socket without checking whether the server closed
//! the connection (as Python's `http.client` does). Several profiles run at once with
//! [`Load::start_mixed`].
//!
//! Every request also leaves a [`Sample`] (when it started, how long it took, whether it
//! failed), so a report can split latency "during a switch" from "at rest" with
//! [`Report::window_stats`].
//!
//! WebSocket accounting: the handshake and every echoed message count as one request
//! each. A session that ends with a close frame from the server (e.g. 1001 "going away"
//! when an app shuts down) while no message is unanswered is *not* a failure: the client
//! reconnects, and the close is counted in [`WsStats::server_closed`]. A failure is: a
//! handshake that is not `101`, a wrong or missing echo, a message still unanswered when
//! the session ends (however it ends), and a session that ends without a close frame
//! (TCP FIN or reset: what a browser reports as 1006 "abnormal closure").

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// How clients talk to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Profile {
    /// HTTP/1.1, one keep-alive connection per client, requests back to back (plus `gap`).
    KeepAlive,
    /// HTTP/1.1, a new connection for every request.
    NewConnection,
    /// HTTP/2 prior knowledge (h2c), one connection per client.
    Http2,
    /// HTTP/1.1 keep-alive POSTs of `body_bytes` unique bytes; the response body must be
    /// the same bytes (the sample app's `POST /echo`).
    Post,
    /// HTTP/1.1 keep-alive GETs that take seconds (the sample app's `/slow?ms=N`).
    Slow,
    /// WebSockets held open, one per client, a message every `gap`, each echo checked.
    WebSocket,
    /// HTTP/1.1 keep-alive written straight to the socket, the way Python's `http.client`
    /// (and many scripts and simple clients) behave: the next request goes out on the
    /// same connection as soon as the previous response is read (after `gap`, or a random
    /// pause up to `gap_max`), with no check whether the server has closed it meanwhile.
    /// Only `Connection: close` on a response makes it open a new connection. A request
    /// answered by an end of stream or a reset before any response byte is a failure:
    /// `closed without answer`. This is the client that sees a server closing a kept-alive
    /// connection while a request is on its way (hyper's client, the other profiles,
    /// notices the close first and opens a new connection).
    Plain,
}

impl Profile {
    /// Every profile, in report order.
    pub const ALL: [Profile; 7] = [
        Profile::KeepAlive,
        Profile::NewConnection,
        Profile::Http2,
        Profile::Post,
        Profile::Slow,
        Profile::WebSocket,
        Profile::Plain,
    ];

    /// Short name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Profile::KeepAlive => "keep-alive",
            Profile::NewConnection => "new-connection",
            Profile::Http2 => "http2",
            Profile::Post => "post",
            Profile::Slow => "slow",
            Profile::WebSocket => "websocket",
            Profile::Plain => "plain",
        }
    }

    /// The sample app's path for this profile.
    pub fn default_path(self) -> &'static str {
        match self {
            Profile::Post => "/echo",
            Profile::Slow => "/slow?ms=2000",
            Profile::WebSocket => "/ws",
            _ => "/",
        }
    }
}

#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub addr: SocketAddr,
    pub host: String,
    pub path: String,
    pub clients: usize,
    pub profile: Profile,
    /// Pause between a response and the next request of the same client (for
    /// WebSockets: between two messages).
    pub gap: Duration,
    /// When set (and longer than `gap`), each pause is drawn at random between `gap` and
    /// this (seeded per client, so a run can be repeated): keep-alive connections idle for
    /// varying short times.
    pub gap_max: Option<Duration>,
    /// `Post`: size of each request body (unique per request, checked in the echo).
    pub body_bytes: usize,
    /// `WebSocket`: how long a client keeps one socket before closing it normally (1000)
    /// and opening the next; `None` holds it until the server ends it or the load stops.
    pub ws_hold: Option<Duration>,
    /// Longest wait for a connection, a response or an echo before it counts as a
    /// `timeout` failure (so a hung server cannot hang the load).
    pub timeout: Duration,
    /// Speak HTTPS (HTTP/1.1 or h2 by ALPN, as the profile says): keep-alive,
    /// new-connection, h2 and POST profiles. A TLS handshake that fails counts as a
    /// `connect: tls` failure.
    pub tls: Option<Tls>,
}

/// The client side of HTTPS for a load: roots to trust and the name to ask for (SNI,
/// checked against the certificate).
#[derive(Debug, Clone)]
pub struct Tls {
    h1: Arc<rustls::ClientConfig>,
    h2: Arc<rustls::ClientConfig>,
    name: rustls::pki_types::ServerName<'static>,
}

impl Tls {
    /// Trusts the certificates in the PEM file `ca` (and nothing else); `name` is the
    /// SNI sent and the name the server's certificate must carry.
    pub fn new(ca: &std::path::Path, name: &str) -> Result<Tls, String> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca)
            .map_err(|e| format!("{}: {e}", ca.display()))?
        {
            let cert = cert.map_err(|e| format!("{}: {e}", ca.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("{}: {e}", ca.display()))?;
        }
        let config = |alpn: &[u8]| -> Result<Arc<rustls::ClientConfig>, String> {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut c = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            c.alpn_protocols = vec![alpn.to_vec()];
            Ok(Arc::new(c))
        };
        let name = rustls::pki_types::ServerName::try_from(name.to_string())
            .map_err(|e| format!("{name:?}: {e}"))?;
        Ok(Tls {
            h1: config(b"http/1.1")?,
            h2: config(b"h2")?,
            name,
        })
    }
}

impl LoadSpec {
    pub fn new(addr: SocketAddr) -> Self {
        LoadSpec {
            addr,
            host: "localhost".into(),
            path: "/".into(),
            clients: 4,
            profile: Profile::KeepAlive,
            gap: Duration::from_millis(5),
            gap_max: None,
            body_bytes: 4096,
            ws_hold: None,
            timeout: Duration::from_secs(30),
            tls: None,
        }
    }

    /// `new(addr)` with `profile` and the sample app's path for it.
    pub fn with_profile(addr: SocketAddr, profile: Profile) -> Self {
        LoadSpec {
            profile,
            path: profile.default_path().into(),
            ..LoadSpec::new(addr)
        }
    }
}

/// One request (or WebSocket handshake / message / abnormal close), for time slicing.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Microseconds from the start of the load to the start of the request.
    pub at_us: u64,
    /// Microseconds until the response ended (or the failure was seen).
    pub latency_us: u64,
    pub ok: bool,
    pub profile: Profile,
}

/// Counts and latency of a group of requests.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// WebSocket sessions.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WsStats {
    /// Sessions opened (handshake answered 101).
    pub opened: u64,
    /// Sessions the client closed itself (`ws_hold` elapsed, or the load stopped).
    pub client_closed: u64,
    /// Sessions the server closed with a close frame, no message unanswered (the client
    /// reconnects; not a failure).
    pub server_closed: u64,
    /// Messages echoed correctly.
    pub echoed: u64,
}

/// What a run saw.
#[derive(Clone, Default, Serialize)]
pub struct Report {
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    /// Failures by kind: `status 502`, `connect`, `reset`, ...
    pub failures: BTreeMap<String, u64>,
    /// Successful responses by the `X-Version` that served them.
    pub by_version: BTreeMap<String, u64>,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The same counts per profile (by [`Profile::name`]).
    pub by_profile: BTreeMap<String, Stats>,
    pub ws: WsStats,
    /// When the load started (what [`Sample::at_us`] counts from).
    #[serde(skip)]
    pub started: Option<Instant>,
    /// Every request, in no particular order.
    #[serde(skip)]
    pub samples: Vec<Sample>,
}

/// Everything but the samples (too many to print).
impl std::fmt::Debug for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Report")
            .field("sent", &self.sent)
            .field("ok", &self.ok)
            .field("failed", &self.failed)
            .field("failures", &self.failures)
            .field("by_version", &self.by_version)
            .field("p50_ms", &self.p50_ms)
            .field("p99_ms", &self.p99_ms)
            .field("max_ms", &self.max_ms)
            .field("by_profile", &self.by_profile)
            .field("ws", &self.ws)
            .field("samples", &self.samples.len())
            .finish()
    }
}

impl Report {
    /// Stats of the requests of `profiles` (all when empty) that overlapped one of
    /// `windows` (e.g. the time a deployment was switching), and of those that did not.
    pub fn window_stats(
        &self,
        windows: &[(Instant, Instant)],
        profiles: &[Profile],
    ) -> (Stats, Stats) {
        let Some(started) = self.started else {
            return (Stats::default(), Stats::default());
        };
        let windows: Vec<(u64, u64)> = windows
            .iter()
            .map(|(a, b)| (micros_since(started, *a), micros_since(started, *b)))
            .collect();
        let (mut inside, mut outside) = (Acc::default(), Acc::default());
        for s in &self.samples {
            if !profiles.is_empty() && !profiles.contains(&s.profile) {
                continue;
            }
            let end = s.at_us + s.latency_us;
            let during = windows.iter().any(|(a, b)| s.at_us <= *b && end >= *a);
            if during {
                inside.add(s);
            } else {
                outside.add(s);
            }
        }
        (inside.stats(), outside.stats())
    }
}

fn micros_since(start: Instant, t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(start).as_micros()).unwrap_or(u64::MAX)
}

/// Accumulates samples into [`Stats`].
struct Acc {
    stats: Stats,
    hist: hdrhistogram::Histogram<u64>,
}

impl Default for Acc {
    fn default() -> Self {
        Acc {
            stats: Stats::default(),
            hist: new_hist(),
        }
    }
}

impl Acc {
    fn add(&mut self, s: &Sample) {
        self.stats.sent += 1;
        if s.ok {
            self.stats.ok += 1;
            let _ = self.hist.record(s.latency_us.max(1));
        } else {
            self.stats.failed += 1;
        }
    }

    fn stats(mut self) -> Stats {
        fill_quantiles(&mut self.stats, &self.hist);
        self.stats
    }
}

fn fill_quantiles(stats: &mut Stats, hist: &hdrhistogram::Histogram<u64>) {
    if !hist.is_empty() {
        stats.p50_ms = hist.value_at_quantile(0.5) as f64 / 1000.0;
        stats.p99_ms = hist.value_at_quantile(0.99) as f64 / 1000.0;
        stats.max_ms = hist.max() as f64 / 1000.0;
    }
}

/// A running load; `stop` ends it and returns the report.
pub struct Load {
    stop: Arc<AtomicBool>,
    started: Instant,
    workers: Vec<tokio::task::JoinHandle<Worker>>,
}

impl Load {
    pub fn start(spec: LoadSpec) -> Load {
        Load::start_mixed(vec![spec])
    }

    /// Runs several specs (profiles) at once; one report covers them all.
    pub fn start_mixed(specs: Vec<LoadSpec>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let mut workers = Vec::new();
        for spec in specs {
            for _ in 0..spec.clients.max(1) {
                let (spec, stop) = (spec.clone(), stop.clone());
                workers.push(tokio::spawn(async move {
                    let w = Worker::new(spec.profile, started);
                    if spec.profile == Profile::WebSocket {
                        run_ws_worker(spec, stop, w).await
                    } else if spec.profile == Profile::Plain {
                        run_plain_worker(spec, stop, w).await
                    } else {
                        run_worker(spec, stop, w).await
                    }
                }));
            }
        }
        Load {
            stop,
            started,
            workers,
        }
    }

    pub async fn stop(self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        let mut report = Report {
            started: Some(self.started),
            ..Report::default()
        };
        let mut hist = new_hist();
        let mut per_profile: BTreeMap<Profile, (Stats, hdrhistogram::Histogram<u64>)> =
            BTreeMap::new();
        for w in self.workers {
            let Ok(w) = w.await else { continue };
            let failed: u64 = w.failures.values().sum();
            report.sent += w.ok + failed;
            report.ok += w.ok;
            report.failed += failed;
            for (k, n) in w.failures {
                *report.failures.entry(k).or_default() += n;
            }
            for (k, n) in w.by_version {
                *report.by_version.entry(k).or_default() += n;
            }
            let _ = hist.add(&w.hist);
            let (stats, h) = per_profile
                .entry(w.profile)
                .or_insert_with(|| (Stats::default(), new_hist()));
            stats.sent += w.ok + failed;
            stats.ok += w.ok;
            stats.failed += failed;
            let _ = h.add(&w.hist);
            report.ws.opened += w.ws.opened;
            report.ws.client_closed += w.ws.client_closed;
            report.ws.server_closed += w.ws.server_closed;
            report.ws.echoed += w.ws.echoed;
            report.samples.extend(w.samples);
        }
        if !hist.is_empty() {
            report.p50_ms = hist.value_at_quantile(0.5) as f64 / 1000.0;
            report.p99_ms = hist.value_at_quantile(0.99) as f64 / 1000.0;
            report.max_ms = hist.max() as f64 / 1000.0;
        }
        for (profile, (mut stats, h)) in per_profile {
            fill_quantiles(&mut stats, &h);
            report.by_profile.insert(profile.name().to_string(), stats);
        }
        report
    }
}

fn new_hist() -> hdrhistogram::Histogram<u64> {
    // 1 µs .. 10 min at 3 significant digits; these bounds are valid constants.
    hdrhistogram::Histogram::new_with_bounds(1, 600_000_000, 3)
        .unwrap_or_else(|_| hdrhistogram::Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

struct Worker {
    profile: Profile,
    started: Instant,
    ok: u64,
    failures: BTreeMap<String, u64>,
    by_version: BTreeMap<String, u64>,
    hist: hdrhistogram::Histogram<u64>,
    samples: Vec<Sample>,
    ws: WsStats,
}

impl Worker {
    fn new(profile: Profile, started: Instant) -> Worker {
        Worker {
            profile,
            started,
            ok: 0,
            failures: BTreeMap::new(),
            by_version: BTreeMap::new(),
            hist: new_hist(),
            samples: Vec::new(),
            ws: WsStats::default(),
        }
    }

    fn sample(&mut self, start: Instant, ok: bool) -> u64 {
        let latency_us = u64::try_from(start.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        self.samples.push(Sample {
            at_us: micros_since(self.started, start),
            latency_us,
            ok,
            profile: self.profile,
        });
        latency_us
    }

    fn succeed(&mut self, start: Instant, version: &str) {
        let latency = self.sample(start, true);
        self.ok += 1;
        *self.by_version.entry(version.to_string()).or_default() += 1;
        let _ = self.hist.record(latency);
    }

    fn fail(&mut self, start: Instant, kind: impl Into<String>) {
        self.sample(start, false);
        *self.failures.entry(kind.into()).or_default() += 1;
    }
}

enum Conn {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

async fn connect(spec: &LoadSpec) -> Result<Conn, String> {
    let stream = tcp_connect(spec).await?;
    let Some(tls) = &spec.tls else {
        return handshake(spec, stream).await;
    };
    let config = match spec.profile {
        Profile::Http2 => tls.h2.clone(),
        _ => tls.h1.clone(),
    };
    let connecting = tokio_rustls::TlsConnector::from(config).connect(tls.name.clone(), stream);
    let stream = tokio::time::timeout(spec.timeout, connecting)
        .await
        .map_err(|_| "connect: tls timeout".to_string())?
        .map_err(|e| format!("connect: tls: {e}"))?;
    handshake(spec, stream).await
}

async fn handshake<I>(spec: &LoadSpec, stream: I) -> Result<Conn, String>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(stream);
    match spec.profile {
        Profile::Http2 => {
            let (s, c) = http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|_| "connect: h2 handshake".to_string())?;
            tokio::spawn(c);
            Ok(Conn::H2(s))
        }
        _ => {
            let (s, c) = http1::handshake(io)
                .await
                .map_err(|_| "connect: handshake".to_string())?;
            tokio::spawn(c);
            Ok(Conn::H1(s))
        }
    }
}

async fn tcp_connect(spec: &LoadSpec) -> Result<tokio::net::TcpStream, String> {
    let stream = tokio::time::timeout(spec.timeout, tokio::net::TcpStream::connect(spec.addr))
        .await
        .map_err(|_| "connect: timeout".to_string())?
        .map_err(|e| format!("connect: {}", e.kind()))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// What hyper says of a request it never began to write: its connection closed while
/// the request waited to go out on it.
const NOT_SENT: &str = "not sent: connection closed";

/// `send: ` and what hyper (and h2 beneath it) said, e.g. `send: http2 error: stream
/// error received: refused stream before processing any application logic`.
fn send_error(e: &hyper::Error) -> String {
    let mut kind = format!("send: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        kind.push_str(&format!(": {s}"));
        source = s.source();
    }
    kind
}

/// A body of `len` bytes that differs from request to request (`n` is the request's
/// number), so an echo of another request's body is caught.
fn post_body(worker: usize, n: u64, len: usize) -> Bytes {
    let tag = format!("{worker}:{n};");
    Bytes::from(tag.bytes().cycle().take(len).collect::<Vec<u8>>())
}

static WORKER_IDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

async fn run_worker(spec: LoadSpec, stop: Arc<AtomicBool>, mut w: Worker) -> Worker {
    let id = WORKER_IDS.fetch_add(1, Ordering::Relaxed);
    let mut pauses = Pauses::new(&spec, id);
    let mut n = 0u64;
    let mut conn: Option<Conn> = None;
    while !stop.load(Ordering::Relaxed) {
        let start = Instant::now();
        n += 1;
        // A connection the server has closed (`Connection: close` on the last response,
        // HTTP/2 GOAWAY, or closed while idle) is not reused, as every client does: no
        // request was sent on it, so opening a new one is not a retry.
        let ready = async {
            match conn.as_mut() {
                Some(Conn::H1(s)) => s.ready().await.is_ok(),
                Some(Conn::H2(s)) => s.ready().await.is_ok(),
                None => false,
            }
        };
        let usable = tokio::time::timeout(spec.timeout, ready)
            .await
            .unwrap_or(false);
        if !usable {
            conn = None;
        }
        if conn.is_none() {
            match connect(&spec).await {
                Ok(c) => conn = Some(c),
                Err(kind) => {
                    w.fail(start, kind);
                    tokio::time::sleep(spec.gap.max(Duration::from_millis(10))).await;
                    continue;
                }
            }
        }
        let uri = match spec.profile {
            Profile::Http2 if spec.tls.is_some() => format!("https://{}{}", spec.host, spec.path),
            Profile::Http2 => format!("http://{}{}", spec.host, spec.path),
            _ => spec.path.clone(),
        };
        let body = if spec.profile == Profile::Post {
            post_body(id, n, spec.body_bytes)
        } else {
            Bytes::new()
        };
        let method = if spec.profile == Profile::Post {
            hyper::Method::POST
        } else {
            hyper::Method::GET
        };
        let mut req = hyper::Request::builder().method(method).uri(uri);
        if spec.profile != Profile::Http2 {
            req = req.header("host", spec.host.as_str());
        }
        let Ok(req) = req.body(Full::new(body.clone())) else {
            w.fail(start, "bad request");
            break;
        };
        let exchange = async {
            let resp = match conn.as_mut() {
                Some(Conn::H1(s)) => s.send_request(req).await,
                Some(Conn::H2(s)) => s.send_request(req).await,
                None => return Err(("send".to_string(), true)),
            }
            .map_err(|e| {
                if e.is_canceled() {
                    (NOT_SENT.to_string(), true)
                } else if e.is_incomplete_message() {
                    ("reset".to_string(), true)
                } else {
                    (send_error(&e), true)
                }
            })?;
            let status = resp.status();
            let version = resp
                .headers()
                .get("x-version")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?")
                .to_string();
            let got = resp
                .into_body()
                .collect()
                .await
                .map_err(|_| ("body cut".to_string(), true))?
                .to_bytes();
            Ok((status, version, got))
        };
        match tokio::time::timeout(spec.timeout, exchange).await {
            Ok(Ok((status, version, got))) => {
                if !status.is_success() {
                    w.fail(start, format!("status {}", status.as_u16()));
                } else if spec.profile == Profile::Post && got != body {
                    w.fail(
                        start,
                        format!("echo mismatch ({} of {} bytes)", got.len(), body.len()),
                    );
                } else {
                    w.succeed(start, &version);
                }
            }
            Ok(Err((kind, _))) if kind == NOT_SENT => {
                // The connection closed (an HTTP/2 GOAWAY that crossed the request on its
                // way in) before hyper wrote a byte of the request: the server never saw
                // it. It goes out again on a new connection, as hyper-util's client does
                // by default (`retry_canceled_requests`); nothing was sent twice.
                conn = None;
                continue;
            }
            Ok(Err((kind, drop_conn))) => {
                w.fail(start, kind);
                if drop_conn {
                    conn = None;
                }
            }
            Err(_) => {
                w.fail(start, "timeout");
                conn = None;
            }
        }
        if spec.profile == Profile::NewConnection {
            conn = None;
        }
        pauses.pause().await;
    }
    w
}

/// The pauses of one client between a response and its next request: `gap`, or drawn
/// between `gap` and `gap_max` (xorshift seeded by the client's number).
struct Pauses {
    min: Duration,
    max: Duration,
    state: u64,
}

impl Pauses {
    fn new(spec: &LoadSpec, client: usize) -> Pauses {
        Pauses {
            min: spec.gap,
            max: spec.gap_max.unwrap_or(spec.gap).max(spec.gap),
            state: 0x9E37_79B9_7F4A_7C15 ^ (client as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9),
        }
    }

    fn next(&mut self) -> Duration {
        if self.max <= self.min {
            return self.min;
        }
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let span = (self.max - self.min).as_micros() as u64;
        self.min + Duration::from_micros(self.state % (span + 1))
    }

    async fn pause(&mut self) {
        let d = self.next();
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }
}

/// `Profile::Plain`: requests written straight to a kept-alive socket (see the profile).
async fn run_plain_worker(spec: LoadSpec, stop: Arc<AtomicBool>, mut w: Worker) -> Worker {
    let id = WORKER_IDS.fetch_add(1, Ordering::Relaxed);
    let mut pauses = Pauses::new(&spec, id);
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: baton-loadgen plain\r\n\r\n",
        spec.path, spec.host
    );
    let mut conn: Option<plain::Conn> = None;
    while !stop.load(Ordering::Relaxed) {
        let start = Instant::now();
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match tcp_connect(&spec).await {
                Ok(stream) => conn.insert(plain::Conn::new(stream)),
                Err(kind) => {
                    w.fail(start, kind);
                    tokio::time::sleep(spec.gap.max(Duration::from_millis(10))).await;
                    continue;
                }
            },
        };
        match tokio::time::timeout(spec.timeout, c.exchange(request.as_bytes())).await {
            Ok(Ok(resp)) => {
                if !(200..300).contains(&resp.status) {
                    w.fail(start, format!("status {}", resp.status));
                } else {
                    w.succeed(start, &resp.version);
                }
                if resp.close {
                    conn = None;
                }
            }
            Ok(Err(kind)) => {
                w.fail(start, kind);
                conn = None;
            }
            Err(_) => {
                w.fail(start, "timeout");
                conn = None;
            }
        }
        pauses.pause().await;
    }
    w
}

/// A minimal HTTP/1.1 client connection for `Profile::Plain`: enough to read the sample
/// app's responses (Content-Length, chunked, or until close) and nothing more.
mod plain {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    pub(crate) struct Conn {
        stream: TcpStream,
        buf: Vec<u8>,
    }

    pub(crate) struct Answer {
        pub status: u16,
        pub version: String,
        /// The server said `Connection: close` (or ended the body with the connection).
        pub close: bool,
    }

    fn io_kind(e: &std::io::Error) -> String {
        format!("{:?}", e.kind())
    }

    impl Conn {
        pub(crate) fn new(stream: TcpStream) -> Conn {
            Conn {
                stream,
                buf: Vec::new(),
            }
        }

        /// Reads more bytes into `buf`; `Ok(false)` at the end of the stream.
        async fn fill(&mut self) -> std::io::Result<bool> {
            let mut chunk = [0u8; 16 * 1024];
            let n = self.stream.read(&mut chunk).await?;
            self.buf.extend_from_slice(&chunk[..n]);
            Ok(n > 0)
        }

        /// Sends one request and reads its response. A failure before any response byte
        /// is `closed without answer: ...`; one after it is `reset` or `body cut`.
        pub(crate) async fn exchange(&mut self, request: &[u8]) -> Result<Answer, String> {
            if let Err(e) = self.stream.write_all(request).await {
                return Err(format!("closed without answer: write {}", io_kind(&e)));
            }
            let head_end = loop {
                if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                    break i + 4;
                }
                if self.buf.len() > 64 * 1024 {
                    return Err("response head too large".into());
                }
                let answered = !self.buf.is_empty();
                match self.fill().await {
                    Ok(true) => {}
                    Ok(false) if answered => return Err("body cut: in the head".into()),
                    Ok(false) => return Err("closed without answer: end of stream".into()),
                    Err(e) if answered => return Err(format!("reset: {}", io_kind(&e))),
                    Err(e) => return Err(format!("closed without answer: {}", io_kind(&e))),
                }
            };
            let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
            self.buf.drain(..head_end);
            let mut lines = head.split("\r\n");
            let status = lines
                .next()
                .and_then(|l| l.split(' ').nth(1))
                .and_then(|c| c.parse::<u16>().ok())
                .ok_or_else(|| "bad response line".to_string())?;
            let (mut length, mut chunked, mut close) = (None, false, false);
            let mut version = String::from("?");
            for line in lines {
                let Some((name, value)) = line.split_once(':') else {
                    continue;
                };
                let value = value.trim();
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.parse::<usize>().ok(),
                    "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
                    "connection" => close |= value.to_ascii_lowercase().contains("close"),
                    "x-version" => version = value.to_string(),
                    _ => {}
                }
            }
            if chunked {
                self.read_chunked().await?;
            } else if let Some(n) = length {
                while self.buf.len() < n {
                    self.more().await?;
                }
                self.buf.drain(..n);
            } else if status != 204 && status != 304 {
                // Delimited by the end of the connection.
                while self
                    .fill()
                    .await
                    .map_err(|e| format!("reset: {}", io_kind(&e)))?
                {}
                self.buf.clear();
                close = true;
            }
            Ok(Answer {
                status,
                version,
                close,
            })
        }

        /// Reads more of a body that must go on.
        async fn more(&mut self) -> Result<(), String> {
            match self.fill().await {
                Ok(true) => Ok(()),
                Ok(false) => Err("body cut".into()),
                Err(e) => Err(format!("reset: {}", io_kind(&e))),
            }
        }

        async fn read_chunked(&mut self) -> Result<(), String> {
            loop {
                let line_end = loop {
                    if let Some(i) = find(&self.buf, b"\r\n") {
                        break i;
                    }
                    self.more().await?;
                };
                let line = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
                let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                    .map_err(|_| "bad chunk size".to_string())?;
                self.buf.drain(..line_end + 2);
                if size == 0 {
                    // Trailers (none expected), then the final empty line.
                    loop {
                        if let Some(i) = find(&self.buf, b"\r\n") {
                            self.buf.drain(..i + 2);
                            if i == 0 {
                                return Ok(());
                            }
                            continue;
                        }
                        self.more().await?;
                    }
                }
                while self.buf.len() < size + 2 {
                    self.more().await?;
                }
                self.buf.drain(..size + 2);
            }
        }
    }

    fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
        hay.windows(needle.len()).position(|w| w == needle)
    }
}

type WsStream = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// How one WebSocket session ended.
enum SessionEnd {
    /// The load is stopping or `ws_hold` elapsed: the client closed it.
    ClientClosed,
    /// The server sent a close frame while no message was outstanding.
    ServerClosed,
    /// Counted as a failure already.
    Failed,
}

async fn run_ws_worker(spec: LoadSpec, stop: Arc<AtomicBool>, mut w: Worker) -> Worker {
    let url = format!("ws://{}{}", spec.host, spec.path);
    while !stop.load(Ordering::Relaxed) {
        let start = Instant::now();
        let opened = async {
            let stream = tcp_connect(&spec).await?;
            let req = url
                .as_str()
                .into_client_request()
                .map_err(|e| format!("ws bad url: {e}"))?;
            tokio_tungstenite::client_async(req, stream)
                .await
                .map_err(|e| match e {
                    WsError::Http(resp) => {
                        format!("ws handshake status {}", resp.status().as_u16())
                    }
                    other => format!("ws handshake: {}", ws_kind(&other)),
                })
        };
        let (ws, resp) = match tokio::time::timeout(spec.timeout, opened).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(kind)) => {
                w.fail(start, kind);
                tokio::time::sleep(spec.gap.max(Duration::from_millis(10))).await;
                continue;
            }
            Err(_) => {
                w.fail(start, "ws handshake: timeout");
                continue;
            }
        };
        let version = resp
            .headers()
            .get("x-version")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?")
            .to_string();
        w.succeed(start, &version);
        w.ws.opened += 1;
        match ws_session(&spec, &stop, &mut w, ws, &version).await {
            SessionEnd::ClientClosed => w.ws.client_closed += 1,
            SessionEnd::ServerClosed => w.ws.server_closed += 1,
            SessionEnd::Failed => {
                tokio::time::sleep(spec.gap.max(Duration::from_millis(10))).await;
            }
        }
    }
    w
}

/// Sends a message every `gap` and checks each echo, until the client or server ends it.
async fn ws_session(
    spec: &LoadSpec,
    stop: &AtomicBool,
    w: &mut Worker,
    mut ws: WsStream,
    version: &str,
) -> SessionEnd {
    let opened = Instant::now();
    let mut n = 0u64;
    loop {
        // At rest between messages: the server may close (or cut) the session now.
        let rest = tokio::time::sleep(spec.gap.max(Duration::from_millis(1)));
        tokio::pin!(rest);
        loop {
            tokio::select! {
                () = &mut rest => break,
                msg = ws.next() => match msg {
                    Some(Ok(Message::Close(_))) => {
                        let _ = tokio::time::timeout(spec.timeout, drain_ws(&mut ws)).await;
                        return SessionEnd::ServerClosed;
                    }
                    Some(Ok(Message::Text(_) | Message::Binary(_))) => {
                        w.fail(Instant::now(), "ws unexpected message");
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        w.fail(Instant::now(), format!("ws closed at rest: {}", ws_kind(&e)));
                        return SessionEnd::Failed;
                    }
                    None => {
                        w.fail(Instant::now(), "ws closed at rest: no close frame (1006)");
                        return SessionEnd::Failed;
                    }
                }
            }
        }
        let hold_over = spec.ws_hold.is_some_and(|h| opened.elapsed() >= h);
        if stop.load(Ordering::Relaxed) || hold_over {
            let close = CloseFrame {
                code: CloseCode::Normal,
                reason: "done".into(),
            };
            let _ = ws.close(Some(close)).await;
            let _ = tokio::time::timeout(spec.timeout, drain_ws(&mut ws)).await;
            return SessionEnd::ClientClosed;
        }
        n += 1;
        let text = format!("message {n}");
        let start = Instant::now();
        let echoed = async {
            ws.send(Message::text(text.clone()))
                .await
                .map_err(|e| format!("ws send: {}", ws_kind(&e)))?;
            loop {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) if t.as_str() == text => return Ok(()),
                    Some(Ok(Message::Text(_) | Message::Binary(_))) => {
                        return Err("ws echo mismatch".to_string())
                    }
                    Some(Ok(Message::Close(_))) => {
                        return Err("ws closed with a message unanswered".to_string())
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        return Err(format!(
                            "ws closed with a message unanswered: {}",
                            ws_kind(&e)
                        ))
                    }
                    None => {
                        return Err("ws closed with a message unanswered: no close frame (1006)"
                            .to_string())
                    }
                }
            }
        };
        match tokio::time::timeout(spec.timeout, echoed).await {
            Ok(Ok(())) => {
                w.succeed(start, version);
                w.ws.echoed += 1;
            }
            Ok(Err(kind)) => {
                w.fail(start, kind);
                return SessionEnd::Failed;
            }
            Err(_) => {
                w.fail(start, "ws echo: timeout");
                return SessionEnd::Failed;
            }
        }
    }
}

/// Reads until the peer finishes the closing handshake.
async fn drain_ws(ws: &mut WsStream) {
    while let Some(Ok(_)) = ws.next().await {}
}

fn ws_kind(e: &WsError) -> String {
    use tokio_tungstenite::tungstenite::error::ProtocolError;
    match e {
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            "no close frame (1006)".into()
        }
        WsError::Io(io) => format!("{:?}", io.kind()),
        WsError::ConnectionClosed | WsError::AlreadyClosed => "closed".into(),
        other => other.to_string(),
    }
}
