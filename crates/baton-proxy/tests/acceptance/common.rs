//! Test harness: a real proxy on 127.0.0.1:0, real backends (the sample app, and a
//! small counting server that records what reached it), HTTP/1.1 and HTTP/2 clients,
//! raw sockets, and route-table builders.

use baton_core::{AppRouteSpec, BackendSpec, PoolSpec, RouteSpec, RouteTableSpec};
use baton_metrics::MetricsRegistry;
use baton_proxy::{Proxy, ProxyConfig};
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub const APP: &str = "web";

// === proxy ===

pub struct TestProxy {
    pub proxy: Proxy,
    pub addr: SocketAddr,
    pub metrics: Arc<MetricsRegistry>,
    stop: CancellationToken,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

pub async fn start_proxy(config: ProxyConfig) -> TestProxy {
    let metrics = Arc::new(MetricsRegistry::new());
    let proxy = Proxy::new(config, metrics.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let (p, s) = (proxy.clone(), stop.clone());
    let served = tokio::spawn(async move { p.serve(listener, s.cancelled_owned()).await });
    TestProxy {
        proxy,
        addr,
        metrics,
        stop,
        served: Some(served),
    }
}

impl TestProxy {
    /// Signal shutdown; the returned task ends when `serve` returns.
    pub fn shutdown(&mut self) -> tokio::task::JoinHandle<std::io::Result<()>> {
        self.stop.cancel();
        self.served.take().unwrap()
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

// === backends ===

/// An in-process sample app (the same one `baton demo` runs).
pub struct Sample {
    pub addr: SocketAddr,
    pub id: String,
    stop: CancellationToken,
}

pub async fn sample(id: &str, version: &str, idle_timeout_ms: Option<u64>) -> Sample {
    sample_with_latency(id, version, idle_timeout_ms, 0).await
}

/// A sample app that waits `latency_ms` before each answer.
pub async fn sample_with_latency(
    id: &str,
    version: &str,
    idle_timeout_ms: Option<u64>,
    latency_ms: u64,
) -> Sample {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let opts = sample_app::SampleOptions {
        port: 0,
        host: addr.ip(),
        app_version: version.to_string(),
        instance: Some(id.to_string()),
        startup_delay_ms: 0,
        error_rate: 0.0,
        latency_ms,
        fail_health: false,
        exit_after_ms: None,
        idle_timeout_ms,
        db: None,
    };
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move { sample_app::run(opts, listener, s.cancelled_owned()).await });
    Sample {
        addr,
        id: id.to_string(),
        stop,
    }
}

impl Sample {
    pub fn spec(&self) -> BackendSpec {
        BackendSpec {
            id: self.id.clone(),
            addr: self.addr,
        }
    }

    /// The app's POST counter, read directly (not through the proxy).
    pub async fn writes(&self) -> u64 {
        let mut c = h1(self.addr).await;
        let (status, _, body) = get(&mut c, "/writes").await;
        assert_eq!(status, StatusCode::OK);
        String::from_utf8_lossy(&body).trim().parse().unwrap()
    }
}

/// Wait until no TCP connection to `backend` is open from this host's side, read from
/// the kernel's socket table: each has had the backend's FIN (or is gone). Panics after
/// 10 s.
pub async fn backend_closed_every_connection(backend: SocketAddr) {
    for _ in 0..500 {
        if !connections_to(backend).contains(&1) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("connections to {backend} still open after 10 s; the backend's idle timeout did not close them");
}

/// How many TCP connections to `backend` are established from this host's side.
#[allow(dead_code)]
pub fn established_to(backend: SocketAddr) -> usize {
    connections_to(backend).iter().filter(|&&s| s == 1).count()
}

/// How many TCP connections to `backend` from this host's side are in any state but
/// ESTABLISHED: closing, closed and waiting out `TIME_WAIT`, or still connecting.
#[allow(dead_code)]
pub fn not_established_to(backend: SocketAddr) -> usize {
    connections_to(backend).iter().filter(|&&s| s != 1).count()
}

/// The TCP states (as `/proc/net/tcp` numbers them; 1 is ESTABLISHED) of this host's
/// IPv4 sockets whose remote end is `peer`.
fn connections_to(peer: SocketAddr) -> Vec<u8> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let address = |field: &str| -> Option<SocketAddr> {
        let (ip, port) = field.split_once(':')?;
        let ip = u32::from_str_radix(ip, 16).ok()?;
        let port = u16::from_str_radix(port, 16).ok()?;
        Some(SocketAddr::from((ip.to_ne_bytes(), port)))
    };
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let remote = address(fields.get(2)?)?;
            let state = u8::from_str_radix(fields.get(3)?, 16).ok()?;
            (remote == peer).then_some(state)
        })
        .collect()
}

impl Drop for Sample {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A backend that counts every request that reaches it and keeps the last one's
/// headers. Answers `status` with its version in `X-Version`.
pub struct Counting {
    pub addr: SocketAddr,
    pub id: String,
    pub requests: Arc<AtomicU64>,
    /// Requests whose body arrived complete (read by the hostile suite, which shares
    /// this file).
    #[allow(dead_code)]
    pub complete: Arc<AtomicU64>,
    pub last_headers: Arc<Mutex<Option<HeaderMap>>>,
    /// Connections currently open to this backend.
    pub open: Arc<AtomicU64>,
    stop: CancellationToken,
}

pub async fn counting(id: &str, version: &str, status: u16) -> Counting {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicU64::new(0));
    let complete = Arc::new(AtomicU64::new(0));
    let last_headers = Arc::new(Mutex::new(None));
    let stop = CancellationToken::new();
    let open = Arc::new(AtomicU64::new(0));
    let (r, c, l, s, o) = (
        requests.clone(),
        complete.clone(),
        last_headers.clone(),
        stop.clone(),
        open.clone(),
    );
    let version = version.to_string();
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = s.cancelled() => return,
                accepted = listener.accept() => accepted.unwrap().0,
            };
            let (r, c, l, v) = (r.clone(), c.clone(), l.clone(), version.clone());
            let service = service_fn(move |req: Request<Incoming>| {
                let (r, c, l, v) = (r.clone(), c.clone(), l.clone(), v.clone());
                async move {
                    r.fetch_add(1, SeqCst);
                    *l.lock().unwrap() = Some(req.headers().clone());
                    if req.into_body().collect().await.is_ok() {
                        c.fetch_add(1, SeqCst);
                    }
                    let mut res = Response::new(Full::new(Bytes::from(v.clone())));
                    *res.status_mut() = StatusCode::from_u16(status).unwrap();
                    res.headers_mut().insert("x-version", v.parse().unwrap());
                    Ok::<_, std::convert::Infallible>(res)
                }
            });
            let conn = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            o.fetch_add(1, SeqCst);
            let o = o.clone();
            tokio::spawn(async move {
                let _ = conn.await;
                o.fetch_sub(1, SeqCst);
            });
        }
    });
    Counting {
        addr,
        id: id.to_string(),
        requests,
        complete,
        last_headers,
        open,
        stop,
    }
}

impl Counting {
    pub fn spec(&self) -> BackendSpec {
        BackendSpec {
            id: self.id.clone(),
            addr: self.addr,
        }
    }

    pub fn count(&self) -> u64 {
        self.requests.load(SeqCst)
    }

    pub fn headers(&self) -> HeaderMap {
        self.last_headers.lock().unwrap().clone().unwrap()
    }
}

impl Drop for Counting {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// An address where nothing listens (connection refused).
pub async fn dead_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

// === route tables ===

pub fn pool(version: &str, weight: u32, backends: Vec<BackendSpec>) -> PoolSpec {
    PoolSpec {
        version: version.to_string(),
        weight,
        backends,
    }
}

/// App `web` on every host and path.
pub fn table(app: AppRouteSpec) -> RouteTableSpec {
    let mut t = RouteTableSpec {
        routes: vec![RouteSpec {
            host: None,
            path_prefix: "/".into(),
            app: APP.into(),
        }],
        ..Default::default()
    };
    t.apps.insert(APP.into(), app);
    t
}

pub fn pools(pools: Vec<PoolSpec>) -> AppRouteSpec {
    AppRouteSpec {
        pools,
        ..Default::default()
    }
}

// === clients ===

pub type H1 = http1::SendRequest<Full<Bytes>>;
pub type H2 = http2::SendRequest<Full<Bytes>>;

pub async fn h1(addr: SocketAddr) -> H1 {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    sender
}

pub async fn h2(addr: SocketAddr) -> H2 {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

pub type Answer = (StatusCode, HeaderMap, Bytes);

pub fn request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Request<Full<Bytes>> {
    let mut b = Request::builder().method(method).uri(path);
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        b = b.header("host", "proxy.test");
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::from(body.to_string()))).unwrap()
}

/// Send on an HTTP/1.1 connection; `Err` carries a client-visible failure.
pub async fn try_send(c: &mut H1, req: Request<Full<Bytes>>) -> Result<Answer, String> {
    c.ready()
        .await
        .map_err(|e| format!("connection not ready: {e}"))?;
    let res = c
        .send_request(req)
        .await
        .map_err(|e| format!("send: {e}"))?;
    collect(res).await
}

pub async fn try_send_h2(
    c: &mut H2,
    mut req: Request<Full<Bytes>>,
    addr: SocketAddr,
) -> Result<Answer, String> {
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    *req.uri_mut() = format!("http://proxy.test:{}{path}", addr.port())
        .parse()
        .unwrap();
    req.headers_mut().remove("host");
    c.ready().await.map_err(|e| format!("h2 not ready: {e}"))?;
    let res = c
        .send_request(req)
        .await
        .map_err(|e| format!("h2 send: {e}"))?;
    collect(res).await
}

async fn collect(res: Response<Incoming>) -> Result<Answer, String> {
    let (parts, body) = res.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok((parts.status, parts.headers, body))
}

pub async fn get(c: &mut H1, path: &str) -> Answer {
    try_send(c, request("GET", path, &[], "")).await.unwrap()
}

/// One request on a fresh connection.
pub async fn get_once(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut c = h1(addr).await;
    try_send(&mut c, request("GET", path, headers, ""))
        .await
        .unwrap()
}

pub fn version_of(answer: &Answer) -> String {
    answer
        .1
        .get("x-version")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// Write raw bytes, then read until the server closes (or 5 s pass).
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// RFC 6455 opening handshake over a raw socket (the key and accept value are the
/// RFC's own example).
pub async fn ws_connect(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: proxy.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    s
}

/// Poll `cond` every 10 ms, at most `tries` times.
pub async fn eventually(tries: usize, mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..tries {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}
