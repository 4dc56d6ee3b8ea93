//! Client commands: each is one or two admin API calls plus human or `--json` output.

use crate::{Cmd, Failure};
use baton_api::client::{Action, AdminAddr, AdminClient, ClientError};
use baton_api::types::{
    AppStatus, DeployRequest, DeploymentStatus, HistoryEntry, InstanceLogs, PlanReport,
};
use baton_rollout::{Outcome, State};
use serde::Serialize;
use serde_json::json;
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

    pub fn client(&self) -> &AdminClient {
        &self.client
    }

    /// `--json`: the answer as JSON; otherwise its human form.
    pub fn print<T: Serialize>(&self, v: &T, human: impl FnOnce(&T) -> String) {
        if self.json {
            println!("{}", pretty(v));
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
    // The certificate files are read as `serve` reads them: a key that does not match,
    // an unreadable file, a host on a file and on ACME are found before a restart.
    let files = crate::tls::TlsFiles::of(&cfg);
    if !files.certificates.is_empty() {
        let (table, _) = files.load().map_err(Failure::usage)?;
        files
            .check_overlap(&table, &crate::tls::acme_name_sets(&cfg))
            .map_err(Failure::usage)?;
    }
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
            irreversible,
        } => {
            let req = DeployRequest {
                version,
                strategy,
                targets,
                irreversible,
            };
            let created = c.deploy(&app, &req).await.map_err(api)?;
            if detach {
                ctx.print(&created, |d| format!("started deployment {}\n", d.id));
                return Ok(());
            }
            follow(ctx, &app, &created.id).await
        }
        Cmd::Status { app: Some(app) } => {
            let st = c.status(&app).await.map_err(api)?;
            ctx.print(&st, human_status);
            Ok(())
        }
        Cmd::Status { app: None } => {
            let all = c.apps().await.map_err(api)?;
            // The proxies on other nodes, when there are any (`[cluster]`).
            let proxies = c.cluster_proxies().await.unwrap_or_default();
            ctx.print(&all, |all| {
                if all.is_empty() {
                    return "no apps in this config\n".into();
                }
                let mut out = all.iter().map(human_status).collect::<Vec<_>>().join("\n");
                out.push_str(&human_proxies(&proxies));
                out
            });
            Ok(())
        }
        Cmd::Promote { app, to } => {
            let st = c.promote(&app, to).await.map_err(api)?;
            ctx.print(&st, human_status);
            Ok(())
        }
        Cmd::Abort { app, force } => op(ctx, &app, Action::Abort { force }).await,
        Cmd::Pause { app } => op(ctx, &app, Action::Pause).await,
        Cmd::Resume { app } => op(ctx, &app, Action::Resume).await,
        Cmd::Rollback { app, force } => op(ctx, &app, Action::Rollback { force }).await,
        Cmd::History { app, limit } => {
            let h = c.history(&app, limit).await.map_err(api)?;
            ctx.print(&h, |h| human_history(h));
            Ok(())
        }
        Cmd::Logs {
            app,
            version,
            lines,
        } => {
            let l = c.logs(&app, version.as_deref(), lines).await.map_err(api)?;
            ctx.print(&l, |l| human_logs(l));
            Ok(())
        }
        Cmd::Plan {
            app,
            version,
            strategy,
        } => {
            let p = c
                .plan(&app, &version, strategy.as_deref())
                .await
                .map_err(api)?;
            ctx.print(&p, human_plan);
            Ok(())
        }
        Cmd::Upgrade { timeout } => crate::upgrade::command(c, timeout.as_deref(), ctx.json).await,
        Cmd::Reload { dry_run } => crate::reload::command(ctx, dry_run).await,
        Cmd::Serve { .. }
        | Cmd::Proxy
        | Cmd::Validate
        | Cmd::Demo { .. }
        | Cmd::SampleApp { .. }
        | Cmd::Import { .. } => Ok(()),
    }
}

async fn op(ctx: &Ctx, app: &str, action: Action) -> Result<(), Failure> {
    let st = ctx.client.operate(app, action).await.map_err(api)?;
    ctx.print(&st, human_status);
    Ok(())
}

/// Pretty JSON of an answer, keys in the order the server's JSON objects print in.
pub(crate) fn pretty<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_default()
}

/// Follows a deployment until it ends, printing each change; exit 0 only on success.
async fn follow(ctx: &Ctx, app: &str, id: &str) -> Result<(), Failure> {
    let mut last = String::new();
    let mut misses = 0;
    loop {
        let st = match ctx.client.status(app).await {
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
        if let Some(d) = st.deployment.as_ref().filter(|d| d.id == id) {
            let line = progress_line(&st, d);
            if line != last && !ctx.json {
                println!("{line}");
                last = line;
            }
            // Done when finished (history has the record; a blue/green deployment
            // finishes at its switch, with the previous version kept warm).
            let finished = d.finished_at.is_some();
            match d.state {
                State::Succeeded if finished => {
                    if ctx.json {
                        println!("{}", pretty(&st));
                    } else {
                        println!("deployment {id} succeeded: {app} now serves {}", d.version);
                    }
                    return Ok(());
                }
                State::Failed | State::Aborted if finished => {
                    if ctx.json {
                        println!("{}", pretty(&st));
                    }
                    return Err(Failure::failed(format!(
                        "deployment {id} {}: {}; {app} serves {}",
                        state_name(d.state),
                        d.reason.as_deref().unwrap_or("no reason recorded"),
                        st.stable_version.as_deref().unwrap_or("nothing")
                    )));
                }
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// How `status --json` names a state.
fn state_name(s: State) -> &'static str {
    match s {
        State::Running => "running",
        State::Paused => "paused",
        State::Succeeded => "succeeded",
        State::Failed => "failed",
        State::Aborted => "aborted",
    }
}

/// How `history --json` names an outcome.
fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Succeeded => "succeeded",
        Outcome::Failed => "failed",
        Outcome::Aborted => "aborted",
        Outcome::RolledBack => "rolled_back",
    }
}

/// An optional value, `-` when absent.
fn or_dash(v: Option<&str>) -> &str {
    v.unwrap_or("-")
}

fn weights(st: &AppStatus) -> String {
    st.weights
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn progress_line(st: &AppStatus, d: &DeploymentStatus) -> String {
    let healthy = st.instances.iter().filter(|i| i.healthy).count();
    let traffic: Vec<String> = st
        .traffic
        .iter()
        .map(|t| {
            format!(
                "{} {:.0} req/s {:.1}% err",
                t.version,
                t.rps,
                t.error_rate * 100.0
            )
        })
        .collect();
    format!(
        "[{}] {} | weights {} | healthy {}/{} | {}",
        state_name(d.state),
        d.step,
        weights(st),
        healthy,
        st.instances.len(),
        traffic.join(", ")
    )
}

fn human_status(st: &AppStatus) -> String {
    let mut out = format!(
        "app {}: stable {} (previous {})\n  weights: {}\n",
        st.app,
        or_dash(st.stable_version.as_deref()),
        or_dash(st.previous_version.as_deref()),
        weights(st)
    );
    if let Some(d) = &st.deployment {
        out.push_str(&format!(
            "  deployment {} ({} → {} by {}): {} — {}{}\n",
            d.id,
            or_dash(d.from_version.as_deref()),
            d.version,
            d.strategy,
            state_name(d.state),
            d.step,
            d.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ));
        if let Some(why) = &d.frozen {
            out.push_str(&format!("  FROZEN: {why}\n"));
        } else if d.irreversible && d.finished_at.is_none() {
            out.push_str("  irreversible: an automatic rollback freezes this deployment instead\n");
        }
        for h in &d.hooks {
            out.push_str(&format!(
                "  {} hook: {} (attempt {}{})\n",
                h.hook,
                format!("{:?}", h.state).to_lowercase(),
                h.attempts,
                h.result
                    .as_deref()
                    .map(|r| format!(", {r}"))
                    .unwrap_or_default()
            ));
        }
    }
    if let Some(w) = &st.warm {
        let left = w.until.since(baton_core::Millis::now()).as_secs();
        out.push_str(&format!(
            "  warm: {} ({} instance{}, out of routing) for {left}s more: `baton rollback {}` or `baton deploy {} {}` switches back at once\n",
            w.version,
            w.instances.len(),
            if w.instances.len() == 1 { "" } else { "s" },
            st.app,
            st.app,
            w.version
        ));
    }
    if let Some(e) = &st.store_error {
        out.push_str(&format!(
            "  store error: {e} (nothing that needs a new record happens until a store succeeds)\n"
        ));
    }
    for i in &st.instances {
        out.push_str(&format!(
            "  {:<16} {:<10} {:<22} {}  in-flight {}\n",
            i.id,
            i.version,
            i.address,
            if i.healthy { "healthy  " } else { "unhealthy" },
            i.in_flight
        ));
    }
    for t in &st.traffic {
        out.push_str(&format!(
            "  traffic {}: {:.1} req/s, {:.2}% errors, p50 {:.1} ms, p99 {:.1} ms\n",
            t.version,
            t.rps,
            t.error_rate * 100.0,
            t.p50_ms,
            t.p99_ms
        ));
    }
    if let Some(e) = &st.experiment {
        out.push_str(&human_experiment(e));
    }
    out
}

/// The A/B experiment: each variant's figures, then each variant against the control.
fn human_experiment(e: &baton_api::types::ExperimentStatus) -> String {
    let mut out = format!(
        "  experiment (control {}, {:.0}% confidence):\n",
        e.control,
        e.confidence * 100.0
    );
    for v in &e.variants {
        out.push_str(&format!(
            "    {:<12} {:>8} req  {:>6.2}% err  p50 {:.1} ms  p95 {:.1} ms  p99 {:.1} ms\n",
            v.version,
            v.requests,
            v.error_rate * 100.0,
            v.p50_ms,
            v.p95_ms,
            v.p99_ms
        ));
    }
    for c in &e.comparisons {
        let (er, lat) = (&c.errors, &c.latency);
        let yes = |b: bool| if b { "significant" } else { "not significant" };
        let ci =
            |(lo, hi): (f64, f64), scale: f64| format!("[{:+.2}, {:+.2}]", lo * scale, hi * scale);
        out.push_str(&format!(
            "    {} vs {}: error rate {:+.2} pts {} (p={:.4}, CI {} pts); latency shift {:+.2} ms {} (p={:.4}, CI {} ms)\n",
            c.variant,
            c.control,
            er.diff * 100.0,
            yes(c.error_significant),
            er.p_value,
            ci(er.diff_ci, 100.0),
            lat.shift_us / 1000.0,
            yes(c.latency_significant),
            lat.p_value,
            ci(lat.shift_ci_us, 0.001),
        ));
        if let Some(n) = c.needed_per_variant {
            out.push_str(&format!(
                "    {} more requests per variant to detect a {:.1}-point error-rate difference\n",
                n,
                c.mde_error_rate * 100.0
            ));
        }
    }
    out
}

fn human_logs(logs: &[InstanceLogs]) -> String {
    let mut out = String::new();
    for inst in logs {
        out.push_str(&format!("==> {} ({}) <==\n", inst.instance, inst.version));
        for line in &inst.lines {
            out.push_str(&format!("{line}\n"));
        }
    }
    out
}

/// One line per deployment, each column as wide as its widest cell.
fn human_history(h: &[HistoryEntry]) -> String {
    if h.is_empty() {
        return "no deployments yet\n".into();
    }
    let rows: Vec<[String; 6]> = h
        .iter()
        .map(|e| {
            [
                e.id.clone(),
                or_dash(e.from_version.as_deref()).to_string(),
                e.to_version.clone(),
                e.strategy.clone(),
                outcome_name(e.outcome).to_string(),
                format!("{:.1}s", e.duration_ms as f64 / 1000.0),
            ]
        })
        .collect();
    let width = |col: usize| {
        rows.iter()
            .map(|r| r[col].chars().count())
            .max()
            .unwrap_or(0)
    };
    let w: [usize; 6] = std::array::from_fn(width);
    let mut out = String::new();
    for (r, e) in rows.iter().zip(h) {
        let line = format!(
            "{:<w0$}  {:<w1$} → {:<w2$}  {:<w3$}  {:<w4$}  {:>w5$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            e.reason.as_deref().unwrap_or(""),
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3],
            w4 = w[4],
            w5 = w[5],
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn human_plan(p: &PlanReport) -> String {
    let mut out = format!(
        "plan: {} {} → {} by {}\n",
        p.app,
        or_dash(p.from_version.as_deref()),
        p.to_version,
        p.strategy
    );
    for (i, step) in p.steps.iter().enumerate() {
        out.push_str(&format!("  {}. {}\n", i + 1, step));
    }
    out.push_str(&format!(
        "peak instances: {} ({} extra)\n",
        p.peak_instances, p.extra_instances
    ));
    let mib = |v: Option<u64>| {
        v.map(|b| format!("{} MiB", b >> 20))
            .unwrap_or_else(|| "unknown".into())
    };
    out.push_str(&format!(
        "memory: ~{} per instance, ~{} extra at peak, {} available\n",
        mib(p.rss_per_instance_bytes),
        mib(p.extra_memory_bytes),
        mib(p.available_memory_bytes)
    ));
    if let Some(w) = &p.warning {
        out.push_str(&format!("WARNING: {w}\n"));
    }
    out
}

/// The proxies on other nodes, one line each (nothing when there are none).
fn human_proxies(proxies: &[baton_controller::fleet::ProxyView]) -> String {
    if proxies.is_empty() {
        return String::new();
    }
    let mut out = String::from("\nproxies on other nodes:\n");
    for p in proxies {
        let state = if p.live { "live" } else { "silent" };
        out.push_str(&format!(
            "  {:<24} {state:<6} last report {:.1}s ago, table {}, {} requests\n",
            p.name,
            p.last_report_ms as f64 / 1000.0,
            p.serving.generation,
            p.requests
        ));
    }
    out
}
