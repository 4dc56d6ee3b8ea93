//! Gives the memory a load freed back to the system once the load is over.
//!
//! glibc's allocator keeps what a burst of requests freed (h2 connections' buffers,
//! TLS records, bodies) inside its arenas wherever a live allocation sits above it:
//! after an h2c run baton stayed 6 MiB above its idle size until it exited. A process
//! that just went quiet has nothing to lose by handing those pages back, so this task
//! reads the process's own CPU time four times a second and, at the first quiet period
//! after some work, asks the allocator once to return every free page
//! (`malloc_trim(0)`). Nothing runs per request; under steady load nothing is trimmed
//! (the next burst would take the pages again). Work counts however it is spread: a
//! deployment (store transactions, health probes, the API's answers) may never keep a
//! core busy for a whole period, but what it freed goes back once it is over. What
//! start-up freed (loading the config, the store and the certificates) goes back as
//! soon as serving starts, and start-up counts as work, so what the first deployments
//! freed goes back at the first quiet period after them. Other C libraries (musl)
//! return freed memory on their own: there it does nothing.

use std::time::Duration;

/// How often the process's CPU time is read (a clock read, nothing more): freed memory
/// goes back one to two periods after a load ends.
const PERIOD: Duration = Duration::from_millis(250);
/// CPU time since the last trim that makes the next quiet period trim (10 % of a core
/// for one period, or the same spread over several).
const WORK: Duration = Duration::from_millis(25);
/// CPU time within one period under which the process is quiet (1 % of a core).
const QUIET: Duration = Duration::from_micros(2500);

/// When to trim: at the first quiet period once `WORK` of CPU time was used since the
/// last trim. Starting up counts as that much work (loading the config, the store and
/// the certificates frees most of what it allocated: ~2 MiB the first quiet period
/// gives back). Idle, what baton still does (timers, health probes: ~1.5 ms of CPU a
/// second) adds up to `WORK` every 15-20 seconds: that trim finds next to nothing and
/// costs next to nothing.
#[derive(Debug)]
struct LoadEnd {
    since_trim: Duration,
}

impl Default for LoadEnd {
    fn default() -> LoadEnd {
        LoadEnd { since_trim: WORK }
    }
}

impl LoadEnd {
    /// The CPU time used in the last period; true when now is the time to trim.
    fn observe(&mut self, used: Duration) -> bool {
        self.since_trim += used;
        if used >= QUIET || self.since_trim < WORK {
            return false;
        }
        self.since_trim = Duration::ZERO;
        true
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

    /// CPU time in one period: a load, quiet, and in between (neither).
    const LOAD: Duration = WORK;
    const IDLE: Duration = Duration::ZERO;
    fn quiet() -> Duration {
        QUIET / 2
    }
    fn between() -> Duration {
        QUIET * 2
    }

    #[test]
    fn trims_once_at_the_first_quiet_period_after_some_work() {
        let mut s = LoadEnd::default();
        // What starting up freed goes back at the first quiet period; then, idle,
        // there is nothing more to give back.
        assert!(!s.observe(between()));
        assert!(s.observe(quiet()));
        assert!(!s.observe(IDLE));
        assert!(!s.observe(quiet()));
        // A load, then a period in between (neither busy nor quiet): not yet.
        assert!(!s.observe(PERIOD));
        assert!(!s.observe(PERIOD));
        assert!(!s.observe(between()));
        // Quiet: once.
        assert!(s.observe(quiet()));
        assert!(!s.observe(quiet()));
        assert!(!s.observe(IDLE));
        // The next load ends: once more.
        assert!(!s.observe(LOAD));
        assert!(s.observe(QUIET - Duration::from_micros(1)));
    }

    #[test]
    fn work_spread_over_periods_counts() {
        let mut s = LoadEnd::default();
        assert!(s.observe(IDLE));
        // A deployment: a few periods of light work, none of them busy.
        let periods = WORK.as_micros() / between().as_micros() + 1;
        for _ in 0..periods {
            assert!(!s.observe(between()));
        }
        assert!(s.observe(IDLE));
        assert!(!s.observe(IDLE));
    }

    #[test]
    fn quiet_periods_add_up_too() {
        let mut s = LoadEnd::default();
        assert!(s.observe(IDLE));
        // Periods just under the quiet threshold: a trim once they add up to WORK (ten
        // of them), not at each.
        let periods = (0..1000)
            .take_while(|_| !s.observe(QUIET - Duration::from_micros(1)))
            .count();
        assert_eq!(periods as u128, WORK.as_micros() / (QUIET.as_micros() - 1));
    }

    #[test]
    fn steady_load_is_never_trimmed() {
        let mut s = LoadEnd::default();
        for _ in 0..100 {
            assert!(!s.observe(PERIOD * 3 / 4));
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
