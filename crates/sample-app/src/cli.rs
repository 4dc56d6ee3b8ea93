//! Process entry points: parse flags, boot (optionally slowly), serve until SIGTERM/SIGINT,
//! or "crash" on purpose with `--exit-after-ms`.

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

use crate::{run, SampleAppError, SampleOptions};

/// Exit status of a deliberate crash (`--exit-after-ms`).
const CRASH_STATUS: u8 = 3;

/// Runs the app with the process's own arguments and environment.
pub fn run_main() -> ExitCode {
    run_main_from(std::env::args())
}

/// Runs the app with `args` (the first item is the program name, as in `std::env::args()`).
///
/// Exit codes: 0 after a graceful shutdown, 1 when the app cannot start or serve,
/// 2 on bad flags, 3 for a deliberate crash (`--exit-after-ms`).
pub fn run_main_from(args: impl IntoIterator<Item = String>) -> ExitCode {
    let args: Vec<String> = args.into_iter().collect();
    if args.get(1).map(String::as_str) == Some("migrate") {
        let mut rest = vec![format!("{} migrate", args[0])];
        rest.extend(args.into_iter().skip(2));
        return crate::db::migrate_main(rest);
    }
    if args.get(1).map(String::as_str) == Some("fetch") {
        let mut rest = vec![format!("{} fetch", args[0])];
        rest.extend(args.into_iter().skip(2));
        return crate::fetch::fetch_main(rest);
    }
    let args = match per_version_faults(args) {
        Ok(args) => args,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let opts = match SampleOptions::try_parse_from(args) {
        Ok(opts) => opts,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(SampleAppError::Runtime);
    match runtime.and_then(|rt| rt.block_on(serve_main(opts))) {
        Ok(code) => code,
        Err(error) => {
            tracing::error!(%error, "sample-app failed");
            eprintln!("sample-app: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `--error-rate-for-version V=RATE` and `--latency-ms-for-version V=MS` (repeatable):
/// faults for one version only, so one command line can run a healthy stable and a
/// faulty canary. Consumed here: when the instance's version (`--version`, else
/// `BATON_VERSION`, else `v1`) is `V`, they become `--error-rate` / `--latency-ms`.
pub(crate) fn per_version_faults(args: Vec<String>) -> Result<Vec<String>, String> {
    const FLAGS: [(&str, &str); 2] = [
        ("--error-rate-for-version", "--error-rate"),
        ("--latency-ms-for-version", "--latency-ms"),
    ];
    let value_of = |flag: &str| {
        let eq = format!("{flag}=");
        args.iter().enumerate().find_map(|(i, a)| {
            if a == flag {
                args.get(i + 1).cloned()
            } else {
                a.strip_prefix(&eq).map(str::to_string)
            }
        })
    };
    let version = value_of("--version")
        .or_else(|| std::env::var("BATON_VERSION").ok())
        .unwrap_or_else(|| "v1".into());
    let mut out = Vec::with_capacity(args.len());
    let mut extra = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let found = FLAGS.iter().find_map(|(flag, to)| {
            if a == *flag {
                Some((*flag, *to, None))
            } else {
                a.strip_prefix(&format!("{flag}="))
                    .map(|v| (*flag, *to, Some(v.to_string())))
            }
        });
        let Some((flag, to, inline)) = found else {
            out.push(a);
            continue;
        };
        let value = match inline {
            Some(v) => v,
            None => it
                .next()
                .ok_or_else(|| format!("{flag} needs VERSION=VALUE, e.g. {flag} v2=0.05"))?,
        };
        let (v, x) = value
            .split_once('=')
            .ok_or_else(|| format!("{flag} {value:?}: write VERSION=VALUE, e.g. {flag} v2=0.05"))?;
        if v == version {
            extra.push(to.to_string());
            extra.push(x.to_string());
        }
    }
    out.extend(extra);
    Ok(out)
}

/// Logs to stderr (stdout carries only the `listening on` line); `RUST_LOG` filters.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Fails only when a subscriber is already set (e.g. inside `baton`): keep that one.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

async fn serve_main(opts: SampleOptions) -> Result<ExitCode, SampleAppError> {
    if opts.startup_delay_ms > 0 {
        tracing::info!(
            delay_ms = opts.startup_delay_ms,
            "slow start: waiting before binding"
        );
        tokio::time::sleep(Duration::from_millis(opts.startup_delay_ms)).await;
    }
    let shutdown = shutdown_signal().map_err(SampleAppError::Signals)?;
    let addr = SocketAddr::new(opts.host, opts.port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| SampleAppError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| SampleAppError::Bind { addr, source })?;
    announce(local);
    let crash = crash_after(opts.exit_after_ms.map(Duration::from_millis));
    tokio::select! {
        served = run(opts, listener, shutdown) => served.map(|()| ExitCode::SUCCESS).map_err(SampleAppError::Serve),
        () = crash => Ok(ExitCode::from(CRASH_STATUS)),
    }
}

/// Prints the bound address on stdout, the line launchers and tests wait for.
fn announce(local: SocketAddr) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "listening on {local}");
    let _ = stdout.flush();
}

/// Resolves on the first SIGTERM or SIGINT (handlers installed before returning).
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "graceful shutdown requested");
    })
}

/// Resolves after `after` (never when `None`): the deliberate crash of `--exit-after-ms`.
async fn crash_after(after: Option<Duration>) {
    match after {
        Some(after) => {
            tokio::time::sleep(after).await;
            tracing::warn!(
                after_ms = after.as_millis() as u64,
                status = CRASH_STATUS,
                "exiting as asked by --exit-after-ms"
            );
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::per_version_faults;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn per_version_faults_apply_to_their_version_only() {
        let a = args(&[
            "sample-app",
            "--version",
            "v2",
            "--error-rate-for-version",
            "v2=0.05",
            "--latency-ms-for-version=v1=50",
        ]);
        assert_eq!(
            per_version_faults(a).unwrap(),
            args(&["sample-app", "--version", "v2", "--error-rate", "0.05"])
        );
        let a = args(&[
            "sample-app",
            "--version=v1",
            "--latency-ms-for-version",
            "v1=50",
        ]);
        assert_eq!(
            per_version_faults(a).unwrap(),
            args(&["sample-app", "--version=v1", "--latency-ms", "50"])
        );
    }

    #[test]
    fn a_malformed_per_version_fault_is_refused_with_the_fix() {
        let e = per_version_faults(args(&["x", "--error-rate-for-version", "0.05"])).unwrap_err();
        assert!(e.contains("VERSION=VALUE"), "{e}");
        let e = per_version_faults(args(&["x", "--latency-ms-for-version"])).unwrap_err();
        assert!(e.contains("needs"), "{e}");
    }
}
