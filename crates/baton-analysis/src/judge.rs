//! One verdict on a canary: its metrics against stable's, checked against the spec.
//!
//! Rules (also in the README):
//! - A version with fewer than `min_requests` requests makes the verdict
//!   **inconclusive**: there is never a pass without data.
//! - One exception lets a clearly broken canary fail early: when the canary already has
//!   more errors than `max_error_rate × min_requests`, its error rate would stay above the
//!   limit even if every request until `min_requests` succeeded, so the check fails at once.
//! - Otherwise the verdict is **fail** if any check fails, **inconclusive** if any check
//!   lacks data, and **pass** only when every check passed.
//!
//! Error-rate increases are judged with Fisher's exact test when an expected cell count is
//! below 5 and the two-proportion z-test otherwise; latency shifts with Mann–Whitney U and
//! the Hodges–Lehmann estimate with its confidence interval, over every finished request
//! (failed ones too: a canary that fails fast is caught by the error checks, not hidden
//! by them). Latencies are histogram bucket midpoints (~3% resolution), so shift
//! estimates and intervals are quantized to bucket widths. Everything is `Serialize`
//! so the controller can store it in events and history as is.

use crate::spec::AnalysisSpec;
use crate::stats;
use baton_metrics::MetricsSnapshot;
use serde::{Deserialize, Serialize};

/// The outcome of a judgement, or of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JudgeVerdict {
    Pass,
    Fail,
    Inconclusive,
}

/// The outcome of one check (same three values as a verdict).
pub type CheckOutcome = JudgeVerdict;

/// What the judge decided and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    pub verdict: JudgeVerdict,
    /// One human line: the failing checks, what data is missing, or that all passed.
    pub reason: String,
    /// Every check with its figures, the `min_requests` ones first.
    pub checks: Vec<CheckResult>,
    /// Stable (a) against canary (b) latencies; `None` until both served requests.
    pub latency: Option<LatencyComparison>,
    /// Stable (a) against canary (b) error rates; `None` until both served requests.
    pub errors: Option<ProportionComparison>,
}

/// One check: its figure, its limit and its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// `min_requests (canary)`, `error_rate`, `error_rate_increase`, `latency_p99`,
    /// `latency_increase`.
    pub name: String,
    /// The measured figure, in `unit`.
    pub value: f64,
    /// The configured limit, in `unit`.
    pub limit: f64,
    /// `requests`, `rate` (0..=1) or `ms`.
    pub unit: String,
    pub outcome: CheckOutcome,
    /// One human line with the figures.
    pub detail: String,
}

/// Mann–Whitney U and Hodges–Lehmann comparison of latencies: a = stable / control,
/// b = canary / variant. Positive shifts and effect sizes mean b is slower.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LatencyComparison {
    /// `mann_whitney_exact` or `mann_whitney_normal`.
    pub test: String,
    pub n_a: u64,
    pub n_b: u64,
    /// U of sample a (pairs where a is slower, plus half the ties), as SciPy reports it.
    pub u: f64,
    /// Two-sided.
    pub p_value: f64,
    /// `p_value < 1 − confidence`.
    pub significant: bool,
    /// Hodges–Lehmann estimate of b − a, in µs.
    pub shift_us: f64,
    /// Its confidence interval at `confidence`, in µs.
    pub shift_ci_us: (f64, f64),
    pub confidence: f64,
    /// Rank-biserial correlation `2A − 1` in −1..=1.
    pub rank_biserial: f64,
    /// Common-language effect size A: P(b slower than a) + ½ P(equal).
    pub common_language: f64,
}

/// Comparison of error rates: a = stable / control, b = canary / variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProportionComparison {
    /// `fisher_exact` (an expected cell count below 5) or `two_proportion_z`.
    pub test: String,
    pub errors_a: u64,
    pub n_a: u64,
    pub rate_a: f64,
    pub errors_b: u64,
    pub n_b: u64,
    pub rate_b: f64,
    /// `rate_b − rate_a`.
    pub diff: f64,
    /// Newcombe's hybrid score interval of `diff` at `confidence`.
    pub diff_ci: (f64, f64),
    /// Two-sided.
    pub p_value: f64,
    /// `p_value < 1 − confidence`.
    pub significant: bool,
    /// The z statistic `(rate_a − rate_b) / se` when the z-test was used.
    pub z: Option<f64>,
    pub confidence: f64,
}

/// Judges `canary` against `stable` (windowed snapshots) under `spec`, naming the
/// versions only "canary" and "stable" in the reason.
pub fn judge(spec: &AnalysisSpec, stable: &MetricsSnapshot, canary: &MetricsSnapshot) -> Judgement {
    judge_versions(spec, ("", stable), ("", canary))
}

/// [`judge`] with version names for the reason ("canary v2 has 12 of 100 requests").
pub fn judge_versions(
    spec: &AnalysisSpec,
    (stable_version, stable): (&str, &MetricsSnapshot),
    (canary_version, canary): (&str, &MetricsSnapshot),
) -> Judgement {
    let label = |role: &str, version: &str| {
        if version.is_empty() {
            role.to_string()
        } else {
            format!("{role} {version}")
        }
    };
    let (stable_label, canary_label) = (
        label("stable", stable_version),
        label("canary", canary_version),
    );
    let confidence = spec.confidence;
    let min = spec.min_requests.max(1);
    let enough_canary = canary.requests >= min;
    let enough_stable = stable.requests >= min;
    let enough = enough_canary && enough_stable;
    let errors = (stable.requests > 0 && canary.requests > 0)
        .then(|| compare_errors(confidence, stable, canary));
    let latency = (stable.latency.count() > 0 && canary.latency.count() > 0)
        .then(|| compare_latency(confidence, stable, canary));

    let mut checks = Vec::new();
    for (who, snap, ok) in [
        (&canary_label, canary, enough_canary),
        (&stable_label, stable, enough_stable),
    ] {
        let role = who.split(' ').next().unwrap_or(who);
        checks.push(CheckResult {
            name: format!("min_requests ({role})"),
            value: snap.requests as f64,
            limit: min as f64,
            unit: "requests".into(),
            outcome: if ok {
                JudgeVerdict::Pass
            } else {
                JudgeVerdict::Inconclusive
            },
            detail: format!("{who} has {} of {min} requests", snap.requests),
        });
    }
    let sample = format!("{canary_label}, {} requests", canary.requests);

    if let Some(limit) = spec.max_error_rate {
        let rate = canary.error_rate();
        let certain = canary.errors() as f64 > limit * min as f64;
        let outcome = match (enough_canary, rate > limit) {
            (true, true) => JudgeVerdict::Fail,
            (true, false) => JudgeVerdict::Pass,
            (false, _) if certain => JudgeVerdict::Fail,
            (false, _) => JudgeVerdict::Inconclusive,
        };
        let detail = match outcome {
            JudgeVerdict::Fail if !enough_canary => format!(
                "{} error{} in {}'s first {} requests: its error rate stays above {} even if all \
                 of the {min} needed succeed",
                canary.errors(),
                if canary.errors() == 1 { "" } else { "s" },
                canary_label,
                canary.requests,
                pct(limit),
            ),
            JudgeVerdict::Fail => format!("error rate {} > {} ({sample})", pct(rate), pct(limit)),
            JudgeVerdict::Pass => format!("error rate {} <= {} ({sample})", pct(rate), pct(limit)),
            JudgeVerdict::Inconclusive => format!(
                "error rate {} so far, limit {} ({sample}, {min} needed)",
                pct(rate),
                pct(limit)
            ),
        };
        checks.push(CheckResult {
            name: "error_rate".into(),
            value: rate,
            limit,
            unit: "rate".into(),
            outcome,
            detail,
        });
    }

    if let Some(limit) = spec.max_error_rate_increase {
        let c = errors
            .clone()
            .unwrap_or_else(|| compare_errors(confidence, stable, canary));
        let worse = c.significant && c.diff > 0.0;
        let outcome = if !enough {
            JudgeVerdict::Inconclusive
        } else if worse && c.diff > limit {
            JudgeVerdict::Fail
        } else {
            JudgeVerdict::Pass
        };
        let figures = format!(
            "error rate {} vs {} on {stable_label}: {} (CI {}..{}, p = {}, {})",
            pct(c.rate_b),
            pct(c.rate_a),
            signed_points(c.diff),
            signed_points(c.diff_ci.0),
            signed_points(c.diff_ci.1),
            pvalue(c.p_value),
            c.test
        );
        let detail = match outcome {
            JudgeVerdict::Fail => {
                format!("{figures} > {} allowed ({sample})", signed_points(limit))
            }
            JudgeVerdict::Pass if worse => {
                format!("{figures}, within {} allowed", signed_points(limit))
            }
            JudgeVerdict::Pass => format!("{figures}: no significant increase"),
            JudgeVerdict::Inconclusive => format!("{figures}: not enough requests yet"),
        };
        checks.push(CheckResult {
            name: "error_rate_increase".into(),
            value: c.diff,
            limit,
            unit: "rate".into(),
            outcome,
            detail,
        });
    }

    for (percentile, limit) in &spec.max_latency {
        let value = ms(canary.quantile(percentile.q()).as_micros() as f64);
        let limit = ms(limit.get().as_micros() as f64);
        let outcome = match (enough_canary, value > limit) {
            (false, _) => JudgeVerdict::Inconclusive,
            (true, true) => JudgeVerdict::Fail,
            (true, false) => JudgeVerdict::Pass,
        };
        let op = match outcome {
            JudgeVerdict::Fail => ">",
            JudgeVerdict::Pass => "<=",
            JudgeVerdict::Inconclusive => "so far, limit",
        };
        checks.push(CheckResult {
            name: format!("latency_{percentile}"),
            value,
            limit,
            unit: "ms".into(),
            outcome,
            detail: format!("{percentile} latency {value:.1} ms {op} {limit:.1} ms ({sample})"),
        });
    }

    if let Some(limit) = spec.max_latency_increase {
        let limit_us = limit.get().as_micros() as f64;
        let c = latency
            .clone()
            .unwrap_or_else(|| compare_latency(confidence, stable, canary));
        let outcome = if !enough {
            JudgeVerdict::Inconclusive
        } else if c.shift_ci_us.0 > limit_us {
            JudgeVerdict::Fail
        } else {
            JudgeVerdict::Pass
        };
        let figures = format!(
            "latency shift {} ms vs {stable_label} ({}% CI {}..{} ms, Mann-Whitney p = {}, A = {:.2})",
            signed_ms(c.shift_us),
            round_pct(confidence),
            signed_ms(c.shift_ci_us.0),
            signed_ms(c.shift_ci_us.1),
            pvalue(c.p_value),
            c.common_language,
        );
        let limit_ms = ms(limit_us);
        let detail = match outcome {
            JudgeVerdict::Fail => {
                format!("{figures}: slower by more than {limit_ms:.1} ms ({sample})")
            }
            JudgeVerdict::Pass => {
                format!("{figures}: not shown slower by more than {limit_ms:.1} ms")
            }
            JudgeVerdict::Inconclusive => format!("{figures}: not enough requests yet"),
        };
        checks.push(CheckResult {
            name: "latency_increase".into(),
            value: ms(c.shift_us),
            limit: limit_ms,
            unit: "ms".into(),
            outcome,
            detail,
        });
    }

    let with = |outcome: JudgeVerdict| -> Vec<&str> {
        checks
            .iter()
            .filter(|c| c.outcome == outcome)
            .map(|c| c.detail.as_str())
            .collect()
    };
    let (verdict, reason) = if !with(JudgeVerdict::Fail).is_empty() {
        (JudgeVerdict::Fail, with(JudgeVerdict::Fail).join("; "))
    } else if !with(JudgeVerdict::Inconclusive).is_empty() {
        // Missing traffic explains every other inconclusive check: say only that.
        let short: Vec<&str> = checks[..2]
            .iter()
            .filter(|c| c.outcome == JudgeVerdict::Inconclusive)
            .map(|c| c.detail.as_str())
            .collect();
        let reason = if short.is_empty() {
            with(JudgeVerdict::Inconclusive).join("; ")
        } else {
            short.join("; ")
        };
        (JudgeVerdict::Inconclusive, reason)
    } else {
        let limits = checks.len() - 2;
        let what = match limits {
            0 => "enough requests, no limits configured".to_string(),
            1 => "the 1 check passed".to_string(),
            n => format!("all {n} checks passed"),
        };
        (
            JudgeVerdict::Pass,
            format!(
                "{what} ({canary_label}: {} requests, {stable_label}: {} requests)",
                canary.requests, stable.requests
            ),
        )
    };
    Judgement {
        verdict,
        reason,
        checks,
        latency,
        errors,
    }
}

/// Error rates of `a` (stable / control) and `b` (canary / variant) compared at
/// `confidence`: Fisher's exact test when an expected cell count is below 5, else the
/// two-proportion z-test; the difference's interval is Newcombe's.
pub fn compare_errors(
    confidence: f64,
    a: &MetricsSnapshot,
    b: &MetricsSnapshot,
) -> ProportionComparison {
    let (ea, na, eb, nb) = (
        a.errors().min(a.requests),
        a.requests,
        b.errors().min(b.requests),
        b.requests,
    );
    let total = na + nb;
    let errors = ea + eb;
    let min_expected = if total == 0 {
        0.0
    } else {
        na.min(nb) as f64 * errors.min(total - errors) as f64 / total as f64
    };
    let (test, p_value, z) = if min_expected < 5.0 {
        ("fisher_exact", stats::fisher_exact(ea, na, eb, nb), None)
    } else {
        let (z, p) = stats::two_proportion_z(ea, na, eb, nb);
        ("two_proportion_z", p, Some(z))
    };
    let rate = |e: u64, n: u64| if n == 0 { 0.0 } else { e as f64 / n as f64 };
    let (rate_a, rate_b) = (rate(ea, na), rate(eb, nb));
    ProportionComparison {
        test: test.into(),
        errors_a: ea,
        n_a: na,
        rate_a,
        errors_b: eb,
        n_b: nb,
        rate_b,
        diff: rate_b - rate_a,
        diff_ci: stats::newcombe_diff_ci(ea, na, eb, nb, confidence),
        p_value,
        significant: p_value < 1.0 - confidence,
        z,
        confidence,
    }
}

/// Latencies of `a` (stable / control) and `b` (canary / variant) compared at
/// `confidence` from their histogram buckets.
pub fn compare_latency(
    confidence: f64,
    a: &MetricsSnapshot,
    b: &MetricsSnapshot,
) -> LatencyComparison {
    let sample = |s: &MetricsSnapshot| -> Vec<(f64, u64)> {
        s.latency.buckets().map(|(v, n)| (v as f64, n)).collect()
    };
    let (xa, xb) = (sample(a), sample(b));
    let mw = stats::mann_whitney_u(&xa, &xb);
    let (shift, lo, hi) = stats::hodges_lehmann_shift_ci(&xa, &xb, confidence);
    let pairs = mw.n_a as f64 * mw.n_b as f64;
    let common_language = if pairs > 0.0 { 1.0 - mw.u / pairs } else { 0.5 };
    LatencyComparison {
        test: if mw.exact {
            "mann_whitney_exact"
        } else {
            "mann_whitney_normal"
        }
        .into(),
        n_a: mw.n_a,
        n_b: mw.n_b,
        u: mw.u,
        p_value: mw.p_value,
        significant: mw.p_value < 1.0 - confidence,
        shift_us: shift,
        shift_ci_us: (lo, hi),
        confidence,
        rank_biserial: 2.0 * common_language - 1.0,
        common_language,
    }
}

fn ms(us: f64) -> f64 {
    us / 1000.0
}

fn signed_ms(us: f64) -> String {
    format!("{:+.1}", ms(us))
}

/// A rate as a percentage with enough digits to see small limits (0.1%, 0.05%).
fn pct(rate: f64) -> String {
    let p = rate * 100.0;
    if p != 0.0 && p.abs() < 1.0 {
        format!("{p:.2}%")
    } else {
        format!("{p:.1}%")
    }
}

/// A rate difference in percentage points, signed.
fn signed_points(d: f64) -> String {
    let p = d * 100.0;
    if p != 0.0 && p.abs() < 1.0 {
        format!("{p:+.2} points")
    } else {
        format!("{p:+.1} points")
    }
}

fn round_pct(confidence: f64) -> String {
    let p = confidence * 100.0;
    if (p - p.round()).abs() < 1e-9 {
        format!("{}", p.round())
    } else {
        format!("{p:.1}")
    }
}

fn pvalue(p: f64) -> String {
    if p < 1e-4 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
}
