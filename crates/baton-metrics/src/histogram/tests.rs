//! Unit tests for the bucket layout and histogram arithmetic.

use super::*;

/// Exact nearest-rank quantile of sorted values.
fn exact_quantile(sorted: &[u64], q: f64) -> u64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Asserts the histogram's quantiles are within one bucket's half-width of the exact ones.
fn assert_quantiles_close(values: &mut [u64]) {
    let mut h = Histogram::default();
    for &v in values.iter() {
        h.record(v);
    }
    values.sort_unstable();
    for q in [0.0, 0.01, 0.1, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0] {
        let exact = exact_quantile(values, q);
        let got = h.quantile(q).as_micros() as u64;
        let tolerance = exact / 64 + 1;
        assert!(
            got.abs_diff(exact) <= tolerance,
            "q={q}: histogram says {got}µs, exact is {exact}µs (tolerance {tolerance})"
        );
    }
}

#[test]
fn layout_is_contiguous_and_ascending() {
    let mut expected_low = 0;
    for index in 0..BUCKETS {
        let (low, high) = bucket_bounds(index);
        assert_eq!(low, expected_low, "gap before bucket {index}");
        assert!(high >= low);
        assert_eq!(bucket_index(low), index);
        assert_eq!(bucket_index(high), index);
        let rep = representative(index);
        assert!(low <= rep && rep <= high);
        expected_low = high + 1;
    }
    assert_eq!(expected_low - 1, MAX_TRACKABLE_MICROS);
    assert_eq!(BUCKETS, 896);
}

#[test]
fn buckets_are_at_most_one_thirty_second_wide() {
    for index in LINEAR as usize..BUCKETS {
        let (low, high) = bucket_bounds(index);
        assert!(
            (high - low + 1) * 32 <= low,
            "bucket {index} [{low},{high}] too wide"
        );
    }
}

#[test]
fn covers_more_than_an_hour_and_clamps_above() {
    let hour = 3_600_000_000;
    assert!(MAX_TRACKABLE_MICROS > hour);
    assert_eq!(bucket_index(u64::MAX), BUCKETS - 1);
    let mut h = Histogram::default();
    h.record(u64::MAX);
    assert_eq!(h.count(), 1);
    assert!(h.quantile(0.5) > Duration::from_secs(3600));
}

#[test]
fn small_values_are_exact() {
    let mut values: Vec<u64> = (0..64).collect();
    let mut h = Histogram::default();
    values.iter().for_each(|&v| h.record(v));
    values.sort_unstable();
    for q in [0.01, 0.25, 0.5, 0.9, 1.0] {
        assert_eq!(h.quantile(q).as_micros() as u64, exact_quantile(&values, q));
    }
}

#[test]
fn uniform_distribution_quantiles_within_bucket_error() {
    let mut values: Vec<u64> = (1..=100_000).collect();
    assert_quantiles_close(&mut values);
}

#[test]
fn long_tailed_distribution_quantiles_within_bucket_error() {
    let mut rng = fastrand::Rng::with_seed(7);
    // Log-uniform from 100µs to ~100s: most requests fast, a long tail of slow ones.
    let mut values: Vec<u64> = (0..50_000)
        .map(|_| (100.0 * 10f64.powf(rng.f64() * 6.0)) as u64)
        .collect();
    assert_quantiles_close(&mut values);
}

#[test]
fn empty_histogram_reports_zero() {
    let h = Histogram::default();
    assert_eq!(h.count(), 0);
    assert_eq!(h.quantile(0.99), Duration::ZERO);
    assert_eq!(h.mean(), Duration::ZERO);
    assert_eq!(h.buckets().count(), 0);
}

#[test]
fn out_of_range_quantiles_clamp() {
    let mut h = Histogram::default();
    h.record(10);
    h.record(20);
    assert_eq!(h.quantile(-1.0), Duration::from_micros(10));
    assert_eq!(h.quantile(f64::NAN), Duration::from_micros(10));
    assert_eq!(h.quantile(7.0), Duration::from_micros(20));
}

#[test]
fn mean_is_exact() {
    let mut h = Histogram::default();
    [1_000, 2_000, 6_000].iter().for_each(|&v| h.record(v));
    assert_eq!(h.mean(), Duration::from_millis(3));
    assert_eq!(h.sum_micros(), 9_000);
}

#[test]
fn buckets_are_ascending_with_ties_merged() {
    let mut h = Histogram::default();
    for v in [5_000, 7, 5_001, 7, 60] {
        h.record(v);
    }
    let buckets: Vec<_> = h.buckets().collect();
    assert_eq!(
        buckets.len(),
        3,
        "5000 and 5001 share a bucket: {buckets:?}"
    );
    assert_eq!(buckets[0], (7, 2));
    assert_eq!(buckets[1], (60, 1));
    assert_eq!(buckets[2].1, 2);
    assert!(buckets.windows(2).all(|w| w[0].0 < w[1].0));
}

#[test]
fn delta_subtracts_bucketwise() {
    let mut earlier = Histogram::default();
    earlier.record(10);
    earlier.record(1_000);
    let mut later = earlier.clone();
    later.record(1_000);
    later.record(50_000);
    let d = later.delta(&earlier);
    assert_eq!(d.count(), 2);
    assert_eq!(d.sum_micros(), 51_000);
    assert_eq!(d.buckets().map(|(_, n)| n).collect::<Vec<_>>(), vec![1, 1]);
    // Subtracting a newer snapshot saturates instead of wrapping.
    assert_eq!(earlier.delta(&later).count(), 0);
    assert_eq!(later.delta(&Histogram::default()), later);
    assert_eq!(Histogram::default().delta(&later).count(), 0);
}

#[test]
fn empty_equals_all_zero() {
    let mut zeroed = Histogram::default();
    zeroed.record(5);
    let zeroed = zeroed.delta(&zeroed.clone());
    assert_eq!(zeroed, Histogram::default());
}

#[test]
fn count_at_or_below_never_overcounts() {
    let mut h = Histogram::default();
    [999, 1_000, 1_001, 2_000].iter().for_each(|&v| h.record(v));
    let at_1ms = h.count_at_or_below(1_000);
    assert!(at_1ms <= 2, "counted values above 1ms: {at_1ms}");
    assert_eq!(h.count_at_or_below(2_100), 4);
    assert_eq!(h.count_at_or_below(0), 0);
}

#[test]
fn serde_round_trip_is_sparse() {
    let mut h = Histogram::default();
    [3, 3, 70_000].iter().for_each(|&v| h.record(v));
    let json = serde_json::to_string(&h).unwrap();
    assert!(json.len() < 80, "not sparse: {json}");
    let back: Histogram = serde_json::from_str(&json).unwrap();
    assert_eq!(back, h);
    assert_eq!(back.quantile(1.0), h.quantile(1.0));
}

#[test]
fn serde_rejects_unknown_bucket() {
    let err = serde_json::from_str::<Histogram>(r#"{"sum_micros":1,"buckets":[[5000,1]]}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("out of range"), "{err}");
}

#[test]
fn merge_is_the_histogram_of_both_sets_of_samples() {
    let (mut a, mut b, mut both) = (
        Histogram::default(),
        Histogram::default(),
        Histogram::default(),
    );
    for v in [3, 70, 1_000, 250_000] {
        a.record(v);
        both.record(v);
    }
    for v in [3, 9_000, 5_000_000] {
        b.record(v);
        both.record(v);
    }
    let mut merged = a.clone();
    merged.merge(&b);
    assert_eq!(merged, both);
    assert_eq!(merged.count(), 7);
    // Merging into an empty histogram copies; merging an empty one changes nothing.
    let mut empty = Histogram::default();
    empty.merge(&a);
    assert_eq!(empty, a);
    a.merge(&Histogram::default());
    assert_eq!(a, empty);
}

#[test]
fn storage_ends_at_the_last_nonempty_bucket() {
    let mut h = Histogram::default();
    h.record(100);
    assert_eq!(h.counts.len(), bucket_index(100) + 1);
    let mut dense = vec![0; BUCKETS];
    dense[bucket_index(100)] = 1;
    let from_atomics = Histogram::from_dense(dense, 100);
    assert_eq!(from_atomics.counts.len(), bucket_index(100) + 1);
    assert_eq!(from_atomics, h);
    assert_eq!(Histogram::from_dense(vec![0; BUCKETS], 0).counts.len(), 0);
    // A higher value grows it; deltas and merges across lengths count every bucket.
    let mut later = h.clone();
    later.record(3_000_000);
    assert_eq!(later.counts.len(), bucket_index(3_000_000) + 1);
    assert_eq!(later.delta(&h).count(), 1);
    assert_eq!(later.delta(&h).quantile(1.0), later.quantile(1.0));
    assert_eq!(h.delta(&later).count(), 0);
    let mut merged = h.clone();
    merged.merge(&later);
    assert_eq!(merged.count(), 3);
    assert_eq!(merged.quantile(1.0), later.quantile(1.0));
}

#[test]
fn a_snapshot_copies_only_the_buckets_up_to_the_slowest_request() {
    let m = crate::VersionMetrics::new();
    assert_eq!(m.snapshot().latency.counts.len(), 0);
    for micros in [40, 300, 2_500] {
        m.request_started();
        m.request_finished(200, std::time::Duration::from_micros(micros), 0, 0);
    }
    let snap = m.snapshot();
    assert_eq!(snap.latency.counts.len(), bucket_index(2_500) + 1);
    assert!(snap.latency.counts.len() < BUCKETS / 3);
    assert_eq!(snap.latency.count(), 3);
    assert_eq!(snap.latency.sum_micros(), 2_840);
}
