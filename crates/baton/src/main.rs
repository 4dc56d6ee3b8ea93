//! `baton`: the CLI. `serve` runs proxy + controller + admin API; the other
//! commands talk to a running server through the admin API. Exit codes: 0 ok, 1 failed
//! deployment or error, 2 usage or config error.

mod access_log;
mod client_cmds;
mod dashboard;
mod demo;
mod follow;
mod import;
mod purge;
mod reload;
mod serve;
mod systemd;
mod tls;
mod upgrade;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "baton",
    version,
    about = "Zero-downtime deployments in one binary"
)]
struct Cli {
    /// Config file (client commands read the admin address from it).
    #[arg(short, long, global = true, default_value = "baton.toml")]
    config: PathBuf,
    /// Admin address (`unix:PATH` or `HOST:PORT`), instead of reading it from the config.
    #[arg(long, global = true, env = "BATON_ADMIN")]
    admin: Option<String>,
    /// Bearer token file for a TCP admin address.
    #[arg(long, global = true, env = "BATON_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run proxy, controller and admin API.
    Serve {
        /// Stop every app instance when baton exits (default: leave them running; the next
        /// `baton serve` re-adopts them).
        #[arg(long)]
        stop_instances: bool,
    },
    /// Run the proxy alone, following the route table of the controller named in
    /// `[cluster] controllers` (baton on several nodes); it keeps serving its last table
    /// while no controller answers.
    Proxy,
    /// Deploy VERSION of APP and follow it; exits 0 only if it succeeded.
    Deploy {
        app: String,
        version: String,
        /// recreate | blue_green | rolling | canary | ab_test (default: the app's `strategy`).
        #[arg(long)]
        strategy: Option<String>,
        /// An instance address for the static runtime (repeat per instance).
        #[arg(long = "target")]
        targets: Vec<String>,
        /// Return as soon as the deployment started.
        #[arg(long)]
        detach: bool,
        /// The release step cannot be undone (a schema migration the previous version
        /// cannot use): once it ran, automatic rollbacks freeze the rollout instead.
        #[arg(long)]
        irreversible: bool,
    },
    /// Versions, instances, weights, health, live rates, current step.
    Status { app: Option<String> },
    /// Skip the remaining pauses (or choose the A/B winner with --to).
    Promote {
        app: String,
        #[arg(long)]
        to: Option<String>,
    },
    /// Back to the stable version now.
    Abort {
        app: String,
        /// Go back even after an irreversible release step.
        #[arg(long)]
        force: bool,
    },
    /// Freeze the running deployment.
    Pause { app: String },
    /// Continue a paused deployment.
    Resume { app: String },
    /// Back to the previous version (instant while it is still warm).
    Rollback {
        app: String,
        /// Go back even after an irreversible release step.
        #[arg(long)]
        force: bool,
    },
    /// Past deployments with outcome, duration and reason.
    History {
        app: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Instance output.
    Logs {
        app: String,
        #[arg(long)]
        version: Option<String>,
        #[arg(long, default_value_t = 50)]
        lines: usize,
    },
    /// Check the config without starting anything.
    Validate,
    /// Dry run: steps, peak instance count, estimated extra memory.
    Plan {
        app: String,
        version: String,
        #[arg(long)]
        strategy: Option<String>,
    },
    /// Upgrade the running server to the binary now at its path, with no failed request:
    /// it hands its listening sockets to the new process, which takes over the apps; if
    /// the new process fails to start, the old one keeps serving (exit 1). SIGUSR2 to
    /// the server does the same.
    Upgrade {
        /// How long the new process may take to be ready, e.g. "30s" (default 60s).
        #[arg(long)]
        timeout: Option<String>,
    },
    /// Re-read the config file the server was started with and apply the difference
    /// without dropping a request: apps added, removed (drained, then stopped) and
    /// changed, listeners opened and closed, proxy settings. Prints the difference. An
    /// invalid file changes nothing (exit 2); so does a change to an app whose rollout
    /// is in progress (exit 1). SIGHUP to the server does the same.
    Reload {
        /// Print the difference only; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Self-contained demo: sample app, live load, a canary deploy, a broken deploy rolled
    /// back, and the web dashboard to watch it in (its address is printed first).
    Demo {
        /// Shorter pauses (for tests).
        #[arg(long)]
        quick: bool,
        /// Keep baton and the dashboard running after the demo, until Ctrl-C.
        #[arg(long)]
        keep: bool,
        /// Where the sample app's instances listen (FIRST-LAST).
        #[arg(long, default_value = "20000-29999", value_name = "FIRST-LAST")]
        ports: baton_core::ports::PortRange,
    },
    /// Write a baton.toml app from another tool's configuration.
    Import {
        #[command(subcommand)]
        from: ImportFrom,
    },
    /// The bundled sample app (used by the demo, tests and benchmarks).
    #[command(hide = true, disable_version_flag = true)]
    SampleApp {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Subcommand)]
enum ImportFrom {
    /// A docker-compose service becomes an app on the docker runtime; every key that could
    /// not be translated is named with the reason.
    Compose {
        /// The compose file (docker-compose.yml, compose.yaml).
        file: PathBuf,
        /// The service to import (required when the file has several apps).
        service: Option<String>,
        /// Write the config to this file instead of printing it.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Overwrite the -o file if it exists.
        #[arg(long)]
        force: bool,
        /// App name (default: the service name, or `was` for was_blue/was_green).
        #[arg(long)]
        app: Option<String>,
        /// The port the container listens on, when compose does not say.
        #[arg(long)]
        container_port: Option<u16>,
    },
    /// The services of a compose v3 stack file (`docker stack deploy -c FILE`) become apps
    /// on the swarm runtime; every key that could not be translated is named with the
    /// reason.
    Stack {
        /// The stack file.
        file: PathBuf,
        /// A service to import (repeat for more; default: every service with a port).
        #[arg(long = "service", value_name = "NAME")]
        services: Vec<String>,
        /// The attachable overlay network for every app, instead of the stack's networks.
        #[arg(long, value_name = "OVERLAY")]
        network: Option<String>,
        /// The name the stack is deployed as (default: the file's directory name).
        #[arg(long, value_name = "NAME")]
        stack: Option<String>,
        /// Write the config to this file instead of printing it.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Overwrite the -o file if it exists.
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if let Cmd::SampleApp { args } = cli.command {
        let argv = std::iter::once("sample-app".to_string()).chain(broken_version(args));
        return sample_app::run_main_from(argv);
    }
    upgrade::remember_exe();
    // Before any thread exists: this takes variables out of the environment.
    if matches!(cli.command, Cmd::Serve { .. } | Cmd::Proxy) {
        systemd::take_from_env();
    }
    let inherited = match &cli.command {
        Cmd::Serve { .. } => match upgrade::take_inherited() {
            Ok(i) => i,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        _ => None,
    };
    // The demo prints its own timeline; the server logs what it does.
    let default_level = if matches!(cli.command, Cmd::Demo { .. }) {
        "warn"
    } else {
        "info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BATON_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        // No colour codes in journald or a file; `NO_COLOR` turns them off on a terminal.
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .init();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = proxy_workers(&cli) {
        // Each worker is a thread of its own (`baton_proxy::start_workers`), one as
        // well, and this runtime keeps one thread for the rest (controller, admin API,
        // health checks).
        if let Err(e) = baton_proxy::start_workers(workers) {
            eprintln!("error: cannot start the proxy's {workers} worker threads: {e}");
            return ExitCode::from(1);
        }
        builder.worker_threads(1);
    }
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(run(cli, inherited))
}

/// The proxy's workers for `serve` and `proxy`: `[proxy] workers`, or one per CPU core
/// when it is 0 (the default). A config that does not load counts as the default here;
/// `serve` itself then reports the problem.
fn proxy_workers(cli: &Cli) -> Option<usize> {
    match cli.command {
        Cmd::Serve { .. } | Cmd::Proxy => {
            let set = baton_config::load(&cli.config)
                .ok()
                .map(|c| c.proxy.workers)
                .filter(|&n| n > 0);
            Some(set.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())))
        }
        _ => None,
    }
}

/// Test and demo switches for the bundled app, consumed here and not passed on:
/// `--broken-version X` makes version X fail its health checks; `--crash-version X`
/// makes version X exit 1.5 s after it started (a crash after becoming healthy).
fn broken_version(args: Vec<String>) -> Vec<String> {
    let value_after = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let version = value_after("--version");
    let broken = value_after("--broken-version");
    let crash = value_after("--crash-version");
    let mut out = Vec::with_capacity(args.len());
    let mut skip = false;
    for a in &args {
        if skip {
            skip = false;
        } else if a == "--broken-version" || a == "--crash-version" {
            skip = true;
        } else {
            out.push(a.clone());
        }
    }
    if version.is_some() && broken == version {
        out.push("--fail-health".into());
    }
    if version.is_some() && crash == version {
        out.extend(["--exit-after-ms".to_string(), "1500".to_string()]);
    }
    out
}

/// An error with the exit code it deserves.
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: 2,
            message: message.into(),
        }
    }
    pub fn failed(message: impl Into<String>) -> Self {
        Failure {
            code: 1,
            message: message.into(),
        }
    }
}

async fn run(cli: Cli, inherited: Option<upgrade::Inherited>) -> ExitCode {
    let result = match cli.command {
        Cmd::Serve { stop_instances } => serve::run(&cli.config, stop_instances, inherited).await,
        Cmd::Proxy => follow::run(&cli.config).await,
        Cmd::Validate => client_cmds::validate(&cli.config, cli.json),
        Cmd::Demo { quick, keep, ports } => demo::run(demo::Options { quick, keep, ports }).await,
        Cmd::Import {
            from:
                ImportFrom::Compose {
                    file,
                    service,
                    output,
                    force,
                    app,
                    container_port,
                },
        } => import::compose::run(import::compose::Args {
            file,
            service,
            output,
            force,
            app,
            container_port,
            json: cli.json,
        }),
        Cmd::Import {
            from:
                ImportFrom::Stack {
                    file,
                    services,
                    network,
                    stack,
                    output,
                    force,
                },
        } => import::stack::run(import::stack::Args {
            file,
            services,
            network,
            stack,
            output,
            force,
            json: cli.json,
        }),
        Cmd::SampleApp { .. } => Ok(()),
        command => {
            let ctx = client_cmds::Ctx::new(
                &cli.config,
                cli.admin.as_deref(),
                cli.token_file.as_deref(),
                cli.json,
            );
            match ctx {
                Ok(ctx) => client_cmds::dispatch(&ctx, command).await,
                Err(f) => Err(f),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if !f.message.is_empty() {
                eprintln!("error: {}", f.message);
            }
            ExitCode::from(f.code)
        }
    }
}
