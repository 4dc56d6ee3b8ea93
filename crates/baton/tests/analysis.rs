//! Canary analysis end to end with the real binary and the sample app: canary
//! analysis from the proxy's own per-version metrics (errors, latency, too little
//! traffic, an equal canary), A/B significance through `status --json`, a webhook gate
//! answering 500, and a failing rule on a real Prometheus server scraping baton.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/prerequisite.rs"]
mod prerequisite;

use baton_loadgen::{Load, LoadSpec};
use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty, Full};
use prerequisite::{prometheus_binary, run, tests, Test, PROMETHEUS};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn main() {
    run(tests![
        a_canary_with_errors_is_aborted_and_stable_users_see_no_failure,
        a_canary_with_added_latency_is_aborted_on_latency,
        an_equal_canary_passes_and_is_promoted,
        too_little_traffic_is_inconclusive_not_pass,
        ab_test_reports_a_clear_error_rate_difference_as_significant,
        ab_test_reports_no_difference_as_not_significant,
        a_webhook_answering_500_stops_the_rollout_at_that_gate,
        a_failing_prometheus_rule_aborts_the_canary[&PROMETHEUS],
        a_fair_baseline_takes_the_canarys_share_is_judged_against_and_is_stopped,
    ]);
}

/// The common app config with faults, canary steps and analysis (see
/// `common::analysis_app_config`).
fn config(strategy: &str, faults: &str, steps: &str, analysis: &str, more: &str) -> String {
    analysis_app_config(strategy, faults, steps, analysis) + more
}

/// Requests through the proxy, each counted by (version that answered, ok?): unlike
/// `baton-loadgen`, failures are attributed to the version that served them.
struct VersionLoad {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<BTreeMap<(String, bool), u64>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl VersionLoad {
    fn start(addr: SocketAddr, clients: usize) -> VersionLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(BTreeMap::new()));
        let tasks = (0..clients)
            .map(|_| {
                let (stop, seen) = (stop.clone(), seen.clone());
                tokio::spawn(async move {
                    let mut conn = None;
                    while !stop.load(Ordering::Relaxed) {
                        if conn.is_none() {
                            let Ok(tcp) = tokio::net::TcpStream::connect(addr).await else {
                                *seen
                                    .lock()
                                    .unwrap()
                                    .entry(("connect".into(), false))
                                    .or_default() += 1;
                                tokio::time::sleep(Duration::from_millis(20)).await;
                                continue;
                            };
                            let io = hyper_util::rt::TokioIo::new(tcp);
                            let Ok((send, c)) = hyper::client::conn::http1::handshake(io).await
                            else {
                                continue;
                            };
                            tokio::spawn(c);
                            conn = Some(send);
                        }
                        let Some(send) = conn.as_mut() else { continue };
                        let req = hyper::Request::get("/")
                            .header("host", "localhost")
                            .body(Empty::<Bytes>::new())
                            .unwrap();
                        let key = match send.send_request(req).await {
                            Ok(resp) => {
                                let ok = resp.status().is_success();
                                let v = resp
                                    .headers()
                                    .get("x-version")
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("?")
                                    .to_string();
                                let body_ok = resp.into_body().collect().await.is_ok();
                                (v, ok && body_ok)
                            }
                            Err(_) => {
                                conn = None;
                                ("reset".into(), false)
                            }
                        };
                        *seen.lock().unwrap().entry(key).or_default() += 1;
                        tokio::time::sleep(Duration::from_millis(4)).await;
                    }
                })
            })
            .collect();
        VersionLoad { stop, seen, tasks }
    }

    async fn stop(self) -> BTreeMap<(String, bool), u64> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        let seen = self.seen.lock().unwrap().clone();
        seen
    }
}

fn last_history(b: &Baton) -> Value {
    b.history().as_array().unwrap().last().cloned().unwrap()
}

/// Deploys `version`, expecting exit code `code`; returns stderr + stdout.
fn deploy(b: &Baton, version: &str, code: i32) -> String {
    let out = b.cli(&["deploy", "web", version]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        out.status.code(),
        Some(code),
        "deploy {version}: {text}\n{}",
        tail(&b.serve_log(), 60)
    );
    text
}

const LONG_STEPS: &str =
    r#"[{ weight = 20 }, { pause = "40s" }, { weight = 60 }, { pause = "40s" }]"#;

fn a_canary_with_errors_is_aborted_and_stable_users_see_no_failure() {
    let b = Baton::start(&config(
        "canary",
        "--error-rate-for-version v2=0.05",
        LONG_STEPS,
        "interval = \"1s\"\nmin_requests = 50\nmax_error_rate = 0.01",
        "",
    ));
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let rt = rt();
    let load = rt.block_on(async { VersionLoad::start(b.proxy, 4) });
    let out = deploy(&b, "v2", 1);
    let seen = rt.block_on(load.stop());
    assert!(out.contains("analysis failed"), "{out}");
    let h = last_history(&b);
    assert_eq!(h["outcome"], "failed");
    let reason = h["reason"].as_str().unwrap();
    assert!(reason.contains("error"), "{reason}");
    assert!(
        h["analysis"].as_str().unwrap().starts_with("fail:"),
        "{h:#}"
    );
    let count = |v: &str, ok: bool| seen.get(&(v.to_string(), ok)).copied().unwrap_or(0);
    assert!(count("v1", true) > 100, "{seen:?}");
    assert_eq!(count("v1", false), 0, "stable users saw failures: {seen:?}");
    for other in ["?", "reset", "connect"] {
        assert_eq!(count(other, false), 0, "{other}: {seen:?}");
    }
    let (bad, good) = (count("v2", false), count("v2", true));
    assert!(bad > 0, "the canary's injected errors were seen: {seen:?}");
    assert!(
        bad * 5 < good + bad,
        "only a few requests hit the failing canary before the abort: {seen:?}"
    );
    let st = b.status();
    assert_eq!(st["stable_version"], "v1");
}

fn a_canary_with_added_latency_is_aborted_on_latency() {
    let b = Baton::start(&config(
        "canary",
        "--latency-ms-for-version v2=50",
        LONG_STEPS,
        "interval = \"1s\"\nmin_requests = 30\nmax_latency_increase = \"20ms\"",
        "",
    ));
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let rt = rt();
    let load = rt.block_on(async { Load::start(LoadSpec::new(b.proxy)) });
    deploy(&b, "v2", 1);
    let report = rt.block_on(load.stop());
    assert_eq!(report.failed, 0, "{report:?}");
    let h = last_history(&b);
    assert_eq!(h["outcome"], "failed");
    let reason = h["reason"].as_str().unwrap();
    assert!(reason.contains("latency"), "{reason}");
    assert_eq!(b.status()["stable_version"], "v1");
}

fn an_equal_canary_passes_and_is_promoted() {
    let rt = rt();
    let h = rt.block_on(hooks());
    let b = Baton::start(&config(
        "canary",
        "",
        r#"[{ weight = 20 }, { pause = "2s" }, { weight = 60 }, { pause = "2s" }]"#,
        "interval = \"1s\"\nmin_requests = 30\nmax_error_rate = 0.01\nmax_latency_increase = \"20ms\"",
        &format!(
            "[apps.web.analysis.webhooks]\npre_promote = \"http://{a}/ok\"\npost_promote = \"http://{a}/fail\"\n",
            a = h.addr
        ),
    ));
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let load = rt.block_on(async { Load::start(LoadSpec::new(b.proxy)) });
    deploy(&b, "v2", 0);
    let report = rt.block_on(load.stop());
    assert_eq!(report.failed, 0, "{report:?}");
    let hist = last_history(&b);
    assert_eq!(hist["outcome"], "succeeded");
    let analysis = hist["analysis"].as_str().unwrap();
    assert!(analysis.starts_with("pass:"), "{analysis}");
    assert_eq!(b.status()["stable_version"], "v2");
    // pre_promote said go; post_promote answering 500 is reported, not undone.
    let deadline = Instant::now() + Duration::from_secs(10);
    // (The first deploy of v1 had its own post_promote call.)
    while h.calls.lock().unwrap().len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let calls: Vec<Value> = h
        .calls
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c["deployment"] == "web-2")
        .cloned()
        .collect();
    let gates: Vec<&str> = calls.iter().map(|c| c["gate"].as_str().unwrap()).collect();
    assert_eq!(gates, vec!["pre_promote", "post_promote"], "{calls:#?}");
    assert_eq!(calls[1]["outcome"], "succeeded");
    assert_eq!(b.status()["stable_version"], "v2");
}

fn too_little_traffic_is_inconclusive_not_pass() {
    let b = Baton::start(&config(
        "canary",
        "",
        r#"[{ weight = 20 }, { pause = "1s" }]"#,
        "interval = \"1s\"\nmin_requests = 1000\nprogress_deadline = \"3s\"",
        "",
    ));
    b.cli_ok(&["deploy", "web", "v1"], 0);
    // No load: the canary never gets the requests a verdict needs.
    let out = deploy(&b, "v2", 1);
    assert!(out.contains("progress_deadline"), "{out}");
    let h = last_history(&b);
    assert_eq!(h["outcome"], "failed");
    let analysis = h["analysis"].as_str().unwrap();
    assert!(analysis.starts_with("inconclusive:"), "{analysis}");
    assert!(analysis.contains("of 1000 requests"), "{analysis}");
    let st = b.status();
    assert_eq!(st["stable_version"], "v1", "never promoted");
    assert!(st["instances"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["version"] == "v1"));
}

/// Runs an ab_test of v2 against v1 under load until `ready` holds for its comparison.
fn ab_test(faults: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let b = Baton::start(&config(
        "ab_test",
        faults,
        LONG_STEPS,
        "interval = \"1s\"",
        "[apps.web.ab_test]\nweight = 50\n",
    ));
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let rt = rt();
    let load = rt.block_on(async { Load::start(LoadSpec::new(b.proxy)) });
    b.cli_ok(&["deploy", "web", "v2", "--detach"], 0);
    let deadline = Instant::now() + Duration::from_secs(40);
    let st = loop {
        let st = b.status();
        let c = &st["experiment"]["comparisons"][0];
        if !c.is_null() && ready(c) {
            break st;
        }
        assert!(Instant::now() < deadline, "no comparison: {st:#}");
        std::thread::sleep(Duration::from_millis(300));
    };
    let human = b.cli_ok(&["status", "web"], 0);
    assert!(human.contains("experiment (control v1"), "{human}");
    assert!(human.contains("v2 vs v1"), "{human}");
    b.cli_ok(&["promote", "web", "--to", "v1"], 0);
    rt.block_on(load.stop());
    st
}

fn ab_test_reports_a_clear_error_rate_difference_as_significant() {
    let st = ab_test("--error-rate-for-version v2=0.3", |c| {
        c["variant_stats"]["requests"].as_u64().unwrap_or(0) >= 200
    });
    let e = &st["experiment"];
    assert_eq!(e["control"], "v1");
    let c = &e["comparisons"][0];
    assert_eq!(c["variant"], "v2");
    assert_eq!(c["error_significant"], true, "{c:#}");
    assert!(c["errors"]["p_value"].as_f64().unwrap() < 0.001, "{c:#}");
    let ci = c["errors"]["diff_ci"].as_array().unwrap();
    assert!(ci[0].as_f64().unwrap() > 0.0, "the CI excludes 0: {c:#}");
    assert!(c["needed_per_variant"].is_null(), "{c:#}");
    let variants = e["variants"].as_array().unwrap();
    assert_eq!(variants.len(), 2);
    assert!(variants[1]["error_rate"].as_f64().unwrap() > 0.1, "{e:#}");
    for v in variants {
        for k in ["requests", "p50_ms", "p95_ms", "p99_ms"] {
            assert!(v[k].is_number(), "{k}: {v:#}");
        }
    }
}

fn ab_test_reports_no_difference_as_not_significant() {
    let st = ab_test("", |c| {
        c["variant_stats"]["requests"].as_u64().unwrap_or(0) >= 300
            && c["control_stats"]["requests"].as_u64().unwrap_or(0) >= 300
    });
    let c = &st["experiment"]["comparisons"][0];
    assert_eq!(c["error_significant"], false, "{c:#}");
    assert!(c["errors"]["p_value"].as_f64().unwrap() > 0.05, "{c:#}");
    let needed = c["needed_per_variant"].as_u64().unwrap();
    assert!(needed > 0, "a 1-point difference needs more data: {c:#}");
    assert_eq!(c["mde_error_rate"], 0.01);
}

/// A tiny HTTP server answering POSTs: 500 on paths containing "fail", 200 otherwise,
/// recording each call's JSON body.
struct Hooks {
    addr: SocketAddr,
    calls: Arc<Mutex<Vec<Value>>>,
}

async fn hooks() -> Hooks {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let c = calls.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let c = c.clone();
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let c = c.clone();
                    async move {
                        let fail = req.uri().path().contains("fail");
                        let body = req.into_body().collect().await.map(|b| b.to_bytes());
                        let json: Value = body
                            .ok()
                            .and_then(|b| serde_json::from_slice(&b).ok())
                            .unwrap_or(Value::Null);
                        c.lock().unwrap().push(json);
                        let status = if fail { 500 } else { 200 };
                        hyper::Response::builder()
                            .status(status)
                            .body(Full::new(Bytes::from_static(b"checked\n")))
                    }
                });
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(tcp);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, svc)
                    .await;
            });
        }
    });
    Hooks { addr, calls }
}

fn a_webhook_answering_500_stops_the_rollout_at_that_gate() {
    let rt = rt();
    let h = rt.block_on(hooks());
    let b = Baton::start(&config(
        "canary",
        "",
        LONG_STEPS,
        "interval = \"1s\"\nmin_requests = 10",
        &format!(
            "[apps.web.analysis.webhooks]\npre_rollout = \"http://{a}/ok\"\nstep = \"http://{a}/fail\"\nrollback = \"http://{a}/notify\"\n",
            a = h.addr
        ),
    ));
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let load = rt.block_on(async { Load::start(LoadSpec::new(b.proxy)) });
    let out = deploy(&b, "v2", 1);
    let report = rt.block_on(load.stop());
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(
        report.by_version.get("v2"),
        None,
        "v2 never served: {report:?}"
    );
    assert!(out.contains("step gate"), "{out}");
    assert!(
        out.contains(&format!("http://{}/fail answered 500", h.addr)),
        "{out}"
    );
    let hist = last_history(&b);
    assert_eq!(hist["outcome"], "failed");
    // The rollback notification follows the finish; wait for it (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.calls.lock().unwrap().len() < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let all = h.calls.lock().unwrap().clone();
    // The first deploy (of v1) passed its own pre_rollout gate.
    assert_eq!(all[0]["gate"], "pre_rollout");
    assert_eq!(all[0]["to_version"], "v1");
    let calls: Vec<Value> = all
        .into_iter()
        .filter(|c| c["deployment"] == "web-2")
        .collect();
    let gates: Vec<&str> = calls.iter().map(|c| c["gate"].as_str().unwrap()).collect();
    assert_eq!(gates, vec!["pre_rollout", "step", "rollback"], "{calls:#?}");
    assert_eq!(calls[1]["step"], 1);
    assert_eq!(calls[1]["weight"], 20);
    assert_eq!(calls[1]["from_version"], "v1");
    assert_eq!(calls[1]["to_version"], "v2");
    assert_eq!(calls[2]["outcome"], "failed");
    let st = b.status();
    assert!(st["instances"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["version"] == "v1"));
}

// --- a real Prometheus ---

/// Relays TCP connections to baton's admin socket so Prometheus can scrape `/metrics`
/// (the test config serves the admin API on a Unix socket only).
async fn relay(socket: std::path::PathBuf) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            let socket = socket.clone();
            tokio::spawn(async move {
                if let Ok(mut unix) = tokio::net::UnixStream::connect(&socket).await {
                    let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
                }
            });
        }
    });
    addr
}

/// The Prometheus server process, killed on drop.
struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .ok()?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .ok()?;
    let resp = send.send_request(req).await.ok()?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

fn a_failing_prometheus_rule_aborts_the_canary() {
    // The harness checked it is there (PROMETHEUS) before this test started.
    let bin = prometheus_binary().unwrap();
    let rt = rt();
    let prom_port = common::free_port();
    let prom_addr: SocketAddr = format!("127.0.0.1:{prom_port}").parse().unwrap();
    let query = r#"sum(baton_requests_total{app="{app}",version="{version}",class="5xx"})"#;
    let b = Baton::start(&config(
        "canary",
        "--error-rate-for-version v2=0.05",
        LONG_STEPS,
        // No error-rate limit for the judge: only the Prometheus rule can fail it.
        "interval = \"1s\"\nmin_requests = 20",
        &format!(
            "[[apps.web.analysis.prometheus]]\nname = \"canary_5xx\"\nurl = \"http://{prom_addr}\"\nquery = '{query}'\nmax = 0\n"
        ),
    ));
    let target = rt.block_on(relay(b.dir.path().join("baton.sock")));
    let dir = b.dir.path().join("prometheus");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: baton\n    metrics_path: /metrics\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let _prom = Prometheus(
        Command::new(bin)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={prom_addr}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    // Ready, and already scraping baton.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let up = rt.block_on(http_get(prom_addr, "/api/v1/query?query=up"));
        if up.is_some_and(|(s, body)| s == 200 && body.contains("\"1\"")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus did not scrape baton: {}",
            std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let load = rt.block_on(async { VersionLoad::start(b.proxy, 4) });
    let out = deploy(&b, "v2", 1);
    let seen = rt.block_on(load.stop());
    assert!(out.contains("prometheus check canary_5xx"), "{out}");
    assert_eq!(
        seen.get(&("v1".to_string(), false)),
        None,
        "stable users saw failures: {seen:?}"
    );
    let h = last_history(&b);
    assert_eq!(h["outcome"], "failed");
    assert!(h["reason"].as_str().unwrap().contains("> max 0"), "{h:#}");
}

fn a_fair_baseline_takes_the_canarys_share_is_judged_against_and_is_stopped() {
    let b = Baton::start(&config(
        "canary",
        "",
        LONG_STEPS,
        "interval = \"1s\"\nmin_requests = 30\nmax_error_rate = 0.01\nbaseline = true",
        "",
    ));
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let rt = rt();
    let load = rt.block_on(async { Load::start(LoadSpec::new(b.proxy)) });
    b.cli_ok(&["deploy", "web", "v2", "--detach"], 0);
    let st = b.wait_status("the baseline routed beside the canary", |st| {
        st["weights"]["v1.baseline"].as_u64() == Some(20)
    });
    assert_eq!(st["weights"]["v2"], 20, "{st:#}");
    assert_eq!(st["weights"]["v1"], 60, "{st:#}");
    let v1 = |st: &Value| {
        st["instances"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["version"] == "v1")
            .count()
    };
    assert_eq!(v1(&st), 3, "2 stable + 1 baseline: {st:#}");
    // A verdict judged against the baseline, then finish.
    b.wait_status("a passing verdict", |st| {
        st["deployment"]["verdict"]["verdict"] == "pass"
    });
    b.cli_ok(&["promote", "web"], 0);
    let st = b.wait_status("finished", finished);
    let report = rt.block_on(load.stop());
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(state(&st), "succeeded");
    let h = last_history(&b);
    let analysis = h["analysis"].as_str().unwrap_or("");
    assert!(analysis.contains("against v1.baseline"), "{h:#}");
    let st = b.wait_status("the baseline stopped", |st| {
        st["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["version"] == "v2")
    });
    assert_eq!(st["instances"].as_array().unwrap().len(), 2);
}
