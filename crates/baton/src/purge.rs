//! Gives the memory a load freed back to the system once the load is over.
//!
//! glibc's allocator keeps what a burst of requests freed (h2 connections' buffers,
//! TLS records, bodies) inside its arenas wherever a live allocation sits above it:
//! after an h2c run baton stayed 6 MiB above its idle size until it exited. A process
//! that just went quiet has nothing to lose by handing those pages back, so this task
//! watches the process's own CPU time and, a second or two after a busy stretch ends, asks
//! the allocator once to return every free page (`malloc_trim(0)`). Nothing runs per
//! request; under steady load nothing is trimmed (the next burst would take the pages
//! again). What start-up freed (loading the config, the store and the certificates) goes
//! back as soon as serving starts, and start-up counts as a busy stretch, so what the
//! first deployments freed goes back at the first quiet period. Other C libraries
//! (musl) return freed memory on their own: there it does nothing.

use std::time::Duration;

/// How often the process's CPU time is read (a clock read, nothing more): freed memory
/// goes back one to two periods after a load ends.
const PERIOD: Duration = Duration::from_secs(1);
/// CPU time within one period that makes it busy (10 % of a core).
const BUSY: Duration = Duration::from_millis(100);
/// CPU time within one period under which the process is quiet (1 % of a core).
const QUIET: Duration = Duration::from_millis(10);

/// When to trim: after at least one busy period, at the first quiet one. Starting up
/// counts as busy (loading the config, the store and the certificates frees most of
/// what it allocated: ~2 MiB the first quiet period gives back).
#[derive(Debug)]
struct LoadEnd {
    busy_since_trim: bool,
}

impl Default for LoadEnd {
    fn default() -> LoadEnd {
        LoadEnd {
            busy_since_trim: true,
        }
    }
}

impl LoadEnd {
    /// The CPU time used in the last period; true when now is the time to trim.
    fn observe(&mut self, used: Duration) -> bool {
        if used >= BUSY {
            self.busy_since_trim = true;
            return false;
        }
        if used < QUIET && self.busy_since_trim {
            self.busy_since_trim = false;
            return true;
        }
        false
    }
}

/// The CPU time this process has used so far (every thread).
fn process_cpu() -> Option<Duration> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID).ok()?;
    Some(Duration::from(t))
}

/// Starts the task (on the current runtime), called once start-up is done: what
/// loading the config, the store and the certificates freed goes back at once, and
/// after that at the end of each busy stretch. It ends with the runtime.
pub fn spawn() {
    tokio::spawn(async {
        let released = tokio::task::spawn_blocking(trim).await.unwrap_or(false);
        tracing::debug!(released, "start-up done: freed memory handed back");
        // The first check a whole period from now (an interval's first tick is at
        // once): what the first deployment frees, just after start-up, is then
        // still to come, and start-up counting as busy makes that check trim it.
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + PERIOD, PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut state = LoadEnd::default();
        let mut last = process_cpu();
        loop {
            tick.tick().await;
            let now = process_cpu();
            let (Some(before), Some(after)) = (last, now) else {
                last = now;
                continue;
            };
            last = now;
            if state.observe(after.saturating_sub(before)) {
                // It walks every arena under their locks: off the runtime's threads.
                let released = tokio::task::spawn_blocking(trim).await.unwrap_or(false);
                tracing::debug!(released, "the load ended: freed memory handed back");
            }
        }
    });
}

/// Returns the allocator's free pages to the system; whether any were.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() -> bool {
    // SAFETY: malloc_trim has no preconditions; it only takes the allocator's own locks
    // and releases pages no allocation uses.
    unsafe { nix::libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn trims_once_at_the_first_quiet_period_after_a_busy_one() {
        let mut s = LoadEnd::default();
        // What starting up freed goes back at the first quiet period; then, idle,
        // there is nothing more to give back.
        assert!(!s.observe(ms(50)));
        assert!(s.observe(ms(5)));
        assert!(!s.observe(ms(0)));
        assert!(!s.observe(ms(5)));
        // A load, then a period in between (neither busy nor quiet): not yet.
        assert!(!s.observe(ms(950)));
        assert!(!s.observe(ms(950)));
        assert!(!s.observe(ms(50)));
        // Quiet: once.
        assert!(s.observe(ms(3)));
        assert!(!s.observe(ms(3)));
        assert!(!s.observe(ms(0)));
        // The next load ends: once more.
        assert!(!s.observe(ms(120)));
        assert!(s.observe(ms(9)));
    }

    #[test]
    fn steady_load_is_never_trimmed() {
        let mut s = LoadEnd::default();
        for _ in 0..100 {
            assert!(!s.observe(ms(750)));
        }
    }

    #[test]
    fn trimming_a_live_allocator_keeps_what_is_in_use() {
        let kept: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 64 * 1024]).collect();
        let freed: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 64 * 1024]).collect();
        drop(freed);
        trim();
        assert!(kept
            .iter()
            .enumerate()
            .all(|(i, v)| v.iter().all(|&b| b == i as u8)));
    }
}
