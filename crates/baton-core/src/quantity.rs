//! A count of instances written either as a number (`1`) or a percentage (`"25%"`), as in
//! Kubernetes' `maxSurge` / `maxUnavailable`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    Count(u32),
    Percent(u32),
}

impl Quantity {
    /// Resolves against `total`, rounding a percentage up (`round_up`, as for surge) or
    /// down (as for unavailability).
    pub fn resolve(self, total: u32, round_up: bool) -> u32 {
        match self {
            Quantity::Count(n) => n,
            Quantity::Percent(p) => {
                let scaled = u64::from(total) * u64::from(p);
                let v = if round_up {
                    scaled.div_ceil(100)
                } else {
                    scaled / 100
                };
                v as u32
            }
        }
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quantity::Count(n) => write!(f, "{n}"),
            Quantity::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Quantity::Count(n) => s.serialize_u32(*n),
            Quantity::Percent(_) => s.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(i64),
            S(String),
        }
        let bad = || {
            serde::de::Error::custom(
                "expected a non-negative count like 1 or a percentage like \"25%\" (0-100%)",
            )
        };
        match Raw::deserialize(d)? {
            Raw::N(n) => u32::try_from(n).map(Quantity::Count).map_err(|_| bad()),
            Raw::S(s) => {
                let s = s.trim();
                if let Some(p) = s.strip_suffix('%') {
                    match p.trim().parse::<u32>() {
                        Ok(p) if p <= 100 => Ok(Quantity::Percent(p)),
                        _ => Err(bad()),
                    }
                } else {
                    s.parse::<u32>().map(Quantity::Count).map_err(|_| bad())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_rounding_matches_kubernetes() {
        assert_eq!(Quantity::Percent(25).resolve(3, true), 1);
        assert_eq!(Quantity::Percent(25).resolve(3, false), 0);
        assert_eq!(Quantity::Percent(50).resolve(4, false), 2);
        assert_eq!(Quantity::Count(2).resolve(10, false), 2);
    }

    #[test]
    fn deserializes_counts_and_percentages() {
        let q: Quantity = serde_json::from_str("\"50%\"").unwrap();
        assert_eq!(q, Quantity::Percent(50));
        let q: Quantity = serde_json::from_str("2").unwrap();
        assert_eq!(q, Quantity::Count(2));
        assert!(serde_json::from_str::<Quantity>("-1").is_err());
        assert!(serde_json::from_str::<Quantity>("\"150%\"").is_err());
    }
}
