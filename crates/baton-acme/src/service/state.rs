//! The bookkeeping per name set: the certificate served, failures, the next attempt. Plain
//! data under a std mutex, never held across an await.

use crate::cert::Loaded;
use crate::plan;
use crate::settings::AcmeSettings;
use std::collections::BTreeMap;
use std::time::SystemTime;

/// One name set (= one certificate = one order at a time).
pub(crate) struct Entry {
    pub names: Vec<String>,
    /// In the configured name sets: ordered and renewed by the loop.
    pub configured: bool,
    /// Issued on demand: renewed by the loop once it has a certificate.
    pub on_demand: bool,
    /// The certificate served for these names, if any.
    pub cert: Option<Loaded>,
    /// Failed orders in a row.
    pub failures: u32,
    pub last_error: Option<String>,
    /// Not before this instant does the loop order for this set.
    pub next_attempt: SystemTime,
}

/// Every name set, by store key.
#[derive(Default)]
pub(crate) struct State {
    pub entries: BTreeMap<String, Entry>,
}

// === impl Entry ===

impl Entry {
    pub fn new(names: Vec<String>, now: SystemTime) -> Entry {
        Entry {
            names,
            configured: false,
            on_demand: false,
            cert: None,
            failures: 0,
            last_error: None,
            next_attempt: now,
        }
    }

    /// Whether the loop looks after this set at all.
    pub fn looked_after(&self) -> bool {
        self.configured || (self.on_demand && self.cert.is_some())
    }

    /// When the current certificate should be renewed (now if there is none).
    pub fn renew_at(&self, settings: &AcmeSettings, now: SystemTime) -> SystemTime {
        self.cert.as_ref().map_or(now, |c| {
            plan::renew_at(c.not_before, c.not_after, settings.renew_before)
        })
    }

    pub fn succeeded(&mut self, cert: Loaded, settings: &AcmeSettings, now: SystemTime) {
        self.cert = Some(cert);
        self.failures = 0;
        self.last_error = None;
        // Never straight back at the CA, even when the settings make a fresh certificate
        // due at once.
        self.next_attempt = self.renew_at(settings, now).max(now + settings.retry_min);
    }

    /// Records a failed order and backs off; a CA that says we hit its rate limit is
    /// left alone for the longest wait straight away.
    pub fn failed(&mut self, error: String, settings: &AcmeSettings, now: SystemTime) {
        self.failures = self.failures.saturating_add(1);
        let wait = if is_rate_limited(&error) {
            settings.retry_max
        } else {
            plan::backoff(
                self.failures,
                settings.retry_min,
                settings.retry_max,
                fastrand::f64(),
            )
        };
        self.last_error = Some(error);
        self.next_attempt = now + wait;
    }
}

/// The CA's problem type for "too many certificates / orders" (RFC 8555 §6.7).
fn is_rate_limited(error: &str) -> bool {
    error.contains("urn:ietf:params:acme:error:rateLimited")
}

// === impl State ===

impl State {
    /// Keys of the sets the loop should order for now.
    pub fn due(&self, now: SystemTime) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(_, e)| e.looked_after() && e.next_attempt <= now)
            .map(|(k, _)| k.clone())
            .collect()
    }

    pub fn is_due(&self, key: &str, now: SystemTime) -> bool {
        self.entries
            .get(key)
            .is_some_and(|e| e.looked_after() && e.next_attempt <= now)
    }

    /// When the loop should look again (at most `fallback`).
    pub fn next_wake(&self, fallback: SystemTime) -> SystemTime {
        let times = self
            .entries
            .values()
            .filter(|e| e.looked_after())
            .map(|e| e.next_attempt);
        plan::next_wake(times, fallback)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings() -> AcmeSettings {
        let mut s = AcmeSettings::new("https://acme.example.com/dir");
        s.retry_min = Duration::from_secs(60);
        s.retry_max = Duration::from_secs(3600);
        s
    }

    #[test]
    fn only_looked_after_sets_whose_time_came_are_due() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut state = State::default();
        let mut configured = Entry::new(vec!["a.com".into()], t0);
        configured.configured = true;
        state.entries.insert("a.com".into(), configured);
        // An on-demand name that never got a certificate is not retried by the loop.
        let mut failed_on_demand = Entry::new(vec!["b.com".into()], t0);
        failed_on_demand.on_demand = true;
        state.entries.insert("b.com".into(), failed_on_demand);
        assert_eq!(state.due(t0), vec!["a.com".to_string()]);

        let s = settings();
        if let Some(e) = state.entries.get_mut("a.com") {
            e.failed("CA down".into(), &s, t0);
        }
        assert!(state.due(t0).is_empty());
        let wake = state.next_wake(t0 + Duration::from_secs(86_400));
        assert!(wake >= t0 + Duration::from_secs(60) && wake <= t0 + Duration::from_secs(75));
        assert_eq!(state.due(wake), vec!["a.com".to_string()]);
    }

    #[test]
    fn a_rate_limit_backs_off_to_the_longest_wait_at_once() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let s = settings();
        let mut e = Entry::new(vec!["a.com".into()], t0);
        e.failed(
            "API error: too many certificates (urn:ietf:params:acme:error:rateLimited)".into(),
            &s,
            t0,
        );
        assert_eq!(e.next_attempt, t0 + s.retry_max);
        assert_eq!(e.failures, 1);
    }
}
