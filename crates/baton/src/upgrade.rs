//! Upgrading baton itself with no failed request (`baton upgrade`, or SIGUSR2 to the
//! server).
//!
//! The handover: the running server (old) suspends its controller (every app actor
//! finishes its step and stores its record; the store is closed; instances keep running,
//! the proxy keeps serving its current routes), then starts the binary now at the path it
//! was started from, with the same arguments, in a process group of its own. The new
//! process inherits the listening sockets (proxy, admin, dashboard and cluster) as file descriptors, named
//! in `BATON_UPGRADE_FDS`, opens the store, recovers — re-adopting the instances by pid
//! and start time — starts accepting on the inherited sockets and writes `ready` on its
//! stdout. Both processes accept on the same sockets for a moment, so no connection is
//! refused. The old one then stops accepting, finishes its open connections and exits.
//!
//! If the new process exits, says nothing within the timeout or cannot be started, the
//! old one kills it, reopens the store, resumes its controller and keeps serving; the
//! caller gets the new process's last stderr lines.
//!
//! The new process's stderr is read by the old one until it is ready (forwarded to the
//! old stderr, and kept for a failure report); once ready, the new process points its
//! stdout and stderr at the old process's own (inherited as `BATON_UPGRADE_STDIO`).

use baton_api::{AdminListener, UpgradeDone, UpgradeFailed};
use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Names the inherited listeners: `proxy:12,proxy:13,admin-unix:14`.
const FDS_VAR: &str = "BATON_UPGRADE_FDS";
/// The old process's stdout and stderr, for the new one once it is ready: `15,16`.
const STDIO_VAR: &str = "BATON_UPGRADE_STDIO";
/// Default wait for the new process's `ready`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Lines of the new process's stderr kept for a failure report.
const TAIL_LINES: usize = 20;

// === which binary ===

static EXE: OnceLock<PathBuf> = OnceLock::new();

/// Remembers, at start-up, the path this binary was started from. `/proc/self/exe`
/// would name the old (deleted) file after the binary is replaced; the path as typed
/// (made absolute) names whatever file is there at upgrade time.
pub fn remember_exe() {
    let from_argv = std::env::args_os().next().map(PathBuf::from).filter(|p| {
        p.components().count() > 1 // has a slash: not found through PATH
    });
    let path = match from_argv {
        Some(p) if p.is_absolute() => p,
        Some(p) => std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p),
        None => std::env::current_exe().unwrap_or_else(|_| PathBuf::from("baton")),
    };
    let _ = EXE.set(path);
}

fn exe() -> PathBuf {
    EXE.get()
        .cloned()
        .or_else(|| std::env::current_exe().ok())
        .unwrap_or_else(|| PathBuf::from("baton"))
}

// === the new process's side ===

/// Listeners handed over by the previous baton process.
pub struct Inherited {
    pub proxy: Vec<std::net::TcpListener>,
    pub admin: Option<InheritedAdmin>,
    /// `[dashboard] listen`'s listener.
    pub dashboard: Option<std::net::TcpListener>,
    /// `[cluster] listen`'s listener.
    pub cluster: Option<std::net::TcpListener>,
    /// The old process's stdout and stderr (raw, close-on-exec), taken over at `ready`.
    stdio: Option<(RawFd, RawFd)>,
}

pub enum InheritedAdmin {
    Unix(std::os::unix::net::UnixListener, PathBuf),
    Tcp(std::net::TcpListener),
}

impl InheritedAdmin {
    /// As a tokio listener (call inside the runtime).
    pub fn into_tokio(self) -> std::io::Result<AdminListener> {
        Ok(match self {
            InheritedAdmin::Unix(l, path) => {
                l.set_nonblocking(true)?;
                AdminListener::Unix(tokio::net::UnixListener::from_std(l)?, path)
            }
            InheritedAdmin::Tcp(l) => {
                l.set_nonblocking(true)?;
                AdminListener::Tcp(tokio::net::TcpListener::from_std(l)?)
            }
        })
    }
}

/// Takes the listeners a previous baton handed over, if this process is the new one of
/// an upgrade. Call before any thread starts: it removes the handover variables from
/// the environment, so app instances started later do not see them.
pub fn take_inherited() -> Result<Option<Inherited>, String> {
    let Some(spec) = std::env::var_os(FDS_VAR) else {
        return Ok(None);
    };
    let spec = spec.to_string_lossy().into_owned();
    let stdio = std::env::var(STDIO_VAR).ok();
    std::env::remove_var(FDS_VAR);
    std::env::remove_var(STDIO_VAR);
    // listenfd wraps an inherited descriptor after checking it is a socket of the
    // right kind; it counts descriptors from 3 (LISTEN_FDS, set by the old process).
    let mut fds = listenfd::ListenFd::from_env();
    let bad = |what: &str| {
        format!("{FDS_VAR}={spec:?}: {what}; this variable is set by `baton upgrade` and is not meant to be set by hand")
    };
    let mut out = Inherited {
        proxy: Vec::new(),
        admin: None,
        dashboard: None,
        cluster: None,
        stdio: None,
    };
    for item in spec.split(',').filter(|s| !s.is_empty()) {
        let (kind, fd) = item
            .split_once(':')
            .ok_or_else(|| bad(&format!("{item:?} is not KIND:FD")))?;
        let fd: usize = fd
            .parse()
            .ok()
            .filter(|fd| *fd >= 3)
            .ok_or_else(|| bad(&format!("{fd:?} is not a descriptor number >= 3")))?;
        let idx = fd - 3;
        let missing = || bad(&format!("descriptor {fd} was not passed"));
        let wrong = |e: std::io::Error| bad(&format!("descriptor {fd}: {e}"));
        match kind {
            "proxy" => out.proxy.push(
                fds.take_tcp_listener(idx)
                    .map_err(wrong)?
                    .ok_or_else(missing)?,
            ),
            "dashboard" => {
                out.dashboard = Some(
                    fds.take_tcp_listener(idx)
                        .map_err(wrong)?
                        .ok_or_else(missing)?,
                );
            }
            "cluster" => {
                out.cluster = Some(
                    fds.take_tcp_listener(idx)
                        .map_err(wrong)?
                        .ok_or_else(missing)?,
                );
            }
            "admin-tcp" => {
                let l = fds
                    .take_tcp_listener(idx)
                    .map_err(wrong)?
                    .ok_or_else(missing)?;
                out.admin = Some(InheritedAdmin::Tcp(l));
            }
            "admin-unix" => {
                let l = fds
                    .take_unix_listener(idx)
                    .map_err(wrong)?
                    .ok_or_else(missing)?;
                let path = l
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_pathname().map(PathBuf::from))
                    .ok_or_else(|| bad(&format!("descriptor {fd} is not bound to a path")))?;
                out.admin = Some(InheritedAdmin::Unix(l, path));
            }
            other => return Err(bad(&format!("unknown kind {other:?}"))),
        }
    }
    if let Some((o, e)) = stdio.as_deref().and_then(|s| s.split_once(',')) {
        if let (Ok(o), Ok(e)) = (o.parse::<RawFd>(), e.parse::<RawFd>()) {
            // Not for app instances this process may start before it is ready.
            for fd in [o, e] {
                let _ = nix::fcntl::fcntl(
                    fd,
                    nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
                );
            }
            out.stdio = Some((o, e));
        }
    }
    Ok(Some(out))
}

impl Inherited {
    /// Tells the old process this one serves (`ready` on stdout, its pipe), then moves
    /// stdout and stderr to the old process's own, so logs go on where they went.
    pub fn report_ready(&mut self) {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "ready").and_then(|_| out.flush());
        drop(out);
        if let Some((o, e)) = self.stdio.take() {
            let _ = nix::unistd::dup2(o, 1);
            let _ = nix::unistd::dup2(e, 2);
            let _ = nix::unistd::close(o);
            let _ = nix::unistd::close(e);
        }
    }
}

// === the old process's side ===

/// Copies of the listening sockets, kept to hand over.
#[derive(Default)]
pub struct Listeners {
    /// Kind, descriptor, and the address of a proxy listener.
    fds: Vec<(&'static str, OwnedFd, Option<std::net::SocketAddr>)>,
}

impl Listeners {
    pub fn add_proxy(&mut self, l: &tokio::net::TcpListener) -> std::io::Result<()> {
        let addr = l.local_addr()?;
        self.fds
            .push(("proxy", l.as_fd().try_clone_to_owned()?, Some(addr)));
        Ok(())
    }

    /// Forgets (closes) the copy of the proxy listener on `addr` (`baton reload` removed
    /// it): the socket closes once the listener itself is dropped.
    pub fn remove_proxy(&mut self, addr: std::net::SocketAddr) {
        self.fds.retain(|(_, _, a)| *a != Some(addr));
    }

    pub fn add_dashboard(&mut self, l: &tokio::net::TcpListener) -> std::io::Result<()> {
        self.fds
            .push(("dashboard", l.as_fd().try_clone_to_owned()?, None));
        Ok(())
    }

    pub fn add_cluster(&mut self, l: &tokio::net::TcpListener) -> std::io::Result<()> {
        self.fds
            .push(("cluster", l.as_fd().try_clone_to_owned()?, None));
        Ok(())
    }

    pub fn add_admin(&mut self, l: &AdminListener) -> std::io::Result<()> {
        let kind = match l {
            AdminListener::Unix(..) => "admin-unix",
            AdminListener::Tcp(_) => "admin-tcp",
        };
        self.fds.push((kind, l.as_fd().try_clone_to_owned()?, None));
        Ok(())
    }
}

/// Descriptors duplicated without close-on-exec for one spawn; closed on drop.
struct Passed(Vec<RawFd>);

impl Passed {
    fn dup(&mut self, fd: RawFd) -> nix::Result<RawFd> {
        let d = nix::unistd::dup(fd)?;
        self.0.push(d);
        Ok(d)
    }
}

impl Drop for Passed {
    fn drop(&mut self) {
        for fd in self.0.drain(..) {
            let _ = nix::unistd::close(fd);
        }
    }
}

fn failed(error: String, stderr: Vec<String>) -> UpgradeFailed {
    UpgradeFailed {
        status: 500,
        error,
        stderr,
    }
}

/// Starts the new process with the listeners and waits for its `ready`. On any failure
/// the new process is gone when this returns (the store is free again).
pub async fn start_successor(
    listeners: &Listeners,
    timeout: Duration,
) -> Result<UpgradeDone, UpgradeFailed> {
    let exe = exe();
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let mut passed = Passed(Vec::new());
    let mut names = Vec::new();
    let dup_err =
        |e: nix::Error| failed(format!("cannot pass the listening sockets on: {e}"), vec![]);
    for (kind, fd, _) in &listeners.fds {
        let d = passed.dup(fd.as_raw_fd()).map_err(dup_err)?;
        names.push(format!("{kind}:{d}"));
    }
    let out = passed.dup(1).map_err(dup_err)?;
    let err = passed.dup(2).map_err(dup_err)?;
    let highest = passed.0.iter().copied().max().unwrap_or(3);
    let mut cmd = tokio::process::Command::new(&exe);
    cmd.args(&args)
        .env(FDS_VAR, names.join(","))
        .env(STDIO_VAR, format!("{out},{err}"))
        .env("LISTEN_FDS", (highest - 2).to_string())
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDNAMES")
        .envs(crate::systemd::for_successor())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group: it outlives this process and gets no signal meant for it.
        .process_group(0)
        .kill_on_drop(false);
    let spawned = cmd.spawn();
    drop(passed);
    let mut child = spawned.map_err(|e| {
        failed(
            format!(
                "cannot start {} ({e}); the running baton keeps serving",
                exe.display()
            ),
            vec![],
        )
    })?;
    let pid = child.id().unwrap_or(0);
    tracing::info!(binary = %exe.display(), pid, "upgrade: started the new baton; waiting for it to be ready");

    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let stderr_task = child.stderr.take().map(|e| {
        let tail = tail.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(e).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("{line}");
                let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                if t.len() == TAIL_LINES {
                    t.pop_front();
                }
                t.push_back(line);
            }
        })
    });
    let mut stdout = child.stdout.take().map(|o| BufReader::new(o).lines());
    let waited = tokio::time::timeout(timeout, async {
        if let Some(lines) = stdout.as_mut() {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.trim() == "ready" {
                    return Ok(());
                }
            }
        }
        // Its stdout closed without `ready`: it is exiting.
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        Err(match status {
            Ok(Ok(s)) => describe(s),
            _ => "closed its stdout without reporting ready".to_string(),
        })
    })
    .await;
    let why = match waited {
        Ok(Ok(())) => {
            tracing::info!(pid, "upgrade: the new baton is ready; handing over");
            return Ok(UpgradeDone {
                old_pid: std::process::id(),
                new_pid: pid,
                binary: exe.display().to_string(),
            });
        }
        Ok(Err(why)) => why,
        Err(_) => format!(
            "did not report ready within {}",
            baton_core::HumanDuration(timeout)
        ),
    };
    // Gone for sure before the store is reopened.
    let _ = child.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    if let Some(t) = stderr_task {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    let stderr: Vec<String> = tail
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .cloned()
        .collect();
    let mut error = format!(
        "the new baton ({}, pid {pid}) {why}; the running baton (pid {}) keeps serving",
        exe.display(),
        std::process::id()
    );
    if stderr.is_empty() {
        error.push_str(" (the new process wrote nothing to stderr)");
    } else {
        error.push_str(". Its last output:\n");
        error.push_str(&stderr.join("\n"));
    }
    tracing::error!("upgrade failed: {error}");
    Err(failed(error, stderr))
}

/// `"exited with status 1"` or `"was killed by signal 9"`.
fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code} before it was ready"),
        (None, Some(sig)) => format!("was killed by signal {sig} before it was ready"),
        _ => format!("ended ({status}) before it was ready"),
    }
}

// === the CLI ===

/// `baton upgrade`: asks the server to upgrade itself and reports the outcome.
pub async fn command(
    client: &baton_api::client::AdminClient,
    timeout: Option<&str>,
    json: bool,
) -> Result<(), crate::Failure> {
    match client.upgrade(timeout).await {
        Ok(done) => {
            if json {
                let v = serde_json::to_value(&done).unwrap_or_default();
                println!("{v}");
            } else {
                println!(
                    "upgraded: baton pid {} handed over to pid {} ({}); the old process finishes its requests and exits",
                    done.old_pid, done.new_pid, done.binary
                );
            }
            Ok(())
        }
        Err(e) => Err(crate::Failure::failed(format!("upgrade failed: {e}"))),
    }
}
