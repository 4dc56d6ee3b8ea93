//! The statistics against values SciPy computed (`reference/gen_reference.py`, output
//! committed as `reference/reference.json`).

#![allow(clippy::unwrap_used)]

use baton_analysis::ab::required_sample_size;
use baton_analysis::stats::{
    fisher_exact, hodges_lehmann_shift_ci, mann_whitney_u, newcombe_diff_ci, normal_quantile,
    two_proportion_z, wilson_interval,
};
use serde::Deserialize;

const REFERENCE: &str = include_str!("../reference/reference.json");

#[derive(Deserialize)]
struct Reference {
    generated_by: String,
    mann_whitney: Vec<MwCase>,
    hodges_lehmann: Vec<HlCase>,
    fisher: Vec<PropCase>,
    two_proportion_z: Vec<PropCase>,
    newcombe: Vec<NewcombeCase>,
    sample_size: Vec<SizeCase>,
    normal_quantile: Vec<QuantileCase>,
}

#[derive(Deserialize)]
struct MwCase {
    name: String,
    a: Vec<(f64, u64)>,
    b: Vec<(f64, u64)>,
    u: f64,
    p: f64,
    exact: bool,
}

#[derive(Deserialize)]
struct HlCase {
    name: String,
    a: Vec<(f64, u64)>,
    b: Vec<(f64, u64)>,
    confidence: f64,
    estimate: f64,
    lo: f64,
    hi: f64,
}

#[derive(Deserialize)]
struct PropCase {
    a_err: u64,
    a_n: u64,
    b_err: u64,
    b_n: u64,
    p: f64,
    #[serde(default)]
    z: Option<f64>,
}

#[derive(Deserialize)]
struct NewcombeCase {
    a_err: u64,
    a_n: u64,
    b_err: u64,
    b_n: u64,
    confidence: f64,
    wilson_a: (f64, f64),
    wilson_b: (f64, f64),
    lo: f64,
    hi: f64,
}

#[derive(Deserialize)]
struct SizeCase {
    p_base: f64,
    mde: f64,
    alpha: f64,
    power: f64,
    n: u64,
}

#[derive(Deserialize)]
struct QuantileCase {
    p: f64,
    x: f64,
}

fn reference() -> Reference {
    serde_json::from_str(REFERENCE).unwrap()
}

/// Relative agreement, with an absolute floor for values that underflow to 0 in SciPy.
fn close(ours: f64, theirs: f64, rel: f64) -> bool {
    (ours - theirs).abs() <= rel * theirs.abs() + 1e-300
}

#[test]
fn mann_whitney_matches_scipy() {
    let r = reference();
    assert!(r.mann_whitney.len() >= 12, "{}", r.generated_by);
    let mut exact = 0;
    for c in &r.mann_whitney {
        let got = mann_whitney_u(&c.a, &c.b);
        assert_eq!(got.exact, c.exact, "{}: method", c.name);
        assert!(
            (got.u - c.u).abs() < 1e-9,
            "{}: U {} vs scipy {}",
            c.name,
            got.u,
            c.u
        );
        assert!(
            close(got.p_value, c.p, 1e-9),
            "{}: p {} vs scipy {}",
            c.name,
            got.p_value,
            c.p
        );
        exact += usize::from(c.exact);
    }
    assert!(exact >= 5, "too few exact cases");
}

#[test]
fn hodges_lehmann_matches_brute_force() {
    let r = reference();
    for c in &r.hodges_lehmann {
        let (est, lo, hi) = hodges_lehmann_shift_ci(&c.a, &c.b, c.confidence);
        let ok = |ours: f64, theirs: f64| (ours - theirs).abs() <= 1e-9 * theirs.abs().max(1.0);
        assert!(
            ok(est, c.estimate),
            "{}: estimate {est} vs {}",
            c.name,
            c.estimate
        );
        assert!(ok(lo, c.lo), "{}: lo {lo} vs {}", c.name, c.lo);
        assert!(ok(hi, c.hi), "{}: hi {hi} vs {}", c.name, c.hi);
    }
}

#[test]
fn fisher_matches_scipy() {
    for c in &reference().fisher {
        let p = fisher_exact(c.a_err, c.a_n, c.b_err, c.b_n);
        assert!(
            close(p, c.p, 1e-9),
            "fisher {}/{} vs {}/{}: {p} vs scipy {}",
            c.a_err,
            c.a_n,
            c.b_err,
            c.b_n,
            c.p
        );
    }
}

#[test]
fn two_proportion_z_matches_scipy() {
    for c in &reference().two_proportion_z {
        let (z, p) = two_proportion_z(c.a_err, c.a_n, c.b_err, c.b_n);
        let want_z = c.z.unwrap();
        assert!(close(z, want_z, 1e-12), "z {z} vs {want_z}");
        assert!(close(p, c.p, 1e-9), "p {p} vs {}", c.p);
    }
}

#[test]
fn wilson_and_newcombe_match_scipy() {
    for c in &reference().newcombe {
        let wa = wilson_interval(c.a_err, c.a_n, c.confidence);
        let wb = wilson_interval(c.b_err, c.b_n, c.confidence);
        for (ours, theirs) in [
            (wa.0, c.wilson_a.0),
            (wa.1, c.wilson_a.1),
            (wb.0, c.wilson_b.0),
            (wb.1, c.wilson_b.1),
        ] {
            assert!((ours - theirs).abs() < 1e-12, "wilson {ours} vs {theirs}");
        }
        let (lo, hi) = newcombe_diff_ci(c.a_err, c.a_n, c.b_err, c.b_n, c.confidence);
        assert!((lo - c.lo).abs() < 1e-12, "newcombe lo {lo} vs {}", c.lo);
        assert!((hi - c.hi).abs() < 1e-12, "newcombe hi {hi} vs {}", c.hi);
    }
}

#[test]
fn sample_size_matches_scipy() {
    for c in &reference().sample_size {
        let n = required_sample_size(c.p_base, c.mde, c.alpha, c.power);
        assert_eq!(n, c.n, "p_base {} mde {}", c.p_base, c.mde);
    }
}

#[test]
fn normal_quantile_matches_scipy() {
    for c in &reference().normal_quantile {
        let x = normal_quantile(c.p);
        assert!(close(x, c.x, 1e-12), "ppf({}) = {x} vs {}", c.p, c.x);
    }
}

#[test]
fn there_are_enough_reference_cases() {
    let r = reference();
    let total = r.mann_whitney.len()
        + r.hodges_lehmann.len()
        + r.fisher.len()
        + r.two_proportion_z.len()
        + r.newcombe.len()
        + r.sample_size.len()
        + r.normal_quantile.len();
    assert!(total >= 20, "{total}");
}
