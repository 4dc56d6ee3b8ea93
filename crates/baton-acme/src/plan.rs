//! Pure decisions, no I/O and no clock (time comes in as an argument): when a certificate
//! is due, how long to back off after a failure, and whether an allow list admits a host.

use std::time::{Duration, SystemTime};

/// When a certificate valid from `not_before` to `not_after` should be renewed.
///
/// The margin is `renew_before` (the operator's "renew when less than this remains"), and
/// never less than a third of the lifetime. A certificate whose whole lifetime is shorter
/// than `renew_before` (a short-lived one, e.g. 6 days against the default 30) would be
/// due at once, forever; for it the margin is a third of its lifetime instead.
pub fn renew_at(
    not_before: SystemTime,
    not_after: SystemTime,
    renew_before: Duration,
) -> SystemTime {
    let lifetime = not_after.duration_since(not_before).unwrap_or_default();
    let third = lifetime / 3;
    let margin = if renew_before < lifetime {
        renew_before.max(third)
    } else {
        third
    };
    not_after.checked_sub(margin).unwrap_or(not_before)
}

/// The wait before the next order after `failures` failed ones in a row (1 = the first
/// failure): `retry_min` doubled per failure, capped at `retry_max`, then spread by
/// `jitter` (0.0..1.0, random in production) over ±25 % and kept within the bounds, so
/// many name sets that failed together do not come back together.
pub fn backoff(failures: u32, retry_min: Duration, retry_max: Duration, jitter: f64) -> Duration {
    let doublings = failures.saturating_sub(1).min(30);
    let base = retry_min
        .checked_mul(1u32 << doublings)
        .unwrap_or(retry_max)
        .min(retry_max);
    let factor = 0.75 + 0.5 * jitter.clamp(0.0, 1.0);
    base.mul_f64(factor).clamp(retry_min, retry_max)
}

/// Whether `host` (normalized) matches an allow entry: an exact name, or `*.example.com`
/// for exactly one label in front of `example.com` (as a wildcard certificate would).
pub fn allow_list_matches(host: &str, allow: &[String]) -> bool {
    allow.iter().any(|entry| {
        let entry = entry.trim_end_matches('.').to_ascii_lowercase();
        match entry.strip_prefix("*.") {
            Some(parent) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
            None => host == entry,
        }
    })
}

/// The earliest of the given instants, or `fallback` when there is none.
pub fn next_wake(times: impl IntoIterator<Item = SystemTime>, fallback: SystemTime) -> SystemTime {
    times.into_iter().min().unwrap_or(fallback).min(fallback)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn at(days: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + DAY * days as u32
    }

    #[test]
    fn ninety_day_cert_is_due_thirty_days_before_expiry() {
        assert_eq!(renew_at(at(0), at(90), 30 * DAY), at(60));
    }

    #[test]
    fn long_cert_is_due_when_a_third_is_left() {
        assert_eq!(renew_at(at(0), at(360), 30 * DAY), at(240));
    }

    #[test]
    fn short_lived_cert_is_not_due_at_once() {
        // 6 days against the default 30: due with 2 days left.
        assert_eq!(renew_at(at(0), at(6), 30 * DAY), at(4));
    }

    #[test]
    fn margin_just_under_the_lifetime_makes_it_due_at_once() {
        let due = renew_at(at(0), at(90), 90 * DAY - Duration::from_secs(1));
        assert_eq!(due, at(0) + Duration::from_secs(1));
    }

    #[test]
    fn backoff_doubles_from_min_to_max() {
        let (min, max) = (Duration::from_secs(60), Duration::from_secs(3600));
        let mid = |n| backoff(n, min, max, 0.5);
        assert_eq!(mid(1), min);
        assert_eq!(mid(2), 2 * min);
        assert_eq!(mid(3), 4 * min);
        assert_eq!(mid(7), max);
        assert_eq!(mid(1000), max);
    }

    #[test]
    fn backoff_jitter_spreads_but_stays_in_bounds() {
        let (min, max) = (Duration::from_secs(60), Duration::from_secs(3600));
        assert_eq!(backoff(3, min, max, 0.0), Duration::from_secs(180));
        assert_eq!(backoff(3, min, max, 1.0), Duration::from_secs(300));
        assert_eq!(backoff(1, min, max, 0.0), min);
        assert_eq!(backoff(30, min, max, 1.0), max);
    }

    #[test]
    fn allow_list_exact_and_one_label_wildcard() {
        let allow = vec![
            "shop.example.com".to_string(),
            "*.apps.example.com".to_string(),
        ];
        assert!(allow_list_matches("shop.example.com", &allow));
        assert!(allow_list_matches("a.apps.example.com", &allow));
        assert!(!allow_list_matches("apps.example.com", &allow));
        assert!(!allow_list_matches("a.b.apps.example.com", &allow));
        assert!(!allow_list_matches("evil-shop.example.com", &allow));
        assert!(!allow_list_matches("a.apps.example.com.evil.net", &allow));
        assert!(!allow_list_matches("anything.com", &[]));
    }

    #[test]
    fn next_wake_is_the_earliest_or_the_fallback() {
        assert_eq!(next_wake([at(3), at(1)], at(2)), at(1));
        assert_eq!(next_wake([at(3)], at(2)), at(2));
        assert_eq!(next_wake([], at(2)), at(2));
    }
}
