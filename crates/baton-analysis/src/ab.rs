//! A/B experiments: per-variant figures and whether the differences
//! are significant, for `baton status APP` during an `ab_test`.

use crate::judge::{compare_errors, compare_latency, LatencyComparison, ProportionComparison};
use crate::stats::normal_quantile;
use baton_metrics::MetricsSnapshot;
use serde::{Deserialize, Serialize};

/// Statistical power used for [`VariantComparison::needed_per_variant`].
pub const DEFAULT_POWER: f64 = 0.8;

/// What one variant did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VariantStats {
    pub version: String,
    pub requests: u64,
    /// Errors (5xx + no response) / requests; 0 without requests.
    pub error_rate: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

/// The figures of one variant from its snapshot.
pub fn variant_stats(version: &str, s: &MetricsSnapshot) -> VariantStats {
    let q = |q: f64| s.quantile(q).as_micros() as f64 / 1000.0;
    VariantStats {
        version: version.to_string(),
        requests: s.requests,
        error_rate: s.error_rate(),
        p50_ms: q(0.5),
        p95_ms: q(0.95),
        p99_ms: q(0.99),
    }
}

/// A variant against the control: a = control, b = variant in both comparisons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VariantComparison {
    pub control: String,
    pub variant: String,
    pub errors: ProportionComparison,
    pub latency: LatencyComparison,
    /// The error rates differ at the requested confidence.
    pub error_significant: bool,
    /// The latency distributions differ at the requested confidence (Mann–Whitney).
    pub latency_significant: bool,
    /// Requests each variant still needs before a difference of `mde_error_rate` in error
    /// rate would be detected (power 0.8); `None` once the difference is significant or
    /// when `mde_error_rate` is not a rate in (0, 1).
    pub needed_per_variant: Option<u64>,
    /// Total requests each variant needs for that (`None` as above).
    pub required_per_variant: Option<u64>,
    pub control_stats: VariantStats,
    pub variant_stats: VariantStats,
    pub confidence: f64,
    pub mde_error_rate: f64,
}

/// Compares `variant` with `control` at `confidence` (e.g. 0.95); `mde_error_rate` is the
/// smallest difference in error rate worth detecting (e.g. 0.01), for the sample size.
pub fn compare_variants(
    confidence: f64,
    mde_error_rate: f64,
    control: (&str, &MetricsSnapshot),
    variant: (&str, &MetricsSnapshot),
) -> VariantComparison {
    let errors = compare_errors(confidence, control.1, variant.1);
    let latency = compare_latency(confidence, control.1, variant.1);
    let valid_mde = mde_error_rate > 0.0 && mde_error_rate < 1.0;
    let required = valid_mde.then(|| {
        required_sample_size(
            errors.rate_a,
            mde_error_rate,
            1.0 - confidence,
            DEFAULT_POWER,
        )
    });
    let have = control.1.requests.min(variant.1.requests);
    let needed = match required {
        Some(n) if !errors.significant => Some(n.saturating_sub(have)),
        _ => None,
    };
    VariantComparison {
        control: control.0.to_string(),
        variant: variant.0.to_string(),
        error_significant: errors.significant,
        latency_significant: latency.significant,
        errors,
        latency,
        needed_per_variant: needed,
        required_per_variant: required,
        control_stats: variant_stats(control.0, control.1),
        variant_stats: variant_stats(variant.0, variant.1),
        confidence,
        mde_error_rate,
    }
}

/// Requests per variant for a two-sided two-proportion test at level `alpha` to detect a
/// rise from `p_base` to `p_base + mde` with probability `power` (Fleiss's formula without
/// continuity correction):
///
/// `n = (z₁₋α/₂·√(2·p̄(1−p̄)) + z_power·√(p₁(1−p₁) + p₂(1−p₂)))² / (p₂ − p₁)²`, p̄ = (p₁+p₂)/2.
///
/// `p_base + mde` is capped at 1. Returns `u64::MAX` when no sample can do it (mde ≤ 0,
/// p_base ≥ 1, alpha or power outside (0, 1)).
pub fn required_sample_size(p_base: f64, mde: f64, alpha: f64, power: f64) -> u64 {
    let p1 = p_base.clamp(0.0, 1.0);
    let p2 = (p1 + mde).min(1.0);
    let d = p2 - p1;
    let valid = d > 0.0 && alpha > 0.0 && alpha < 1.0 && power > 0.0 && power < 1.0;
    if !valid || !d.is_finite() {
        return u64::MAX;
    }
    let za = normal_quantile(1.0 - alpha / 2.0);
    let zb = normal_quantile(power);
    let pbar = (p1 + p2) / 2.0;
    let root =
        za * (2.0 * pbar * (1.0 - pbar)).sqrt() + zb * (p1 * (1.0 - p1) + p2 * (1.0 - p2)).sqrt();
    let n = (root * root / (d * d)).ceil();
    if n.is_finite() && n < u64::MAX as f64 {
        (n as u64).max(1)
    } else {
        u64::MAX
    }
}
