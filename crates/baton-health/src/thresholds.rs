//! Pure threshold logic: a single probe never flips an instance (kamal-proxy's mistake);
//! `healthy` consecutive successes make it healthy, `unhealthy` consecutive failures make a
//! once-healthy instance unhealthy. Before the first success run, failures flip nothing:
//! the monitor's `startup_timeout` decides whether a new instance ever came up.

use baton_core::HealthSpec;

/// A flip reported by [`Thresholds::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    BecameHealthy,
    BecameUnhealthy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Never healthy yet: still starting.
    Starting,
    Healthy,
    Unhealthy,
}

/// Counts consecutive probe results for one instance.
#[derive(Debug, Clone)]
pub struct Thresholds {
    /// Successes in a row needed to become healthy (at least 1).
    healthy: u32,
    /// Failures in a row needed to become unhealthy (at least 1).
    unhealthy: u32,
    state: State,
    /// Current run of successes (reset by a failure).
    successes: u32,
    /// Current run of failures (reset by a success).
    failures: u32,
}

// === impl Thresholds ===

impl Thresholds {
    pub fn new(spec: &HealthSpec) -> Self {
        Thresholds {
            healthy: spec.healthy.max(1),
            unhealthy: spec.unhealthy.max(1),
            state: State::Starting,
            successes: 0,
            failures: 0,
        }
    }

    /// For an instance already healthy (a monitor restarted with a new spec): the startup
    /// phase is over, so failures count towards `unhealthy` at once.
    pub fn healthy(spec: &HealthSpec) -> Self {
        Thresholds {
            state: State::Healthy,
            ..Thresholds::new(spec)
        }
    }

    /// Records one probe result; returns the flip it caused, if any.
    pub fn record(&mut self, ok: bool) -> Option<Transition> {
        if ok {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if self.state != State::Healthy && self.successes >= self.healthy {
                self.state = State::Healthy;
                return Some(Transition::BecameHealthy);
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.state == State::Healthy && self.failures >= self.unhealthy {
                self.state = State::Unhealthy;
                return Some(Transition::BecameUnhealthy);
            }
        }
        None
    }

    pub fn is_healthy(&self) -> bool {
        self.state == State::Healthy
    }

    /// Whether the instance has been healthy at least once (the startup phase is over).
    pub fn has_been_healthy(&self) -> bool {
        self.state != State::Starting
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(healthy: u32, unhealthy: u32) -> HealthSpec {
        HealthSpec {
            healthy,
            unhealthy,
            ..HealthSpec::default()
        }
    }

    #[test]
    fn needs_consecutive_successes_to_become_healthy() {
        let mut t = Thresholds::new(&spec(3, 2));
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(false), None, "a failure resets the success run");
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(true), None);
        assert!(!t.is_healthy());
        assert_eq!(t.record(true), Some(Transition::BecameHealthy));
        assert!(t.is_healthy());
        assert_eq!(t.record(true), None, "no repeated flip while healthy");
    }

    #[test]
    fn a_resumed_healthy_instance_is_past_startup() {
        let mut t = Thresholds::healthy(&spec(2, 2));
        assert!(t.is_healthy() && t.has_been_healthy());
        assert_eq!(t.record(true), None, "already healthy: nothing to report");
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), Some(Transition::BecameUnhealthy));
    }

    #[test]
    fn needs_consecutive_failures_to_become_unhealthy() {
        let mut t = Thresholds::new(&spec(1, 3));
        assert_eq!(t.record(true), Some(Transition::BecameHealthy));
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(true), None, "a success resets the failure run");
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert!(t.is_healthy());
        assert_eq!(t.record(false), Some(Transition::BecameUnhealthy));
        assert!(!t.is_healthy());
        assert_eq!(t.record(false), None, "no repeated flip while unhealthy");
    }

    #[test]
    fn failures_before_first_healthy_flip_nothing() {
        let mut t = Thresholds::new(&spec(1, 1));
        for _ in 0..10 {
            assert_eq!(t.record(false), None);
        }
        assert!(!t.is_healthy());
        assert!(!t.has_been_healthy());
    }

    #[test]
    fn recovers_after_being_unhealthy() {
        let mut t = Thresholds::new(&spec(2, 1));
        t.record(true);
        assert_eq!(t.record(true), Some(Transition::BecameHealthy));
        assert_eq!(t.record(false), Some(Transition::BecameUnhealthy));
        assert!(t.has_been_healthy());
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(true), Some(Transition::BecameHealthy));
    }

    #[test]
    fn zero_thresholds_behave_as_one() {
        let mut t = Thresholds::new(&spec(0, 0));
        assert_eq!(t.record(true), Some(Transition::BecameHealthy));
        assert_eq!(t.record(false), Some(Transition::BecameUnhealthy));
    }
}
