//! Everything a runtime can refuse or fail at, with what to do about it.

use baton_core::{NameError, PortRange};
use std::io;
use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("no free port in {range} for app {app}: widen `ports` in [apps.{app}] or free some of those ports")]
    PortsExhausted { range: PortRange, app: String },

    #[error("could not start `{command}` for instance {instance}: {source}; check that the program exists and is executable (give its full path in `command` if it is not on PATH)")]
    Spawn {
        instance: String,
        command: String,
        #[source]
        source: io::Error,
    },

    #[error("instance {id} is already running in this runtime; instance ids must be unique")]
    Duplicate { id: String },

    #[error("invalid command {command:?}: {reason}")]
    BadCommand { command: String, reason: String },

    #[error("working directory {} for app {app} is not usable: {source}; fix `cwd` in [apps.{app}]", path.display())]
    BadCwd {
        app: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("instance {id} of app {app} has no target address: the static runtime runs nothing itself; pass `--target HOST:PORT` to `baton deploy`")]
    NoTarget { app: String, id: String },

    #[error("could not {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("instance {id} is a {found} instance; the {expected} runtime cannot manage it (was `runtime` changed in the config while it ran?)")]
    WrongKind {
        id: String,
        expected: &'static str,
        found: &'static str,
    },

    #[error("instance {id} has an invalid process id {pid}: its stored record is damaged; refusing to signal it")]
    BadHandle { id: String, pid: i32 },

    #[error("could not send {signal} to instance {id} (process group {pgid}): {source}")]
    Signal {
        id: String,
        pgid: i32,
        signal: &'static str,
        #[source]
        source: nix::Error,
    },

    #[error("instance {id} (process group {pgid}) still runs after SIGKILL; it may be stuck in the kernel (state D): look at `ps -o pid,stat,cmd -g {pgid}`")]
    StopFailed { id: String, pgid: i32 },

    #[error("static instances are run by someone else: baton has no logs for {id}; read them where that instance runs")]
    NoLogs { id: String },

    #[error("the {runtime} runtime of app {app} cannot run one-off tasks (hooks): remove [apps.{app}.hooks] or use a runtime that runs them (process, docker)")]
    NoTasks { app: String, runtime: &'static str },

    #[error(transparent)]
    Name(#[from] NameError),

    #[error(transparent)]
    Docker(#[from] crate::docker::DockerError),

    #[error(transparent)]
    Swarm(#[from] crate::swarm::SwarmError),
}
