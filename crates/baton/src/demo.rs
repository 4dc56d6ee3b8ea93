//! `baton demo`: everything in one command — baton on free ports, the bundled sample app
//! v1 ×3, live load through the proxy, a canary deploy of v2, a broken v3 that is rolled
//! back by itself, and a summary with the failed-request count, while the web dashboard
//! shows it all (its address, with a one-time login, is printed first; `--keep` keeps it
//! up after the demo until Ctrl-C). Leaves nothing behind, even on Ctrl-C.

use crate::serve::{self, Running};
use crate::Failure;
use baton_controller::status::AppStatus;
use baton_core::ports::PortRange;
use baton_loadgen::{Load, LoadSpec};
use baton_rollout::State;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What `baton demo` was asked for.
pub struct Options {
    /// Shorter pauses.
    pub quick: bool,
    /// Keep baton and the dashboard up after the demo, until Ctrl-C.
    pub keep: bool,
    /// Where the sample app's instances listen.
    pub ports: PortRange,
}

/// How long one deploy of the demo may take before the demo gives up on it (the longest
/// takes about 20 s on a quiet machine; this leaves room for a loaded one).
const DEPLOY_LIMIT: Duration = Duration::from_secs(180);

pub async fn run(options: Options) -> Result<(), Failure> {
    let dir = std::env::temp_dir().join(format!("baton-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| Failure::failed(format!("cannot create {} ({e})", dir.display())))?;
    let result = run_in(&dir, &options).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// A fresh random token for the demo's admin API and dashboard login.
fn random_token() -> Result<String, Failure> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Failure::failed(format!("cannot read /dev/urandom for a token ({e})")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes the demo's baton.toml and token file; returns the config's path, the
/// dashboard's address and the token.
fn write_config(dir: &Path, options: &Options) -> Result<(PathBuf, SocketAddr, String), Failure> {
    let exe = std::env::current_exe()
        .map_err(|e| Failure::failed(format!("cannot find the baton binary ({e})")))?;
    let port = free_port()?;
    let dashboard: SocketAddr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let token = random_token()?;
    let token_file = dir.join("admin.token");
    std::fs::write(&token_file, format!("{token}\n"))
        .map_err(|e| Failure::failed(format!("cannot write {} ({e})", token_file.display())))?;
    let pause = if options.quick { "2s" } else { "8s" };
    let ports = format!("{}-{}", options.ports.first, options.ports.last);
    let text = format!(
        r#"[proxy]
listen = ["127.0.0.1:{port}"]

[admin]
listen = "unix:{dir}/baton.sock"
token_file = "{dir}/admin.token"

[dashboard]
listen = "{dashboard}"

[store]
path = "{dir}/state"

[apps.demo]
runtime = "process"
command = "'{exe}' sample-app --port {{port}} --version {{version}} --broken-version v3"
replicas = 3
ports = "{ports}"
strategy = "canary"
drain_timeout = "5s"
stop_timeout = "5s"

[apps.demo.health]
path = "/health"
interval = "200ms"
startup_timeout = "4s"

[apps.demo.canary]
steps = [{{ weight = 10 }}, {{ pause = "{pause}" }}, {{ weight = 50 }}, {{ pause = "{pause}" }}]
"#,
        dir = dir.display(),
        exe = exe.display(),
    );
    let path = dir.join("baton.toml");
    std::fs::write(&path, text)
        .map_err(|e| Failure::failed(format!("cannot write {} ({e})", path.display())))?;
    Ok((path, dashboard, token))
}

fn free_port() -> Result<u16, Failure> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Failure::failed(format!("no free port on 127.0.0.1 ({e})")))
}

async fn run_in(dir: &Path, options: &Options) -> Result<(), Failure> {
    // One Ctrl-C listener for the whole run, made first: a Ctrl-C that arrives between
    // the scenario's end and the wait after it is still seen (a listener made later
    // would miss it, and the default action that would have stopped the process is gone
    // once any listener exists).
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| Failure::failed(format!("cannot listen for Ctrl-C ({e})")))?;
    let (path, dashboard, token) = write_config(dir, options)?;
    let config = serve::load_config(&path)?;
    let running = serve::start(&config).await?;
    let addr = running
        .proxy_addrs
        .first()
        .copied()
        .ok_or_else(|| Failure::failed("no proxy listener"))?;
    println!(
        "baton demo: proxy on http://{addr}, sample app \"demo\" ×3 (config: {})\n",
        path.display()
    );
    println!("dashboard: http://{dashboard}/ui/login#token={token}\n  (open it to watch the canary and the rollback; the link logs you in)\n");
    let outcome = tokio::select! {
        r = scenario(&running, addr) => r,
        _ = interrupt.recv() => Err(Failure::failed("interrupted; cleaning up")),
    };
    if options.keep && outcome.is_ok() {
        println!(
            "\nthe demo is over; baton and the dashboard keep running: http://{dashboard}/ui/login#token={token}\n  proxy http://{addr} (Host: demo) · Ctrl-C stops everything"
        );
        interrupt.recv().await;
        println!("stopping");
    }
    running.shutdown(true).await;
    outcome
}

async fn scenario(running: &Running, addr: SocketAddr) -> Result<(), Failure> {
    let ctl = running.controller.clone();
    let t0 = Instant::now();
    let mut events = ctl.subscribe();
    // The timeline, printed as it happens.
    tokio::spawn(async move {
        while let Ok(e) = events.recv().await {
            println!("{:>6.1}s  {}", t0.elapsed().as_secs_f64(), e.message);
        }
    });
    deploy_and_wait(running, "v1").await?;
    let load = Load::start(LoadSpec {
        host: "demo".into(),
        ..LoadSpec::new(addr)
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let v2 = deploy_and_wait(running, "v2").await?;
    let v3 = deploy_and_wait(running, "v3").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = load.stop().await;
    let st = ctl
        .status("demo")
        .map_err(|e| Failure::failed(e.to_string()))?;
    println!("\n=== summary ===");
    println!("deploy v2 (canary 10% → 50% → 100%): {}", state_word(v2));
    println!(
        "deploy v3 (never healthy):           {} — rolled back automatically",
        state_word(v3)
    );
    println!(
        "now serving: {}",
        st.stable_version.as_deref().unwrap_or("nothing")
    );
    println!("requests sent: {}   failed: {}", stats.sent, stats.failed);
    for (kind, n) in &stats.failures {
        println!("  failure {kind}: {n}");
    }
    println!(
        "latency p50 {:.2} ms   p99 {:.2} ms   max {:.2} ms",
        stats.p50_ms, stats.p99_ms, stats.max_ms
    );
    println!(
        "served by version: {}",
        stats
            .by_version
            .iter()
            .map(|(v, n)| format!("{v}={n}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    if stats.failed > 0 {
        return Err(Failure::failed(format!(
            "{} requests failed during the demo",
            stats.failed
        )));
    }
    Ok(())
}

fn state_word(s: State) -> &'static str {
    match s {
        State::Succeeded => "succeeded",
        State::Failed => "failed",
        State::Aborted => "aborted",
        State::Running => "running",
        State::Paused => "paused",
    }
}

async fn deploy_and_wait(running: &Running, version: &str) -> Result<State, Failure> {
    let ctl = &running.controller;
    let id = ctl
        .deploy("demo", version, None, Vec::new(), false)
        .await
        .map_err(|e| Failure::failed(e.to_string()))?;
    let started = Instant::now();
    loop {
        let st: AppStatus = ctl
            .status("demo")
            .map_err(|e| Failure::failed(e.to_string()))?;
        // Finished, not merely switched: the old version is drained and stopped.
        if let Some(d) = st
            .deployment
            .as_ref()
            .filter(|d| d.id == id && d.finished_at.is_some())
        {
            return Ok(d.state);
        }
        if started.elapsed() > DEPLOY_LIMIT {
            return Err(Failure::failed(format!(
                "the deploy of {version} has not finished after {} s (the machine may be \
                 overloaded, or instance ports in use: try --ports FIRST-LAST); its last \
                 status: {}",
                DEPLOY_LIMIT.as_secs(),
                serde_json::to_string(&st.deployment).unwrap_or_default()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
