//! Exit watchers, one task per instance. A child of this baton is awaited directly; an
//! adopted process (started by a previous baton) is polled in `/proc`. Either way the
//! task also rotates the instance's log, and on exit reports `RuntimeEvent::Exited`
//! unless the exit was asked for by `stop()`.

use super::registry::Registry;
use super::{logs, procfs};
use crate::RuntimeEvent;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;
use tokio::process::Child;
use tokio::sync::{mpsc, watch};

/// How often a watcher checks the log size.
const ROTATE_EVERY: Duration = Duration::from_secs(2);
/// How often an adopted process is looked up in `/proc`.
const POLL_EVERY: Duration = Duration::from_millis(250);
/// Log lines sent with an `Exited` event.
const EXIT_LOG_LINES: usize = 10;

/// What a watcher needs to rotate logs and report the exit.
pub(crate) struct Watch {
    pub id: String,
    pub log_path: PathBuf,
    pub log_max_bytes: u64,
    pub registry: Arc<Registry>,
    pub events: mpsc::UnboundedSender<RuntimeEvent>,
    /// Set once the exit is handled, so `stop()` can return.
    pub exited: watch::Sender<bool>,
}

// === impl Watch ===

impl Watch {
    /// Awaits a child of this process.
    pub async fn child(self, mut child: Child) {
        let mut rotate = tokio::time::interval(ROTATE_EVERY);
        let status = loop {
            tokio::select! {
                status = child.wait() => break status,
                _ = rotate.tick() => self.rotate().await,
            }
        };
        let status = match status {
            Ok(status) => describe(status),
            Err(e) => format!("exited (status unavailable: {e})"),
        };
        self.finish(status).await;
    }

    /// Polls a process that is not our child (its exit status is not ours to collect).
    pub async fn adopted(self, pid: i32, start_ticks: u64) {
        let polls_per_rotation = (ROTATE_EVERY.as_millis() / POLL_EVERY.as_millis()).max(1);
        let mut until_rotation = 0;
        while procfs::is_same_live_process(pid, start_ticks) {
            if until_rotation == 0 {
                self.rotate().await;
                until_rotation = polls_per_rotation;
            }
            until_rotation -= 1;
            tokio::time::sleep(POLL_EVERY).await;
        }
        let status = "exited (status unknown: it was adopted after a baton restart)";
        self.finish(status.to_string()).await;
    }

    async fn rotate(&self) {
        let (path, max) = (self.log_path.clone(), self.log_max_bytes);
        let rotated = tokio::task::spawn_blocking(move || logs::rotate_if_needed(&path, max)).await;
        match rotated {
            Ok(Ok(true)) => {
                tracing::debug!(instance = %self.id, path = %self.log_path.display(), "log rotated")
            }
            Ok(Ok(false)) => {}
            Ok(Err(error)) => {
                tracing::warn!(instance = %self.id, path = %self.log_path.display(), %error, "log rotation failed")
            }
            Err(error) => tracing::warn!(instance = %self.id, %error, "log rotation task failed"),
        }
    }

    async fn finish(self, status: String) {
        let asked = self.registry.remove(&self.id);
        if asked {
            tracing::debug!(instance = %self.id, %status, "instance stopped");
        } else {
            let path = self.log_path.clone();
            let last_logs = tokio::task::spawn_blocking(move || logs::tail(&path, EXIT_LOG_LINES))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            tracing::warn!(instance = %self.id, %status, "instance exited on its own");
            let _ = self.events.send(RuntimeEvent::Exited {
                id: self.id.clone(),
                status,
                last_logs,
            });
        }
        self.exited.send_replace(true);
    }
}

/// `"exited with status 3"` or `"killed by signal 9 (SIGKILL)"`.
pub(crate) fn describe(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    match status.signal() {
        Some(sig) => match nix::sys::signal::Signal::try_from(sig) {
            Ok(name) => format!("killed by signal {sig} ({name})"),
            Err(_) => format!("killed by signal {sig}"),
        },
        None => format!("ended ({status})"),
    }
}
