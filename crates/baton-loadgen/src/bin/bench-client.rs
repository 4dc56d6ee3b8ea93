//! The benchmark's own HTTP/1.1 load client (bench/), for what wrk cannot do:
//!
//! - **fixed request rate, open loop**: each connection sends on a schedule
//!   (`start + (k * conns + j) / rate`) and latency counts from the *intended* send time,
//!   so a stalled server is charged for the requests that queued behind the stall
//!   (coordinated-omission correction, as wrk2 does);
//! - **closed loop with an idle gap** between a response and the next request;
//! - **a new connection per request**;
//! - a **timeline** of every response (wall-clock µs and the serving `X-Version`) so the
//!   benchmark can tell when a switch reached the new backend and when the old one was
//!   last seen.
//!
//! One blocking thread per connection: no async timer granularity (tokio's is 1 ms)
//! between the schedule and the socket. Nothing is retried: a reset, an early close or a
//! non-2xx is a failed request. Runs for `--seconds`, or until stdin closes or gets a line
//! when `--until-stdin` is given. Prints one JSON object.
//!
//! ```text
//! bench-client --addr 127.0.0.1:8080 [--host H] [--conns 32] [--seconds 10]
//!              [--rate 20000 | --gap-ms 50] [--close] [--until-stdin] [--timeline FILE]
//! ```

use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

type Hist = hdrhistogram::Histogram<u64>;

#[derive(Clone)]
struct Opts {
    addr: SocketAddr,
    host: String,
    conns: usize,
    seconds: f64,
    rate: Option<f64>,
    gap: Duration,
    close: bool,
    until_stdin: bool,
    timeline: Option<String>,
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "bench-client: {problem}\nusage: bench-client --addr IP:PORT [--host H] [--conns N] \
         [--seconds S] [--rate R | --gap-ms MS] [--close] [--until-stdin] [--timeline FILE]"
    );
    std::process::exit(2)
}

fn parse() -> Opts {
    let mut o = Opts {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        host: "localhost".into(),
        conns: 32,
        seconds: 10.0,
        rate: None,
        gap: Duration::ZERO,
        close: false,
        until_stdin: false,
        timeline: None,
    };
    let mut have_addr = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = |name: &str| {
            it.next()
                .unwrap_or_else(|| usage(&format!("{name} needs a value")))
        };
        let num = |name: &str, v: String| -> f64 {
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .unwrap_or_else(|| usage(&format!("{name} wants a non-negative number, got {v:?}")))
        };
        match a.as_str() {
            "--addr" => {
                let v = val("--addr");
                o.addr = v
                    .parse()
                    .unwrap_or_else(|_| usage(&format!("--addr wants IP:PORT, got {v:?}")));
                have_addr = true;
            }
            "--host" => o.host = val("--host"),
            "--conns" => o.conns = num("--conns", val("--conns")).max(1.0) as usize,
            "--seconds" => o.seconds = num("--seconds", val("--seconds")),
            "--rate" => o.rate = Some(num("--rate", val("--rate"))).filter(|r| *r > 0.0),
            "--gap-ms" => o.gap = Duration::from_secs_f64(num("--gap-ms", val("--gap-ms")) / 1e3),
            "--close" => o.close = true,
            "--until-stdin" => o.until_stdin = true,
            "--timeline" => o.timeline = Some(val("--timeline")),
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    if !have_addr {
        usage("--addr is required");
    }
    o
}

fn new_hist() -> Hist {
    // 1 µs .. 100 s at 3 significant digits: valid constant bounds.
    Hist::new_with_bounds(1, 100_000_000, 3).unwrap_or_else(|_| unreachable!())
}

struct Worker {
    sent: u64,
    ok: u64,
    failures: BTreeMap<String, u64>,
    by_version: BTreeMap<String, u64>,
    hist: Hist,
    /// (wall-clock µs at the response, version) for every successful response.
    timeline: Vec<(u64, Box<str>)>,
    /// Wall-clock µs of every failure.
    failed_at: Vec<u64>,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// One connection (or, with `--close`, one per request) driving requests until `stop`.
fn run(o: &Opts, j: usize, start: Instant, end: Option<Instant>, stop: &AtomicBool) -> Worker {
    let mut w = Worker {
        sent: 0,
        ok: 0,
        failures: BTreeMap::new(),
        by_version: BTreeMap::new(),
        hist: new_hist(),
        timeline: Vec::new(),
        failed_at: Vec::new(),
    };
    let conn_header = if o.close { "close" } else { "keep-alive" };
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {}\r\nConnection: {conn_header}\r\n\r\n",
        o.host
    );
    let mut conn: Option<Conn> = None;
    let mut k: u64 = 0;
    loop {
        if stop.load(Ordering::Relaxed) || end.is_some_and(|e| Instant::now() >= e) {
            break;
        }
        // When this request was meant to go out: on the schedule (open loop) or now.
        let intended = match o.rate {
            Some(rate) => {
                let t =
                    start + Duration::from_secs_f64((k * o.conns as u64 + j as u64) as f64 / rate);
                k += 1;
                let now = Instant::now();
                if t > now {
                    std::thread::sleep(t - now);
                }
                t
            }
            None => Instant::now(),
        };
        w.sent += 1;
        let result = exchange(&mut conn, o, &request);
        match result {
            Ok(version) => {
                w.ok += 1;
                let _ = w
                    .hist
                    .record((intended.elapsed().as_micros() as u64).max(1));
                if o.timeline.is_some() {
                    w.timeline.push((now_us(), version.as_str().into()));
                }
                *w.by_version.entry(version).or_default() += 1;
            }
            Err(kind) => {
                *w.failures.entry(kind.to_string()).or_default() += 1;
                w.failed_at.push(now_us());
                conn = None;
                if o.rate.is_none() {
                    // Do not spin on a refused connection.
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        if o.close {
            conn = None;
        }
        if !o.gap.is_zero() {
            std::thread::sleep(o.gap);
        }
    }
    w
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// One request/response; the serving version on success, a failure kind otherwise.
fn exchange(conn: &mut Option<Conn>, o: &Opts, request: &str) -> Result<String, &'static str> {
    if conn.is_none() {
        let stream =
            TcpStream::connect_timeout(&o.addr, Duration::from_secs(3)).map_err(|_| "connect")?;
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        *conn = Some(Conn {
            stream,
            buf: Vec::with_capacity(4096),
        });
    }
    let Some(c) = conn.as_mut() else {
        return Err("connect");
    };
    c.stream
        .write_all(request.as_bytes())
        .map_err(|_| "write")?;
    c.buf.clear();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = find(&c.buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = c.stream.read(&mut chunk).map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => "timeout",
            _ => "reset",
        })?;
        if n == 0 {
            return Err(if c.buf.is_empty() {
                "closed before response"
            } else {
                "closed mid-response"
            });
        }
        c.buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&c.buf[..head_end]).map_err(|_| "bad head")?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("bad head")?;
    let mut length = None;
    let mut version = String::from("?");
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        } else if name.eq_ignore_ascii_case("x-version") {
            version = value.to_string();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err("chunked response (unsupported)");
        }
    }
    let length = length.ok_or("no content-length")?;
    while c.buf.len() < head_end + length {
        let n = c.stream.read(&mut chunk).map_err(|_| "reset")?;
        if n == 0 {
            return Err("closed mid-response");
        }
        c.buf.extend_from_slice(&chunk[..n]);
    }
    if !(200..400).contains(&status) {
        return Err(match status {
            502 => "status 502",
            503 => "status 503",
            504 => "status 504",
            s if s >= 500 => "status 5xx",
            _ => "status 4xx",
        });
    }
    Ok(version)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn main() {
    let o = parse();
    let stop = Arc::new(AtomicBool::new(false));
    if o.until_stdin {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::stdin().lock().read_line(&mut line);
            stop.store(true, Ordering::Relaxed);
        });
    }
    let start = Instant::now() + Duration::from_millis(20);
    let end = (!o.until_stdin).then(|| start + Duration::from_secs_f64(o.seconds));
    let handles: Vec<_> = (0..o.conns)
        .map(|j| {
            let (o, stop) = (o.clone(), stop.clone());
            std::thread::spawn(move || run(&o, j, start, end, &stop))
        })
        .collect();
    let mut hist = new_hist();
    let (mut sent, mut ok) = (0u64, 0u64);
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_version: BTreeMap<String, u64> = BTreeMap::new();
    let mut timeline = Vec::new();
    let mut failed_at = Vec::new();
    for h in handles {
        let Ok(w) = h.join() else {
            *failures.entry("client thread panicked".into()).or_default() += 1;
            continue;
        };
        sent += w.sent;
        ok += w.ok;
        let _ = hist.add(&w.hist);
        for (k, n) in w.failures {
            *failures.entry(k).or_default() += n;
        }
        for (k, n) in w.by_version {
            *by_version.entry(k).or_default() += n;
        }
        timeline.extend(w.timeline);
        failed_at.extend(w.failed_at);
    }
    let elapsed = start.elapsed().as_secs_f64();
    if let Some(path) = &o.timeline {
        timeline.sort_unstable();
        let mut text = String::with_capacity(timeline.len() * 20);
        for (t, v) in &timeline {
            text.push_str(&format!("{t} {v}\n"));
        }
        failed_at.sort_unstable();
        for t in &failed_at {
            text.push_str(&format!("{t} FAILED\n"));
        }
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("bench-client: cannot write the timeline to {path}: {e}");
            std::process::exit(1);
        }
    }
    let q = |p: f64| {
        if hist.is_empty() {
            "null".to_string()
        } else {
            format!("{:.3}", hist.value_at_quantile(p) as f64 / 1000.0)
        }
    };
    let map = |m: &BTreeMap<String, u64>| {
        let items: Vec<String> = m
            .iter()
            .map(|(k, v)| format!("\"{}\": {v}", k.replace(['"', '\\'], "_")))
            .collect();
        format!("{{{}}}", items.join(", "))
    };
    println!(
        "{{\"sent\": {sent}, \"ok\": {ok}, \"failed\": {}, \"failures\": {}, \"by_version\": {}, \
         \"seconds\": {elapsed:.3}, \"rps\": {:.1}, \"target_rps\": {}, \"p50_ms\": {}, \
         \"p99_ms\": {}, \"p99_9_ms\": {}, \"max_ms\": {}}}",
        sent - ok,
        map(&failures),
        map(&by_version),
        ok as f64 / elapsed.max(1e-9),
        o.rate.map_or("null".to_string(), |r| format!("{r:.0}")),
        q(0.5),
        q(0.99),
        q(0.999),
        q(1.0),
    );
}
