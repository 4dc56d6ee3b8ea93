//! Control-plane scale: how long publishing a 10,000-app route table
//! takes, and what request latency looks like while publishes run back to back.
//!
//! `cargo bench -p baton-proxy --bench publish_scale [-- --apps N --seconds S --json PATH]`
//!
//! Prints one JSON object (and writes it to `--json PATH` if given). Times are
//! medians / p99 over many publishes, in microseconds; latencies in milliseconds.
//! Not a test: nothing here asserts a time.

use baton_core::{AppRouteSpec, BackendSpec, RouteSpec, RouteTableSpec};
use baton_metrics::MetricsRegistry;
use baton_proxy::{Proxy, ProxyConfig};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    apps: usize,
    seconds: f64,
    json: Option<String>,
}

fn args() -> Result<Args, BoxError> {
    let mut a = Args {
        apps: 10_000,
        seconds: 3.0,
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--apps" => a.apps = it.next().ok_or("--apps needs a number")?.parse()?,
            "--seconds" => a.seconds = it.next().ok_or("--seconds needs a number")?.parse()?,
            "--json" => a.json = Some(it.next().ok_or("--json needs a path")?),
            _ => {} // cargo bench passes `--bench`
        }
    }
    Ok(a)
}

fn app_spec(i: usize, addr: SocketAddr, weight: u32) -> AppRouteSpec {
    let backends = (0..2)
        .map(|b| BackendSpec {
            id: format!("app{i}-b{b}"),
            addr,
        })
        .collect();
    let mut spec = AppRouteSpec::single("v1", backends);
    spec.pools[0].weight = weight;
    spec
}

fn table(apps: usize, addr: SocketAddr) -> RouteTableSpec {
    let mut t = RouteTableSpec::default();
    for i in 0..apps {
        let name = format!("app{i}");
        t.routes.push(RouteSpec {
            host: Some(format!("{name}.example.com")),
            path_prefix: "/".into(),
            app: name.clone(),
        });
        t.apps.insert(name, app_spec(i, addr, 100));
    }
    t
}

/// Median and p99 of `n` runs of `f`, in microseconds.
fn time_it(n: usize, mut f: impl FnMut(usize) -> Result<(), BoxError>) -> Result<Stats, BoxError> {
    let mut us = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        f(i)?;
        us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok(Stats::of(us))
}

struct Stats {
    p50: f64,
    p99: f64,
    p999: f64,
    n: usize,
}

impl Stats {
    fn of(mut v: Vec<f64>) -> Stats {
        v.sort_by(f64::total_cmp);
        let q = |p: f64| {
            v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
                .copied()
                .unwrap_or(f64::NAN)
        };
        Stats {
            p50: q(0.5),
            p99: q(0.99),
            p999: q(0.999),
            n: v.len(),
        }
    }

    fn json(&self, unit: &str) -> String {
        format!(
            "{{\"p50_{unit}\": {:.3}, \"p99_{unit}\": {:.3}, \"p99_9_{unit}\": {:.3}, \"n\": {}}}",
            self.p50, self.p99, self.p999, self.n
        )
    }
}

/// Sequential keep-alive GETs to one app for `seconds`; latency of each, in ms.
async fn load(proxy: SocketAddr, host: &str, seconds: f64) -> Result<Vec<f64>, BoxError> {
    let stream = tokio::net::TcpStream::connect(proxy).await?;
    stream.set_nodelay(true)?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut lat = Vec::new();
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    while Instant::now() < end {
        let req = http::Request::get("/")
            .header("host", host)
            .body(Empty::<Bytes>::new())?;
        let t = Instant::now();
        let resp = send.send_request(req).await?;
        let status = resp.status();
        resp.into_body().collect().await?;
        if !status.is_success() {
            return Err(format!("request answered {status}").into());
        }
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(lat)
}

fn main() -> Result<(), BoxError> {
    let a = args()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    // One real backend; every app's two backends point at it (ids differ).
    let backend = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let opts = sample_app::SampleOptions {
            port: 0,
            host: addr.ip(),
            app_version: "v1".into(),
            instance: Some("bench".into()),
            startup_delay_ms: 0,
            error_rate: 0.0,
            latency_ms: 0,
            fail_health: false,
            exit_after_ms: None,
            idle_timeout_ms: None,
            db: None,
        };
        tokio::spawn(
            async move { sample_app::run(opts, listener, std::future::pending::<()>()).await },
        );
        Ok::<_, BoxError>(addr)
    })?;
    let proxy = Proxy::new(ProxyConfig::default(), Arc::new(MetricsRegistry::new()));
    let full = table(a.apps, backend);

    let t = Instant::now();
    proxy.publish(&full)?;
    let first_ms = t.elapsed().as_secs_f64() * 1e3;

    let n = 200;
    let unchanged = time_it(n, |_| Ok(proxy.publish(&full)?))?;
    let mut changing = full.clone();
    let one_changed_full = time_it(n, |i| {
        if let Some(app) = changing.apps.get_mut("app5") {
            app.pools[0].weight = 100 - (i % 2) as u32;
        }
        Ok(proxy.publish(&changing)?)
    })?;
    proxy.publish(&full)?;
    let n_app = 2000;
    let one_app = time_it(n_app, |i| {
        Ok(proxy.publish_app("app5", Some(&app_spec(5, backend, 100 - (i % 2) as u32)))?)
    })?;
    let new_backends = time_it(n_app, |i| {
        let mut spec = app_spec(5, backend, 100);
        spec.pools[0].backends[1].id = format!("app5-b1-{}", i % 2);
        Ok(proxy.publish_app("app5", Some(&spec))?)
    })?;
    // Adding / removing an app shifts the route targets past it; the router is kept.
    let add_remove = time_it(40, |i| {
        if i % 2 == 0 {
            Ok(proxy.publish_app("zz-extra", Some(&app_spec(a.apps, backend, 100)))?)
        } else {
            Ok(proxy.publish_app("zz-extra", None)?)
        }
    })?;

    // Latency while publishing continuously (one app's weight flips; it is the app the
    // requests go to, so each request meets a fresh snapshot).
    let addr = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let p = proxy.clone();
        tokio::spawn(async move { p.serve(listener, std::future::pending::<()>()).await });
        Ok::<_, BoxError>(addr)
    })?;
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let host = "app5.example.com";
    client.block_on(load(addr, host, 0.5))?; // warm up
    let quiet = Stats::of(client.block_on(load(addr, host, a.seconds))?);
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let publisher = {
        let (proxy, stop, count) = (proxy.clone(), stop.clone(), count.clone());
        std::thread::spawn(move || -> Result<(), String> {
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let spec = app_spec(5, backend, 100 - i % 2);
                proxy
                    .publish_app("app5", Some(&spec))
                    .map_err(|e| e.to_string())?;
                count.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })
    };
    let t = Instant::now();
    let busy = client.block_on(load(addr, host, a.seconds));
    stop.store(true, Ordering::Relaxed);
    let publishes = count.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64();
    publisher
        .join()
        .map_err(|_| "publisher thread panicked")??;
    let busy = Stats::of(busy?);

    let out = format!(
        "{{\"apps\": {}, \"first_publish_ms\": {first_ms:.3}, \
         \"publish_unchanged\": {}, \"publish_full_one_app_changed\": {}, \
         \"publish_app_weight_changed\": {}, \"publish_app_backends_changed\": {}, \
         \"publish_app_add_or_remove\": {}, \
         \"latency_quiet\": {}, \"latency_while_publishing\": {}, \
         \"publishes_per_s_during_load\": {publishes:.0}}}",
        a.apps,
        unchanged.json("us"),
        one_changed_full.json("us"),
        one_app.json("us"),
        new_backends.json("us"),
        add_remove.json("us"),
        quiet.json("ms"),
        busy.json("ms"),
    );
    println!("{out}");
    if let Some(path) = a.json {
        std::fs::write(&path, format!("{out}\n"))?;
    }
    Ok(())
}
