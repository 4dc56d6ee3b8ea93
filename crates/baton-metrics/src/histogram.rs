//! Log-linear latency histogram over microseconds (HDR-like, ~3% relative error).
//!
//! Values below 64 µs each get their own bucket. Every power of two above that,
//! `[2^k, 2^(k+1))`, is split into 32 equal sub-buckets, so a bucket is never wider than
//! 1/32 of its lower bound. The top bucket ends at [`MAX_TRACKABLE_MICROS`] (about
//! 71 minutes); larger values are clamped into it. 896 buckets in all.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::MetricsError;

/// log2 of the number of sub-buckets per power of two.
const SUB_BITS: u32 = 5;
/// Sub-buckets per power of two.
const SUB: usize = 1 << SUB_BITS;
/// Values below this are recorded exactly, one bucket each.
const LINEAR: u64 = 2 * SUB as u64;
/// Exponent of the first log-linear range (`2^6 = 64`).
const FIRST_EXP: u32 = LINEAR.trailing_zeros();
/// Exponent of the last log-linear range: `[2^31, 2^32)` µs covers a bit over an hour.
const LAST_EXP: u32 = 31;

/// Number of buckets in every histogram.
pub const BUCKETS: usize = LINEAR as usize + (LAST_EXP - FIRST_EXP + 1) as usize * SUB;
/// Largest value the histogram distinguishes (about 71.6 minutes); larger values clamp here.
pub const MAX_TRACKABLE_MICROS: u64 = (1 << (LAST_EXP + 1)) - 1;

/// Bucket index of a value in microseconds (clamped to the top bucket).
pub(crate) fn bucket_index(micros: u64) -> usize {
    let v = micros.min(MAX_TRACKABLE_MICROS);
    if v < LINEAR {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros();
    let shift = exp - SUB_BITS;
    let sub = (v >> shift) as usize - SUB;
    LINEAR as usize + (exp - FIRST_EXP) as usize * SUB + sub
}

/// Inclusive value range `(lowest, highest)` in microseconds of a bucket.
pub(crate) fn bucket_bounds(index: usize) -> (u64, u64) {
    if index < LINEAR as usize {
        return (index as u64, index as u64);
    }
    let j = index - LINEAR as usize;
    let exp = FIRST_EXP + (j / SUB) as u32;
    let shift = exp - SUB_BITS;
    let lowest = ((SUB + j % SUB) as u64) << shift;
    (lowest, lowest + (1 << shift) - 1)
}

/// The value that stands for every sample of a bucket: its midpoint.
pub(crate) fn representative(index: usize) -> u64 {
    let (lowest, highest) = bucket_bounds(index);
    lowest + (highest - lowest).div_ceil(2)
}

/// Whole microseconds of a duration, saturating instead of overflowing.
pub(crate) fn duration_micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A latency histogram: bucket counts plus the exact sum of recorded values.
///
/// Plain (non-atomic) data: what [`crate::VersionMetrics::snapshot`] returns, and what tests
/// and offline tools fill with [`Histogram::record`]. Serialized sparsely (non-empty buckets
/// only), so an idle version costs a few bytes on the wire.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(try_from = "HistogramWire", into = "HistogramWire")]
pub struct Histogram {
    /// Counts of buckets `0..counts.len()`; the buckets after its end are empty. Ends at
    /// the last non-empty bucket when taken from the atomics ([`Self::from_dense`]): a
    /// snapshot of latencies up to a few milliseconds is ~250 counts, not [`BUCKETS`] —
    /// the controller keeps ten minutes of one a second per version.
    counts: Vec<u64>,
    /// Exact sum of recorded values in µs (before clamping), for the mean and Prometheus `_sum`.
    sum_micros: u64,
}

// === impl Histogram ===

impl Histogram {
    /// Builds a histogram from the counts of the first buckets (used by the atomic
    /// snapshot), dropping the empty buckets at the end.
    pub(crate) fn from_dense(mut counts: Vec<u64>, sum_micros: u64) -> Self {
        debug_assert!(counts.len() <= BUCKETS);
        counts.truncate(BUCKETS);
        let used = counts.iter().rposition(|&n| n > 0).map_or(0, |i| i + 1);
        counts.truncate(used);
        counts.shrink_to_fit();
        Self { counts, sum_micros }
    }

    /// The count of bucket `index`, growing the storage to reach it.
    fn slot(&mut self, index: usize) -> &mut u64 {
        if index >= self.counts.len() {
            self.counts.resize(index + 1, 0);
        }
        &mut self.counts[index]
    }

    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Exact sum of the recorded values, in microseconds.
    pub fn sum_micros(&self) -> u64 {
        self.sum_micros
    }

    /// Mean of the recorded values (exact, from the sum); zero when empty.
    pub fn mean(&self) -> Duration {
        match self.count() {
            0 => Duration::ZERO,
            n => Duration::from_micros(self.sum_micros / n),
        }
    }

    /// The `q`-quantile (`q` in `0.0..=1.0`, clamped) as its bucket's midpoint; zero when empty.
    ///
    /// Uses the nearest-rank definition: the smallest value with at least `ceil(q * n)`
    /// values at or below it.
    pub fn quantile(&self, q: f64) -> Duration {
        let total = self.count();
        if total == 0 {
            return Duration::ZERO;
        }
        let q = if q.is_nan() { 0.0 } else { q.clamp(0.0, 1.0) };
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (index, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Duration::from_micros(representative(index));
            }
        }
        Duration::from_micros(representative(BUCKETS - 1))
    }

    /// Non-empty buckets in ascending order: (representative value in µs, count).
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.nonempty().map(|(index, n)| (representative(index), n))
    }

    /// Non-empty buckets in ascending order: (bucket index, count).
    pub(crate) fn nonempty(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(index, &n)| (index, n))
    }

    /// What was recorded since `earlier` (bucket-wise saturating subtraction).
    pub fn delta(&self, earlier: &Histogram) -> Histogram {
        if self.counts.is_empty() {
            return Histogram::default();
        }
        let counts = self
            .counts
            .iter()
            .enumerate()
            .map(|(i, &n)| n.saturating_sub(earlier.counts.get(i).copied().unwrap_or(0)))
            .collect();
        Histogram {
            counts,
            sum_micros: self.sum_micros.saturating_sub(earlier.sum_micros),
        }
    }

    /// Adds `other`'s samples to this histogram (bucket-wise, saturating): the sum of
    /// what several proxies recorded for one version.
    pub fn merge(&mut self, other: &Histogram) {
        if other.counts.is_empty() {
            return;
        }
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine = mine.saturating_add(*theirs);
        }
        self.sum_micros = self.sum_micros.saturating_add(other.sum_micros);
    }

    /// Records one value in microseconds (non-atomic; for tests and offline use).
    pub fn record(&mut self, micros: u64) {
        *self.slot(bucket_index(micros)) += 1;
        self.sum_micros = self.sum_micros.saturating_add(micros);
    }

    /// Number of recorded values whose bucket lies entirely at or below `micros`.
    ///
    /// A lower bound of "values <= micros", off by at most the one bucket straddling it
    /// (the histogram's ~3% resolution). Used for Prometheus `le` buckets.
    pub(crate) fn count_at_or_below(&self, micros: u64) -> u64 {
        self.nonempty()
            .take_while(|&(index, _)| bucket_bounds(index).1 <= micros)
            .map(|(_, n)| n)
            .sum()
    }
}

impl PartialEq for Histogram {
    /// Equal when they hold the same counts (an empty histogram equals an all-zero one).
    fn eq(&self, other: &Self) -> bool {
        self.sum_micros == other.sum_micros && self.nonempty().eq(other.nonempty())
    }
}

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count())
            .field("sum_micros", &self.sum_micros)
            .field("buckets", &self.buckets().collect::<Vec<_>>())
            .finish()
    }
}

/// Serialized form of [`Histogram`]: only non-empty buckets, as `[index, count]` pairs.
#[derive(Serialize, Deserialize)]
struct HistogramWire {
    sum_micros: u64,
    buckets: Vec<(usize, u64)>,
}

impl From<Histogram> for HistogramWire {
    fn from(h: Histogram) -> Self {
        HistogramWire {
            sum_micros: h.sum_micros,
            buckets: h.nonempty().collect(),
        }
    }
}

impl TryFrom<HistogramWire> for Histogram {
    type Error = MetricsError;

    fn try_from(wire: HistogramWire) -> Result<Self, Self::Error> {
        let mut h = Histogram {
            counts: Vec::new(),
            sum_micros: wire.sum_micros,
        };
        for (index, n) in wire.buckets {
            if index >= BUCKETS {
                return Err(MetricsError::BucketOutOfRange {
                    index,
                    buckets: BUCKETS,
                });
            }
            let slot = h.slot(index);
            *slot = slot.saturating_add(n);
        }
        Ok(h)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
