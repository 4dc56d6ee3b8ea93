//! A load client for proving "no failed request": every request is counted with its
//! outcome and the version that served it (`X-Version`), latencies go to an HDR
//! histogram, and nothing is ever retried — a reset or a 5xx is a failure, full stop.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How clients talk to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Profile {
    /// HTTP/1.1, one keep-alive connection per client, requests back to back (plus `gap`).
    KeepAlive,
    /// HTTP/1.1, a new connection for every request.
    NewConnection,
    /// HTTP/2 prior knowledge (h2c), one connection per client.
    Http2,
}

#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub addr: SocketAddr,
    pub host: String,
    pub path: String,
    pub clients: usize,
    pub profile: Profile,
    /// Pause between a response and the next request of the same client.
    pub gap: Duration,
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
        }
    }
}

/// What a run saw.
#[derive(Debug, Clone, Default, Serialize)]
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
}

/// A running load; `stop` ends it and returns the report.
pub struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<Worker>>,
}

impl Load {
    pub fn start(spec: LoadSpec) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..spec.clients.max(1))
            .map(|_| tokio::spawn(run_worker(spec.clone(), stop.clone())))
            .collect();
        Load { stop, workers }
    }

    pub async fn stop(self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        let mut report = Report::default();
        let mut hist = new_hist();
        for w in self.workers {
            let Ok(w) = w.await else { continue };
            report.sent += w.sent;
            report.ok += w.ok;
            report.failed += w.sent - w.ok;
            for (k, n) in w.failures {
                *report.failures.entry(k).or_default() += n;
            }
            for (k, n) in w.by_version {
                *report.by_version.entry(k).or_default() += n;
            }
            let _ = hist.add(&w.hist);
        }
        if !hist.is_empty() {
            report.p50_ms = hist.value_at_quantile(0.5) as f64 / 1000.0;
            report.p99_ms = hist.value_at_quantile(0.99) as f64 / 1000.0;
            report.max_ms = hist.max() as f64 / 1000.0;
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
    sent: u64,
    ok: u64,
    failures: BTreeMap<String, u64>,
    by_version: BTreeMap<String, u64>,
    hist: hdrhistogram::Histogram<u64>,
}

impl Worker {
    fn fail(&mut self, kind: impl Into<String>) {
        *self.failures.entry(kind.into()).or_default() += 1;
    }
}

enum Conn {
    H1(http1::SendRequest<Empty<Bytes>>),
    H2(http2::SendRequest<Empty<Bytes>>),
}

async fn connect(spec: &LoadSpec) -> Result<Conn, String> {
    let stream = tokio::net::TcpStream::connect(spec.addr)
        .await
        .map_err(|e| format!("connect: {}", e.kind()))?;
    let _ = stream.set_nodelay(true);
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

async fn run_worker(spec: LoadSpec, stop: Arc<AtomicBool>) -> Worker {
    let mut w = Worker {
        sent: 0,
        ok: 0,
        failures: BTreeMap::new(),
        by_version: BTreeMap::new(),
        hist: new_hist(),
    };
    let mut conn: Option<Conn> = None;
    while !stop.load(Ordering::Relaxed) {
        let start = Instant::now();
        w.sent += 1;
        if conn.is_none() {
            match connect(&spec).await {
                Ok(c) => conn = Some(c),
                Err(kind) => {
                    w.fail(kind);
                    tokio::time::sleep(spec.gap.max(Duration::from_millis(10))).await;
                    continue;
                }
            }
        }
        let uri = match spec.profile {
            Profile::Http2 => format!("http://{}{}", spec.host, spec.path),
            _ => spec.path.clone(),
        };
        let mut req = hyper::Request::get(uri);
        if spec.profile != Profile::Http2 {
            req = req.header("host", spec.host.as_str());
        }
        let Ok(req) = req.body(Empty::<Bytes>::new()) else {
            w.fail("bad request");
            break;
        };
        let sent = match conn.as_mut() {
            Some(Conn::H1(s)) => s.send_request(req).await,
            Some(Conn::H2(s)) => s.send_request(req).await,
            None => continue,
        };
        match sent {
            Ok(resp) => {
                let status = resp.status();
                let version = resp
                    .headers()
                    .get("x-version")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("?")
                    .to_string();
                match resp.into_body().collect().await {
                    Ok(_) if status.is_success() => {
                        w.ok += 1;
                        *w.by_version.entry(version).or_default() += 1;
                        let _ = w.hist.record(start.elapsed().as_micros().max(1) as u64);
                    }
                    Ok(_) => w.fail(format!("status {}", status.as_u16())),
                    Err(_) => {
                        w.fail("body cut");
                        conn = None;
                    }
                }
            }
            Err(e) => {
                w.fail(if e.is_incomplete_message() {
                    "reset"
                } else {
                    "send"
                });
                conn = None;
            }
        }
        if spec.profile == Profile::NewConnection {
            conn = None;
        }
        if !spec.gap.is_zero() {
            tokio::time::sleep(spec.gap).await;
        }
    }
    w
}
