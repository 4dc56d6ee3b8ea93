//! The judge and the A/B comparison on synthetic traffic (fixed-seed generator, so every
//! run sees the same requests).

#![allow(clippy::unwrap_used)]

use baton_analysis::{
    compare_variants, judge, judge_versions, AnalysisSpec, JudgeVerdict, Judgement, Percentile,
};
use baton_core::HumanDuration;
use baton_metrics::{Histogram, MetricsSnapshot};

/// `n` requests with exactly `errors` 5xx, latencies lognormal around `median_ms`
/// (σ = 0.3) plus `shift_ms`.
fn traffic(seed: u64, n: u64, errors: u64, median_ms: f64, shift_ms: f64) -> MetricsSnapshot {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut latency = Histogram::default();
    for _ in 0..n {
        // Box–Muller: a standard normal from two uniforms.
        let (u1, u2) = (rng.f64().max(1e-12), rng.f64());
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        let ms = median_ms * (0.3 * z).exp() + shift_ms;
        latency.record((ms * 1000.0) as u64);
    }
    let mut by_class = [0; 6];
    by_class[5] = errors;
    by_class[2] = n - errors;
    MetricsSnapshot {
        requests: n,
        by_class,
        latency,
        ..MetricsSnapshot::default()
    }
}

fn spec(text: &str) -> AnalysisSpec {
    let spec: AnalysisSpec = toml::from_str(text).unwrap();
    spec.validate().unwrap();
    spec
}

fn check<'a>(j: &'a Judgement, name: &str) -> &'a baton_analysis::CheckResult {
    j.checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name} in {j:#?}"))
}

#[test]
fn five_percent_errors_against_none_fails() {
    let stable = traffic(1, 2000, 0, 20.0, 0.0);
    let canary = traffic(2, 2000, 100, 20.0, 0.0);

    let j = judge(&spec("max_error_rate = 0.01"), &stable, &canary);
    assert_eq!(j.verdict, JudgeVerdict::Fail, "{j:#?}");
    assert!(j.reason.contains("error rate 5.0% > 1.0%"), "{}", j.reason);

    let j = judge(&spec("max_error_rate_increase = 0.01"), &stable, &canary);
    assert_eq!(j.verdict, JudgeVerdict::Fail, "{j:#?}");
    let errors = j.errors.as_ref().unwrap();
    assert_eq!(errors.test, "two_proportion_z");
    assert!(errors.significant && errors.p_value < 1e-20, "{errors:#?}");
    assert!((errors.diff - 0.05).abs() < 1e-12);
    assert!(
        errors.diff_ci.0 > 0.03 && errors.diff_ci.1 < 0.07,
        "{errors:#?}"
    );
    let c = check(&j, "error_rate_increase");
    assert_eq!(c.outcome, JudgeVerdict::Fail);
    assert!(c.detail.contains("+5.0 points"), "{}", c.detail);
}

#[test]
fn an_insignificant_or_small_error_increase_passes() {
    // 0.5% vs 0.3%: not significant with 2000 requests.
    let j = judge(
        &spec("max_error_rate_increase = 0.0"),
        &traffic(1, 2000, 6, 20.0, 0.0),
        &traffic(2, 2000, 10, 20.0, 0.0),
    );
    assert_eq!(j.verdict, JudgeVerdict::Pass, "{j:#?}");
    // 2% vs 1% with 20000 requests: significant, but within the 2 points allowed.
    let j = judge(
        &spec("max_error_rate_increase = 0.02"),
        &traffic(1, 20_000, 200, 20.0, 0.0),
        &traffic(2, 20_000, 400, 20.0, 0.0),
    );
    assert!(j.errors.as_ref().unwrap().significant);
    assert_eq!(j.verdict, JudgeVerdict::Pass, "{j:#?}");
}

#[test]
fn fifty_ms_slower_fails_on_latency() {
    let stable = traffic(3, 2000, 0, 20.0, 0.0);
    let canary = traffic(4, 2000, 0, 20.0, 50.0);

    let j = judge(&spec("max_latency_increase = \"10ms\""), &stable, &canary);
    assert_eq!(j.verdict, JudgeVerdict::Fail, "{j:#?}");
    let lat = j.latency.as_ref().unwrap();
    assert!(lat.significant && lat.p_value < 1e-100, "{lat:#?}");
    assert!((lat.shift_us - 50_000.0).abs() < 2_000.0, "{lat:#?}");
    assert!(
        lat.shift_ci_us.0 > 45_000.0 && lat.shift_ci_us.1 < 55_000.0,
        "{lat:#?}"
    );
    assert!(
        lat.common_language > 0.99 && lat.rank_biserial > 0.98,
        "{lat:#?}"
    );

    let j = judge(&spec("max_latency = { p99 = \"60ms\" }"), &stable, &canary);
    assert_eq!(j.verdict, JudgeVerdict::Fail, "{j:#?}");
    assert!(j.reason.starts_with("p99 latency"), "{}", j.reason);
    // The same limit holds for stable itself.
    let j = judge(&spec("max_latency = { p99 = \"60ms\" }"), &stable, &stable);
    assert_eq!(j.verdict, JudgeVerdict::Pass, "{j:#?}");
    let limit = &check(&j, "latency_p99");
    assert_eq!(limit.limit, 60.0);
    assert!(limit.value < 60.0);
}

#[test]
fn an_equal_canary_passes_every_check() {
    let full = spec(
        r#"
        max_error_rate = 0.01
        max_error_rate_increase = 0.005
        max_latency = { p50 = "30ms", p99 = "100ms", "p99.9" = "200ms" }
        max_latency_increase = "5ms"
        "#,
    );
    let stable = traffic(5, 2000, 4, 20.0, 0.0);
    let canary = traffic(6, 2000, 5, 20.0, 0.0);
    let j = judge_versions(&full, ("v1", &stable), ("v2", &canary));
    assert_eq!(j.verdict, JudgeVerdict::Pass, "{j:#?}");
    assert_eq!(j.checks.len(), 2 + 1 + 1 + 3 + 1);
    assert!(j.checks.iter().all(|c| c.outcome == JudgeVerdict::Pass));
    assert!(
        j.reason.starts_with(
            "all 6 checks passed (canary v2: 2000 requests, stable v1: 2000 requests)"
        ),
        "{}",
        j.reason
    );
    let lat = j.latency.as_ref().unwrap();
    assert!(
        lat.shift_ci_us.0 <= 0.0 && lat.shift_ci_us.1 >= 0.0,
        "{lat:#?}"
    );
}

#[test]
fn too_little_traffic_is_inconclusive_never_pass() {
    let full = spec("max_error_rate = 0.01\nmax_latency_increase = \"5ms\"");
    let stable = traffic(7, 2000, 0, 20.0, 0.0);
    let canary = traffic(8, 10, 0, 20.0, 0.0);
    let j = judge_versions(&full, ("v1", &stable), ("v2", &canary));
    assert_eq!(j.verdict, JudgeVerdict::Inconclusive, "{j:#?}");
    assert_eq!(j.reason, "canary v2 has 10 of 100 requests");
    assert!(
        j.reason.starts_with("canary v2 has 10 of 100 requests"),
        "{}",
        j.reason
    );
    // No limits at all: still never a pass without data.
    let j = judge(&spec(""), &stable, &canary);
    assert_eq!(j.verdict, JudgeVerdict::Inconclusive);
    let j = judge(
        &spec(""),
        &MetricsSnapshot::default(),
        &MetricsSnapshot::default(),
    );
    assert_eq!(j.verdict, JudgeVerdict::Inconclusive);
    assert!(j.latency.is_none() && j.errors.is_none());
    // Stable short of data is inconclusive too.
    let j = judge(&full, &canary, &stable);
    assert_eq!(j.verdict, JudgeVerdict::Inconclusive);
    assert!(
        j.reason.contains("stable has 10 of 100 requests"),
        "{}",
        j.reason
    );
    // With enough of both and no limits, the verdict is pass.
    let j = judge(&spec(""), &stable, &stable);
    assert_eq!(j.verdict, JudgeVerdict::Pass);
    assert!(
        j.reason
            .starts_with("enough requests, no limits configured"),
        "{}",
        j.reason
    );
}

#[test]
fn a_certain_error_rate_breach_fails_before_min_requests() {
    let full = spec("max_error_rate = 0.01");
    let stable = traffic(9, 2000, 0, 20.0, 0.0);
    // 2 errors in 10 requests: even 90 successes next would leave 2% > 1%.
    let j = judge(&full, &stable, &traffic(10, 10, 2, 20.0, 0.0));
    assert_eq!(j.verdict, JudgeVerdict::Fail, "{j:#?}");
    assert!(
        j.reason
            .starts_with("2 errors in canary's first 10 requests: its error rate stays above 1.0%"),
        "{}",
        j.reason
    );
    // 1 error in 10 could still end at exactly 1%: wait.
    let j = judge(&full, &stable, &traffic(10, 10, 1, 20.0, 0.0));
    assert_eq!(j.verdict, JudgeVerdict::Inconclusive, "{j:#?}");
}

#[test]
fn small_counts_use_fisher() {
    let j = judge(
        &spec("min_requests = 20\nmax_error_rate_increase = 0.05"),
        &traffic(11, 40, 0, 20.0, 0.0),
        &traffic(12, 40, 8, 20.0, 0.0),
    );
    let errors = j.errors.as_ref().unwrap();
    assert_eq!(errors.test, "fisher_exact");
    assert!(errors.p_value < 0.01, "{errors:#?}");
    assert_eq!(j.verdict, JudgeVerdict::Fail);
}

#[test]
fn judgements_serialize_for_events() {
    let j = judge(
        &spec("max_error_rate = 0.01"),
        &traffic(1, 500, 0, 20.0, 0.0),
        &traffic(2, 500, 50, 20.0, 0.0),
    );
    let json = serde_json::to_value(&j).unwrap();
    assert_eq!(json["verdict"], "fail");
    assert_eq!(json["checks"][2]["name"], "error_rate");
    assert_eq!(json["checks"][2]["outcome"], "fail");
    assert!(json["latency"]["p_value"].is_number());
    let back: Judgement = serde_json::from_value(json).unwrap();
    assert_eq!(back, j);
}

#[test]
fn a_million_requests_are_judged_from_buckets() {
    let stable = traffic(13, 1_000_000, 1000, 20.0, 0.0);
    let canary = traffic(14, 1_000_000, 1000, 20.0, 0.3);
    let j = judge(&spec("max_latency_increase = \"1ms\""), &stable, &canary);
    assert_eq!(j.verdict, JudgeVerdict::Pass, "{j:#?}");
    let lat = j.latency.unwrap();
    // Even a 0.3 ms shift is visible with this much data.
    assert!(lat.significant, "{lat:#?}");
    assert!(
        lat.shift_ci_us.0 > 0.0 && lat.shift_ci_us.1 < 1_000.0,
        "{lat:#?}"
    );
}

#[test]
fn ab_clear_difference_is_significant() {
    let control = traffic(15, 3000, 60, 20.0, 0.0);
    let variant = traffic(16, 3000, 180, 20.0, 20.0);
    let c = compare_variants(0.95, 0.01, ("v1", &control), ("v2", &variant));
    assert!(c.error_significant, "{c:#?}");
    assert!(c.latency_significant, "{c:#?}");
    assert_eq!(c.needed_per_variant, None);
    assert_eq!((c.control.as_str(), c.variant.as_str()), ("v1", "v2"));
    assert!((c.variant_stats.error_rate - 0.06).abs() < 1e-12);
    assert!(
        c.variant_stats.p50_ms > c.control_stats.p50_ms + 15.0,
        "{c:#?}"
    );
    assert!(c.errors.diff_ci.0 > 0.0);
}

#[test]
fn ab_null_difference_is_not_significant() {
    let control = traffic(17, 3000, 60, 20.0, 0.0);
    let variant = traffic(18, 3000, 63, 20.0, 0.0);
    let c = compare_variants(0.95, 0.01, ("v1", &control), ("v2", &variant));
    assert!(!c.error_significant, "{c:#?}");
    assert!(!c.latency_significant, "{c:#?}");
    assert!(c.errors.diff_ci.0 < 0.0 && c.errors.diff_ci.1 > 0.0);
    // 2% base, detecting +1 point at 95% / 80% power needs ~3800 per variant.
    let required = c.required_per_variant.unwrap();
    assert!((3500..4200).contains(&required), "{required}");
    assert_eq!(c.needed_per_variant, Some(required - 3000));
    let json = serde_json::to_value(&c).unwrap();
    assert_eq!(json["error_significant"], false);
}

#[test]
fn percentile_keys_round_trip() {
    let s = spec(r#"max_latency = { p90 = "1s", p999 = "2s" }"#);
    assert_eq!(
        s.max_latency.get(&Percentile::P999),
        Some(&HumanDuration::from_secs(2))
    );
    assert_eq!(Percentile::P90.q(), 0.9);
}
