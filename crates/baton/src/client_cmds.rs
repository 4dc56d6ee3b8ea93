//! Client commands: each is one or two admin API calls plus human or `--json` output.

use crate::{Cmd, Failure};
use baton_api::client::{AdminAddr, AdminClient, ClientError};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

pub struct Ctx {
    client: AdminClient,
    json: bool,
}

impl Ctx {
    pub fn new(
        config: &Path,
        admin: Option<&str>,
        token_file: Option<&Path>,
        json: bool,
    ) -> Result<Ctx, Failure> {
        let read_token = |f: &Path| {
            std::fs::read_to_string(f)
                .map(|t| t.trim().to_string())
                .map_err(|e| {
                    Failure::usage(format!("cannot read token file {} ({e})", f.display()))
                })
        };
        let (addr, token) = match admin {
            Some(a) => {
                let addr = match a.strip_prefix("unix:") {
                    Some(p) => AdminAddr::Unix(p.into()),
                    None => AdminAddr::Tcp(a.to_string()),
                };
                (addr, token_file.map(read_token).transpose()?)
            }
            None => {
                let cfg = crate::serve::load_config(config)?;
                let addr = match &cfg.admin.listen {
                    baton_config::AdminListen::Unix(p) => AdminAddr::Unix(p.clone()),
                    baton_config::AdminListen::Tcp(a) => AdminAddr::Tcp(a.to_string()),
                };
                let tf = token_file
                    .map(Path::to_path_buf)
                    .or(cfg.admin.token_file.clone());
                (addr, tf.as_deref().map(read_token).transpose()?)
            }
        };
        Ok(Ctx {
            client: AdminClient::new(addr, token),
            json,
        })
    }

    fn print(&self, v: &Value, human: impl FnOnce(&Value) -> String) {
        if self.json {
            println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        } else {
            print!("{}", human(v));
        }
    }
}

fn api(e: ClientError) -> Failure {
    Failure::failed(e.to_string())
}

pub fn validate(config: &Path, json: bool) -> Result<(), Failure> {
    let cfg = crate::serve::load_config(config)?;
    if json {
        let apps: Vec<&String> = cfg.apps.keys().collect();
        println!("{}", json!({"valid": true, "path": cfg.path, "apps": apps}));
    } else {
        println!(
            "{}: ok ({} app(s): {})",
            cfg.path.display(),
            cfg.apps.len(),
            cfg.apps.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}

pub async fn dispatch(ctx: &Ctx, cmd: Cmd) -> Result<(), Failure> {
    let c = &ctx.client;
    match cmd {
        Cmd::Deploy {
            app,
            version,
            strategy,
            targets,
            detach,
        } => {
            let body = json!({"version": version, "strategy": strategy, "targets": targets});
            let r = c
                .post(&format!("/v1/apps/{app}/deployments"), body)
                .await
                .map_err(api)?;
            let id = r["id"].as_str().unwrap_or_default().to_string();
            if detach {
                ctx.print(&r, |_| format!("started deployment {id}\n"));
                return Ok(());
            }
            follow(ctx, &app, &id).await
        }
        Cmd::Status { app: Some(app) } => {
            let s = c.get(&format!("/v1/apps/{app}")).await.map_err(api)?;
            ctx.print(&s, human_status);
            Ok(())
        }
        Cmd::Status { app: None } => {
            let all = c.get("/v1/apps").await.map_err(api)?;
            ctx.print(&all, |v| {
                v.as_array()
                    .map(|a| a.iter().map(human_status).collect::<Vec<_>>().join("\n"))
                    .unwrap_or_default()
            });
            Ok(())
        }
        Cmd::Promote { app, to } => op(ctx, &app, "promote", json!({"to": to})).await,
        Cmd::Abort { app } => op(ctx, &app, "abort", json!({})).await,
        Cmd::Pause { app } => op(ctx, &app, "pause", json!({})).await,
        Cmd::Resume { app } => op(ctx, &app, "resume", json!({})).await,
        Cmd::Rollback { app } => op(ctx, &app, "rollback", json!({})).await,
        Cmd::History { app, limit } => {
            let h = c
                .get(&format!("/v1/apps/{app}/history?limit={limit}"))
                .await
                .map_err(api)?;
            ctx.print(&h, human_history);
            Ok(())
        }
        Cmd::Logs {
            app,
            version,
            lines,
        } => {
            let mut path = format!("/v1/apps/{app}/logs?lines={lines}");
            if let Some(v) = version {
                path.push_str(&format!("&version={v}"));
            }
            let l = c.get(&path).await.map_err(api)?;
            ctx.print(&l, |v| {
                let mut out = String::new();
                for inst in v.as_array().into_iter().flatten() {
                    out.push_str(&format!(
                        "==> {} ({}) <==\n",
                        s(&inst["instance"]),
                        s(&inst["version"])
                    ));
                    for line in inst["lines"].as_array().into_iter().flatten() {
                        out.push_str(&format!("{}\n", s(line)));
                    }
                }
                out
            });
            Ok(())
        }
        Cmd::Plan {
            app,
            version,
            strategy,
        } => {
            let mut path = format!("/v1/apps/{app}/plan?version={version}");
            if let Some(st) = strategy {
                path.push_str(&format!("&strategy={st}"));
            }
            let p = c.get(&path).await.map_err(api)?;
            ctx.print(&p, human_plan);
            Ok(())
        }
        Cmd::Upgrade { timeout } => crate::upgrade::command(c, timeout.as_deref(), ctx.json).await,
        Cmd::Serve { .. }
        | Cmd::Validate
        | Cmd::Demo { .. }
        | Cmd::SampleApp { .. }
        | Cmd::Import { .. } => Ok(()),
    }
}

async fn op(ctx: &Ctx, app: &str, what: &str, body: Value) -> Result<(), Failure> {
    let st = ctx
        .client
        .post(&format!("/v1/apps/{app}/{what}"), body)
        .await
        .map_err(api)?;
    ctx.print(&st, human_status);
    Ok(())
}

/// Follows a deployment until it ends, printing each change; exit 0 only on success.
async fn follow(ctx: &Ctx, app: &str, id: &str) -> Result<(), Failure> {
    let mut last = String::new();
    let mut misses = 0;
    loop {
        let st = match ctx.client.get(&format!("/v1/apps/{app}")).await {
            Ok(s) => {
                misses = 0;
                s
            }
            Err(e) => {
                misses += 1;
                if misses > 20 {
                    return Err(api(e));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let d = &st["deployment"];
        if d["id"].as_str() == Some(id) {
            let line = progress_line(&st);
            if line != last && !ctx.json {
                println!("{line}");
                last = line;
            }
            // Done when finished (history has the record, a rollback has completed);
            // a successful blue/green is done at the switch (blue stays warm on purpose).
            let finished = !d["finished_at"].is_null();
            match d["state"].as_str() {
                Some("succeeded") if finished || d["strategy"] == "blue_green" => {
                    if ctx.json {
                        println!("{}", serde_json::to_string_pretty(&st).unwrap_or_default());
                    } else {
                        println!(
                            "deployment {id} succeeded: {app} now serves {}",
                            s(&d["version"])
                        );
                    }
                    return Ok(());
                }
                Some(state @ ("failed" | "aborted")) if finished => {
                    if ctx.json {
                        println!("{}", serde_json::to_string_pretty(&st).unwrap_or_default());
                    }
                    return Err(Failure::failed(format!(
                        "deployment {id} {state}: {}; {app} serves {}",
                        d["reason"].as_str().unwrap_or("no reason recorded"),
                        st["stable_version"].as_str().unwrap_or("nothing")
                    )));
                }
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn weights(st: &Value) -> String {
    st["weights"]
        .as_object()
        .map(|w| {
            w.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn progress_line(st: &Value) -> String {
    let d = &st["deployment"];
    let inst = st["instances"].as_array().cloned().unwrap_or_default();
    let healthy = inst
        .iter()
        .filter(|i| i["healthy"] == Value::Bool(true))
        .count();
    let traffic: Vec<String> = st["traffic"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            format!(
                "{} {:.0} req/s {:.1}% err",
                s(&t["version"]),
                t["rps"].as_f64().unwrap_or(0.0),
                t["error_rate"].as_f64().unwrap_or(0.0) * 100.0
            )
        })
        .collect();
    format!(
        "[{}] {} | weights {} | healthy {}/{} | {}",
        s(&d["state"]),
        s(&d["step"]),
        weights(st),
        healthy,
        inst.len(),
        traffic.join(", ")
    )
}

fn human_status(st: &Value) -> String {
    let mut out = format!(
        "app {}: stable {} (previous {})\n  weights: {}\n",
        s(&st["app"]),
        s(&st["stable_version"]),
        s(&st["previous_version"]),
        weights(st)
    );
    let d = &st["deployment"];
    if !d.is_null() {
        out.push_str(&format!(
            "  deployment {} ({} → {} by {}): {} — {}{}\n",
            s(&d["id"]),
            s(&d["from_version"]),
            s(&d["version"]),
            s(&d["strategy"]),
            s(&d["state"]),
            s(&d["step"]),
            d["reason"]
                .as_str()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ));
    }
    for i in st["instances"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {:<16} {:<10} {:<22} {}  in-flight {}\n",
            s(&i["id"]),
            s(&i["version"]),
            s(&i["address"]),
            if i["healthy"] == Value::Bool(true) {
                "healthy  "
            } else {
                "unhealthy"
            },
            s(&i["in_flight"])
        ));
    }
    for t in st["traffic"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  traffic {}: {:.1} req/s, {:.2}% errors, p50 {:.1} ms, p99 {:.1} ms\n",
            s(&t["version"]),
            t["rps"].as_f64().unwrap_or(0.0),
            t["error_rate"].as_f64().unwrap_or(0.0) * 100.0,
            t["p50_ms"].as_f64().unwrap_or(0.0),
            t["p99_ms"].as_f64().unwrap_or(0.0)
        ));
    }
    out.push_str(&human_experiment(&st["experiment"]));
    out
}

/// The A/B experiment: each variant's figures, then each variant against the control.
fn human_experiment(e: &Value) -> String {
    if e.is_null() {
        return String::new();
    }
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    let mut out = format!(
        "  experiment (control {}, {:.0}% confidence):\n",
        s(&e["control"]),
        f(&e["confidence"]) * 100.0
    );
    for v in e["variants"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "    {:<12} {:>8} req  {:>6.2}% err  p50 {:.1} ms  p95 {:.1} ms  p99 {:.1} ms\n",
            s(&v["version"]),
            s(&v["requests"]),
            f(&v["error_rate"]) * 100.0,
            f(&v["p50_ms"]),
            f(&v["p95_ms"]),
            f(&v["p99_ms"])
        ));
    }
    for c in e["comparisons"].as_array().into_iter().flatten() {
        let (er, lat) = (&c["errors"], &c["latency"]);
        let yes = |b: &Value| {
            if b == &Value::Bool(true) {
                "significant"
            } else {
                "not significant"
            }
        };
        let ci = |v: &Value, scale: f64| match v.as_array().map(|a| a.as_slice()) {
            Some([lo, hi]) => format!("[{:+.2}, {:+.2}]", f(lo) * scale, f(hi) * scale),
            _ => "-".into(),
        };
        out.push_str(&format!(
            "    {} vs {}: error rate {:+.2} pts {} (p={:.4}, CI {} pts); latency shift {:+.2} ms {} (p={:.4}, CI {} ms)\n",
            s(&c["variant"]),
            s(&c["control"]),
            f(&er["diff"]) * 100.0,
            yes(&c["error_significant"]),
            f(&er["p_value"]),
            ci(&er["diff_ci"], 100.0),
            f(&lat["shift_us"]) / 1000.0,
            yes(&c["latency_significant"]),
            f(&lat["p_value"]),
            ci(&lat["shift_ci_us"], 0.001),
        ));
        if let Some(n) = c["needed_per_variant"].as_u64() {
            out.push_str(&format!(
                "    {} more requests per variant to detect a {:.1}-point error-rate difference\n",
                n,
                f(&c["mde_error_rate"]) * 100.0
            ));
        }
    }
    out
}

fn human_history(h: &Value) -> String {
    let mut out = String::new();
    for e in h.as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<10} {} → {:<8} {:<10} {:<11} {:>7.1}s  {}\n",
            s(&e["id"]),
            s(&e["from_version"]),
            s(&e["to_version"]),
            s(&e["strategy"]),
            s(&e["outcome"]),
            e["duration_ms"].as_f64().unwrap_or(0.0) / 1000.0,
            e["reason"].as_str().unwrap_or("")
        ));
    }
    if out.is_empty() {
        out.push_str("no deployments yet\n");
    }
    out
}

fn human_plan(p: &Value) -> String {
    let mut out = format!(
        "plan: {} {} → {} by {}\n",
        s(&p["app"]),
        s(&p["from_version"]),
        s(&p["to_version"]),
        s(&p["strategy"])
    );
    for (i, step) in p["steps"].as_array().into_iter().flatten().enumerate() {
        out.push_str(&format!("  {}. {}\n", i + 1, s(step)));
    }
    out.push_str(&format!(
        "peak instances: {} ({} extra)\n",
        s(&p["peak_instances"]),
        s(&p["extra_instances"])
    ));
    let mib = |v: &Value| {
        v.as_u64()
            .map(|b| format!("{} MiB", b >> 20))
            .unwrap_or_else(|| "unknown".into())
    };
    out.push_str(&format!(
        "memory: ~{} per instance, ~{} extra at peak, {} available\n",
        mib(&p["rss_per_instance_bytes"]),
        mib(&p["extra_memory_bytes"]),
        mib(&p["available_memory_bytes"])
    ));
    if let Some(w) = p["warning"].as_str() {
        out.push_str(&format!("WARNING: {w}\n"));
    }
    out
}
