//! Stopping an instance: SIGTERM to its process group, up to `stop_timeout` for the group
//! to empty, then SIGKILL. The group (not just the leader) is what is waited for, so a
//! `sh -c` wrapper's children are not left behind as orphans.

use super::procfs;
use crate::RuntimeError;
use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::time::Duration;
use tokio::time::Instant;

/// How often the group is looked up while waiting for it to empty.
const POLL_EVERY: Duration = Duration::from_millis(50);
/// How long SIGKILL may take to empty the group before baton gives up.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Ends process group `pgid` of instance `id`.
pub(crate) async fn stop_group(id: &str, pgid: i32, timeout: Duration) -> Result<(), RuntimeError> {
    if !procfs::group_has_live_members(pgid) {
        return Ok(());
    }
    if !signal(id, pgid, Signal::SIGTERM)? || wait_empty(pgid, timeout).await {
        return Ok(());
    }
    tracing::warn!(instance = %id, pgid, timeout = ?timeout, "still running after SIGTERM; sending SIGKILL");
    if !signal(id, pgid, Signal::SIGKILL)? || wait_empty(pgid, KILL_WAIT).await {
        return Ok(());
    }
    Err(RuntimeError::StopFailed {
        id: id.to_string(),
        pgid,
    })
}

/// Sends `sig` to the group; `Ok(false)` if the group no longer exists.
fn signal(id: &str, pgid: i32, sig: Signal) -> Result<bool, RuntimeError> {
    match killpg(Pid::from_raw(pgid), sig) {
        Ok(()) => Ok(true),
        Err(Errno::ESRCH) => Ok(false),
        Err(source) => Err(RuntimeError::Signal {
            id: id.to_string(),
            pgid,
            signal: sig.as_str(),
            source,
        }),
    }
}

/// Waits up to `timeout` for the group to have no live member; whether it emptied.
async fn wait_empty(pgid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !procfs::group_has_live_members(pgid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}
