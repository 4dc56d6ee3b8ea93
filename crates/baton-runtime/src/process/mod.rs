//! The process runtime: each instance is a command run from a template, on a port picked
//! from the app's range, in its own process group, writing to its own log file. Nothing
//! ties the instance to baton's lifetime: after `kill -9` of baton a new baton re-adopts
//! it by pid + `/proc` start time.

mod logs;
mod orphans;
mod procfs;
mod registry;
mod stop;
mod task;
mod template;
mod watch;

use crate::{
    HandleDetail, InstanceHandle, Runtime, RuntimeError, RuntimeEvent, StartRequest, TaskOutput,
    TaskRequest,
};
use async_trait::async_trait;
use baton_core::{validate_app_name, validate_version, Millis, PortRange};
use registry::{Registry, Reservation};
use std::collections::{BTreeMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use template::Vars;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use watch::Watch;

/// How one app's instances are run (`[apps.X]` with `runtime = "process"`).
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessSpec {
    /// Template with `{port}` `{version}` `{app}` `{instance}`, split with shell rules.
    pub command: String,
    pub cwd: Option<PathBuf>,
    /// Extra environment (values may use the same placeholders). `BATON_OWNER` here
    /// marks the instances as this baton's: after a restart, a process with the same
    /// owner and app that no record knows is stopped (`remove_strays`).
    pub env: BTreeMap<String, String>,
    pub ports: PortRange,
    /// Between SIGTERM and SIGKILL.
    pub stop_timeout: Duration,
    /// Instance logs go to `<log_dir>/<app>/<instance>.log`.
    pub log_dir: PathBuf,
    /// A log file larger than this is rotated to `.log.1`.
    pub log_max_bytes: u64,
}

impl ProcessSpec {
    /// Defaults for everything but the command: ports 20000-29999, 10s stop timeout,
    /// logs in `log_dir`, 1 MiB per log generation.
    pub fn new(command: impl Into<String>, log_dir: impl Into<PathBuf>) -> Self {
        ProcessSpec {
            command: command.into(),
            cwd: None,
            env: BTreeMap::new(),
            ports: PortRange::default(),
            stop_timeout: Duration::from_secs(10),
            log_dir: log_dir.into(),
            log_max_bytes: 1 << 20,
        }
    }
}

/// Runs instances as local processes.
#[derive(Debug, Clone)]
pub struct ProcessRuntime {
    /// Shared by clones; replaced by `set_spec` (`baton reload`).
    spec: Arc<std::sync::RwLock<Arc<ProcessSpec>>>,
    events: mpsc::UnboundedSender<RuntimeEvent>,
    registry: Arc<Registry>,
}

// === impl ProcessRuntime ===

impl ProcessRuntime {
    /// Instances that exit on their own are reported on `events`.
    pub fn new(spec: ProcessSpec, events: mpsc::UnboundedSender<RuntimeEvent>) -> Self {
        ProcessRuntime {
            spec: Arc::new(std::sync::RwLock::new(Arc::new(spec))),
            events,
            registry: Arc::default(),
        }
    }

    /// The spec in force: a start uses the one it read first throughout.
    fn spec(&self) -> Arc<ProcessSpec> {
        self.spec.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces how instances are run (`baton reload`): instances started from now on
    /// use `spec`; running ones keep what they were started with, and are stopped with
    /// the new `stop_timeout`.
    pub fn set_spec(&self, spec: ProcessSpec) {
        *self.spec.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(spec);
    }

    fn check_cwd(&self, app: &str) -> Result<(), RuntimeError> {
        let spec = self.spec();
        let Some(cwd) = &spec.cwd else {
            return Ok(());
        };
        let bad = |source| RuntimeError::BadCwd {
            app: app.to_string(),
            path: cwd.clone(),
            source,
        };
        match std::fs::metadata(cwd) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(bad(std::io::Error::other("not a directory"))),
            Err(e) => Err(bad(e)),
        }
    }

    fn spawn(&self, req: &StartRequest, port: u16, log_path: &Path) -> Result<Child, RuntimeError> {
        let vars = Vars {
            port,
            version: &req.version,
            app: &req.app,
            instance: &req.id,
        };
        let spec = self.spec();
        let argv = template::render(&spec.command, &vars)?;
        let io_err = |action, source| RuntimeError::Io {
            action,
            path: log_path.to_path_buf(),
            source,
        };
        let mut log = logs::open_for_child(log_path).map_err(|e| io_err("open the log file", e))?;
        let line = format!(
            "starting {} {} as {} on port {port}: {argv:?}",
            req.app, req.version, req.id
        );
        logs::note(&mut log, &line).map_err(|e| io_err("write the log file", e))?;
        let stderr = log
            .try_clone()
            .map_err(|e| io_err("open the log file", e))?;
        let mut cmd = child_command(&argv, vars.env(&spec.env), spec.cwd.as_deref(), log, stderr);
        cmd.spawn().map_err(|source| RuntimeError::Spawn {
            instance: req.id.clone(),
            command: spec.command.clone(),
            source,
        })
    }

    /// Records the child's identity and hands it to an exit watcher.
    fn track(
        &self,
        req: StartRequest,
        child: Child,
        reservation: Reservation,
        log_path: PathBuf,
    ) -> Result<InstanceHandle, RuntimeError> {
        let port = reservation.port;
        let pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
        // The child cannot have been reaped yet (nobody waited on it), so its stat exists.
        let Some(stat) = procfs::stat(pid) else {
            // Untrackable: do not leave it running behind our back.
            if pid > 1 {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            return Err(RuntimeError::Io {
                action: "read the start time of the new process in",
                path: PathBuf::from(format!("/proc/{pid}/stat")),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        };
        let handle = InstanceHandle {
            id: req.id,
            app: req.app,
            version: req.version,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            started_at: Millis::now(),
            detail: HandleDetail::Process {
                pid,
                pgid: pid,
                proc_start_ticks: stat.start_ticks,
                log_path: log_path.clone(),
            },
        };
        if let Some(exited) = reservation.commit() {
            tokio::spawn(self.watcher(&handle.id, log_path, exited).child(child));
        }
        tracing::info!(app = %handle.app, version = %handle.version, instance = %handle.id, pid, %port, "instance started");
        Ok(handle)
    }

    fn watcher(
        &self,
        id: &str,
        log_path: PathBuf,
        exited: tokio::sync::watch::Sender<bool>,
    ) -> Watch {
        Watch {
            id: id.to_string(),
            log_path,
            log_max_bytes: self.spec().log_max_bytes,
            registry: self.registry.clone(),
            events: self.events.clone(),
            exited,
        }
    }
}

/// The process identity in a handle, checked before anything is signalled.
fn process_detail(handle: &InstanceHandle) -> Result<(i32, i32, u64, &Path), RuntimeError> {
    let HandleDetail::Process {
        pid,
        pgid,
        proc_start_ticks,
        log_path,
    } = &handle.detail
    else {
        return Err(RuntimeError::WrongKind {
            id: handle.id.clone(),
            expected: "process",
            found: handle.detail.kind(),
        });
    };
    // Never signal pid 0/1/negative (killpg(0) is our own group) or our own group.
    let own_group = nix::unistd::getpgrp().as_raw();
    for id in [*pid, *pgid] {
        if id <= 1 || id == own_group {
            return Err(RuntimeError::BadHandle {
                id: handle.id.clone(),
                pid: id,
            });
        }
    }
    Ok((*pid, *pgid, *proc_start_ticks, log_path))
}

#[async_trait]
impl Runtime for ProcessRuntime {
    fn kind(&self) -> &'static str {
        "process"
    }

    async fn start(&self, req: StartRequest) -> Result<InstanceHandle, RuntimeError> {
        validate_app_name(&req.app)?;
        validate_version(&req.version)?;
        // The instance id names a file: same alphabet as a version.
        validate_version(&req.id)?;
        self.check_cwd(&req.app)?;
        let reservation = self
            .registry
            .reserve_port(&req.id, &req.app, self.spec().ports)?;
        let log_path = logs::path_for(&self.spec().log_dir, &req.app, &req.id);
        let child = self.spawn(&req, reservation.port, &log_path)?;
        self.track(req, child, reservation, log_path)
    }

    async fn stop(&self, handle: &InstanceHandle) -> Result<(), RuntimeError> {
        let (pid, pgid, ticks, _) = process_detail(handle)?;
        let exited = self.registry.mark_stopping(&handle.id);
        // A live process with that pid but another start time is a reused pid: ours is
        // gone, and so is its group (a group id is not reused while the group exists).
        let reused = procfs::stat(pid).is_some_and(|s| s.is_live() && s.start_ticks != ticks);
        if !reused {
            tracing::info!(instance = %handle.id, pgid, "stopping instance");
            stop::stop_group(&handle.id, pgid, self.spec().stop_timeout).await?;
        }
        if let Some(mut exited) = exited {
            // The watcher notices within its poll interval; bounded in case it is gone.
            let _ = tokio::time::timeout(Duration::from_secs(5), exited.wait_for(|e| *e)).await;
        }
        Ok(())
    }

    async fn adopt(&self, handle: &InstanceHandle) -> Result<bool, RuntimeError> {
        let (pid, _, ticks, log_path) = process_detail(handle)?;
        if self.registry.is_watched(&handle.id) {
            return Ok(true);
        }
        if !procfs::is_same_live_process(pid, ticks) {
            tracing::info!(instance = %handle.id, pid, "not adopted: the process is gone");
            return Ok(false);
        }
        let log_path = log_path.to_path_buf();
        if let Some(exited) = self.registry.watch(&handle.id, handle.addr.port()) {
            tokio::spawn(
                self.watcher(&handle.id, log_path, exited)
                    .adopted(pid, ticks),
            );
        }
        tracing::info!(instance = %handle.id, pid, "adopted running instance");
        Ok(true)
    }

    /// Processes a previous baton started but never recorded (killed between spawning and
    /// storing), found by their `BATON_OWNER` / `BATON_APP` / `BATON_INSTANCE`
    /// environment: SIGTERM to each group, SIGKILL after `stop_timeout`.
    async fn remove_strays(
        &self,
        app: &str,
        known: &HashSet<String>,
    ) -> Result<Vec<String>, RuntimeError> {
        let spec = self.spec();
        let Some(owner) = spec.env.get("BATON_OWNER") else {
            return Ok(Vec::new());
        };
        let strays = orphans::find(owner, app, known);
        orphans::reap(&strays, spec.stop_timeout).await;
        Ok(strays.into_iter().map(|o| o.instance).collect())
    }

    fn one_off_tasks(&self) -> bool {
        true
    }

    fn check_task(&self, command: &str) -> Result<(), String> {
        task::check_program(command, self.spec().cwd.as_deref())
    }

    async fn run_task(&self, req: TaskRequest) -> Result<TaskOutput, RuntimeError> {
        validate_app_name(&req.app)?;
        validate_version(&req.version)?;
        validate_version(&req.name)?;
        self.check_cwd(&req.app)?;
        task::run(&self.spec(), req).await
    }

    async fn logs(
        &self,
        handle: &InstanceHandle,
        max_lines: usize,
    ) -> Result<Vec<String>, RuntimeError> {
        let (_, _, _, log_path) = process_detail(handle)?;
        let path = log_path.to_path_buf();
        let max_bytes = self.spec().log_max_bytes;
        let read = tokio::task::spawn_blocking(move || {
            logs::rotate_if_needed(&path, max_bytes)?;
            logs::tail(&path, max_lines)
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
        read.map_err(|source| RuntimeError::Io {
            action: "read the log file",
            path: log_path.to_path_buf(),
            source,
        })
    }
}

/// The command of an instance or a one-off task: `argv` with `env`, in `cwd` when set,
/// stdin closed, stdout and stderr to its log, in a process group of its own (so a
/// stop or a timeout reaches its children), never killed by dropping the handle.
pub(super) fn child_command(
    argv: &[String],
    env: Vec<(String, String)>,
    cwd: Option<&Path>,
    stdout: std::fs::File,
    stderr: std::fs::File,
) -> Command {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        .process_group(0)
        .kill_on_drop(false);
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    cmd
}
