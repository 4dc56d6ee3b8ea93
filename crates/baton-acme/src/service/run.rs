//! The one background task: on each wake, order for every name set that is due (one at a
//! time, never one set twice at once), then sleep until the next is due, new name sets
//! arrive, or shutdown.

use super::order::order_for;
use super::Shared;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The longest the loop sleeps without looking again (clock jumps, suspend).
const MAX_SLEEP: Duration = Duration::from_secs(3600);

pub(super) async fn run(shared: Arc<Shared>) {
    tracing::debug!(directory = %shared.settings.directory, "ACME loop started");
    loop {
        let due = shared.lock_state().due(SystemTime::now());
        for key in due {
            if shared.shutdown.is_cancelled() {
                return;
            }
            let lock = shared.lock_for(&key);
            // An on-demand caller holding it is ordering this very set.
            let Ok(_order) = lock.try_lock() else {
                continue;
            };
            if !shared.lock_state().is_due(&key, SystemTime::now()) {
                continue;
            }
            tokio::select! {
                _ = order_for(&shared, &key) => {}
                () = shared.shutdown.cancelled() => return,
            }
        }
        let now = SystemTime::now();
        let wake = shared.lock_state().next_wake(now + MAX_SLEEP);
        let sleep = wake.duration_since(now).unwrap_or_default();
        tokio::select! {
            () = tokio::time::sleep(sleep) => {}
            () = shared.wake.notified() => {}
            () = shared.shutdown.cancelled() => return,
        }
    }
}
