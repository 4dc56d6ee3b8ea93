//! Where instances come from. One [`Runtime`] trait, several drivers: [`ProcessRuntime`]
//! (the embedded default: spawns a command per instance), [`StaticRuntime`] (addresses
//! run by someone else) and [`DockerRuntime`] (a container per instance, through the
//! Docker Engine API). A container or cluster-service driver fits the same trait: it
//! returns an [`InstanceHandle`] with its own [`HandleDetail`], and `adopt` answers "is this
//! still the same running thing?" after a baton restart.

mod docker;
mod error;
mod handle;
mod process;
mod static_runtime;
mod swarm;
mod task;

pub use docker::{default_host, DockerError, DockerRuntime, DockerSpec, Pull, DEFAULT_HOST};
pub use error::RuntimeError;
pub use handle::{HandleDetail, InstanceHandle, RuntimeEvent, StartRequest};
pub use process::{ProcessRuntime, ProcessSpec};
pub use static_runtime::StaticRuntime;
pub use swarm::{StoredApp, SwarmError, SwarmRuntime, SwarmSpec, SwarmState};
pub use task::{tail_of, TaskOutput, TaskRequest, TASK_TAIL_LINES};

use async_trait::async_trait;
use std::collections::HashSet;

/// A driver that starts, stops, re-adopts and reads the logs of instances. Instances that
/// end on their own are reported on the driver's event channel
/// ([`RuntimeEvent::Exited`]), never those ended through [`Runtime::stop`].
#[async_trait]
pub trait Runtime: Send + Sync {
    /// `"process"`, `"static"`, ... (the `runtime` value in `baton.toml`), for messages;
    /// what the controller may ask of a runtime is told by the methods below, never by
    /// comparing this name.
    fn kind(&self) -> &'static str;

    /// Whether the operator names each deployment's instances (`--target HOST:PORT`)
    /// instead of this runtime starting them. The controller then never starts a
    /// replacement on its own: it cannot run what it did not start.
    fn operator_targets(&self) -> bool {
        false
    }

    /// Whether this runtime can run one-off tasks (hooks: a migration before a deploy).
    /// The controller and `baton validate` ask this, never the runtime's name.
    fn one_off_tasks(&self) -> bool {
        false
    }

    /// Whether `command` can be run as a one-off task, as far as can be told without
    /// running it (the process runtime: the program exists and is executable). `Err`
    /// says why not, for `baton validate`.
    fn check_task(&self, _command: &str) -> Result<(), String> {
        Ok(())
    }

    /// Runs `req` once with its version's code and waits for it (at most its timeout).
    /// Runtimes without [`Runtime::one_off_tasks`] refuse.
    async fn run_task(&self, req: TaskRequest) -> Result<TaskOutput, RuntimeError> {
        Err(RuntimeError::NoTasks {
            app: req.app,
            runtime: self.kind(),
        })
    }

    /// Starts one instance. Returns once it is started, not once it is healthy: health
    /// checks decide that.
    async fn start(&self, req: StartRequest) -> Result<InstanceHandle, RuntimeError>;

    /// Ends the instance gracefully, then forcefully (process: SIGTERM to the group,
    /// `stop_timeout`, SIGKILL). `Ok` if it is already gone.
    async fn stop(&self, handle: &InstanceHandle) -> Result<(), RuntimeError>;

    /// After a baton restart: whether `handle` is still the same running instance (never a
    /// reused pid). If it is, the runtime resumes watching it for exit.
    async fn adopt(&self, handle: &InstanceHandle) -> Result<bool, RuntimeError>;

    /// The last `max_lines` lines of the instance's output, oldest first.
    async fn logs(
        &self,
        handle: &InstanceHandle,
        max_lines: usize,
    ) -> Result<Vec<String>, RuntimeError>;

    /// Before a deployment of `version` begins: checks (and, where allowed, fetches) what
    /// starting it needs, so a deployment that cannot start fails with nothing changed.
    /// The docker runtime checks the image is on the engine (pulling it if `pull` allows).
    async fn prepare(&self, _app: &str, _version: &str) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// After a restart, once the stored instances were adopted: removes the instances of
    /// `app` this runtime finds that belong to this baton but are not in `known`, and
    /// returns their ids. Drivers whose instances cannot be listed do nothing.
    async fn remove_strays(
        &self,
        _app: &str,
        _known: &HashSet<String>,
    ) -> Result<Vec<String>, RuntimeError> {
        Ok(Vec::new())
    }
}
