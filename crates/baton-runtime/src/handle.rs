//! What a runtime hands back for an instance and reports about it. Handles are stored
//! (they must survive a baton restart), so they are plain serializable data.

use baton_core::Millis;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

/// One running instance, as stored and as given back to the runtime to stop or adopt it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceHandle {
    /// The controller's instance id (unique per app; names the log file).
    pub id: String,
    pub app: String,
    pub version: String,
    /// Where the proxy and health checks reach the instance.
    pub addr: SocketAddr,
    pub started_at: Millis,
    /// Driver-specific identity.
    pub detail: HandleDetail,
}

/// Driver-specific identity of an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HandleDetail {
    Process {
        pid: i32,
        /// The instance's own process group (equal to `pid`): signals go to the group.
        pgid: i32,
        /// `/proc/<pid>/stat` field 22 at start: with `pid`, identifies the process
        /// across a baton restart even if the pid number is reused.
        proc_start_ticks: u64,
        /// The instance's stdout+stderr (rotated to `<log_path>.1`).
        log_path: PathBuf,
    },
    Static {},
    /// A container on the Docker Engine (labels `baton.owner`, `baton.app`,
    /// `baton.version`, `baton.instance` say whose it is).
    Docker {
        /// The engine's full container id: identifies it across a baton restart.
        container_id: String,
        container_name: String,
        /// The image reference it was created from (`myorg/app:v3`).
        image: String,
    },
    /// A single-replica Docker Swarm service (labels as for docker) and its task.
    Swarm {
        service_id: String,
        /// `<app>-<seq>-<version>`.
        service_name: String,
        /// The service's one task: its state says whether the instance runs.
        task_id: String,
        node_id: String,
        image: String,
    },
}

impl HandleDetail {
    /// The runtime kind that owns this handle.
    pub fn kind(&self) -> &'static str {
        match self {
            HandleDetail::Process { .. } => "process",
            HandleDetail::Static {} => "static",
            HandleDetail::Docker { .. } => "docker",
            HandleDetail::Swarm { .. } => "swarm",
        }
    }
}

/// What to start.
#[derive(Debug, Clone, PartialEq)]
pub struct StartRequest {
    pub id: String,
    pub app: String,
    pub version: String,
    /// The address of an instance someone else runs (static runtime only).
    pub target: Option<SocketAddr>,
}

/// Something the runtime noticed on its own.
#[derive(Debug, Clone, PartialEq)]
pub enum RuntimeEvent {
    /// The instance ended without being asked to. `status` reads like
    /// `"exited with status 1"` or `"killed by signal 9 (SIGKILL)"`; `last_logs` are its
    /// last output lines, oldest first.
    Exited {
        id: String,
        status: String,
        last_logs: Vec<String>,
    },
}
