//! Durations written the way people write them in config: "30s", "2m", "1h 30m", "250ms".

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A `Duration` that (de)serializes as a human string such as `"30s"` or `"2m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub const fn from_secs(s: u64) -> Self {
        HumanDuration(Duration::from_secs(s))
    }
    pub const fn from_millis(ms: u64) -> Self {
        HumanDuration(Duration::from_millis(ms))
    }
    pub fn get(self) -> Duration {
        self.0
    }
}

impl From<Duration> for HumanDuration {
    fn from(d: Duration) -> Self {
        HumanDuration(d)
    }
}

impl From<HumanDuration> for Duration {
    fn from(d: HumanDuration) -> Self {
        d.0
    }
}

impl FromStr for HumanDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(s.trim())
            .map(HumanDuration)
            .map_err(|e| {
                format!("invalid duration {s:?} ({e}); write it like \"500ms\", \"30s\" or \"2m\"")
            })
    }
}

/// Written the way a config file writes it: one number in the largest unit that divides
/// it exactly — `"30d"`, `"36h"`, `"90m"`, `"45s"`, `"250ms"` (not humantime's
/// `"11months 30days 3h…"` for 365 days, a month there being 30.44 days). It parses back
/// to the same duration.
impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u128, &str); 7] = [
            (86_400_000_000_000, "d"),
            (3_600_000_000_000, "h"),
            (60_000_000_000, "m"),
            (1_000_000_000, "s"),
            (1_000_000, "ms"),
            (1_000, "us"),
            (1, "ns"),
        ];
        let nanos = self.0.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        let (size, unit) = UNITS
            .iter()
            .find(|(size, _)| nanos.is_multiple_of(*size))
            .copied()
            .unwrap_or((1, "ns"));
        write!(f, "{}{unit}", nanos / size)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_round_trip() {
        let d: HumanDuration = "2m".parse().unwrap();
        assert_eq!(d.0, Duration::from_secs(120));
        assert_eq!(d.to_string(), "2m");
        let d: HumanDuration = "250ms".parse().unwrap();
        assert_eq!(d.0, Duration::from_millis(250));
    }

    #[test]
    fn prints_one_number_in_the_largest_exact_unit_and_parses_back() {
        for (text, shown) in [
            ("30d", "30d"),
            ("365d", "365d"),
            ("8760h", "365d"),
            ("36h", "36h"),
            ("1h 30m", "90m"),
            ("6h", "6h"),
            ("1m", "1m"),
            ("90s", "90s"),
            ("1500ms", "1500ms"),
            ("250ms", "250ms"),
            ("0s", "0s"),
            ("3us", "3us"),
        ] {
            let d: HumanDuration = text.parse().unwrap();
            assert_eq!(d.to_string(), shown, "{text}");
            assert_eq!(shown.parse::<HumanDuration>().unwrap(), d, "{shown}");
        }
    }

    #[test]
    fn rejects_garbage_with_a_hint() {
        let e = "five".parse::<HumanDuration>().unwrap_err();
        assert!(e.contains("\"30s\""), "{e}");
    }
}
