//! The statistics behind the judge, on weighted samples.
//!
//! Latencies come from histogram buckets, so a sample is a list of `(value, count)` pairs
//! rather than one entry per request: every function here works on those pairs and costs
//! at most O(buckets²), whatever the number of requests. Semantics follow SciPy
//! (`scipy.stats.mannwhitneyu`, `scipy.stats.fisher_exact`); `tests/reference.rs` checks
//! them against values SciPy computed (`reference/gen_reference.py`).

use serde::{Deserialize, Serialize};

/// A weighted sample: `(value, how many observations have it)`.
pub type Weighted = [(f64, u64)];

/// Result of [`mann_whitney_u`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MannWhitney {
    /// U of sample `a`: the number of pairs (x from a, y from b) with x > y, plus half
    /// the ties (SciPy's `statistic`, U1).
    pub u: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// The standardized statistic of the normal approximation (continuity-corrected,
    /// tie-corrected; from `max(U1, U2)`, so never negative); `None` when exact.
    pub z: Option<f64>,
    /// Whether the p-value comes from the exact distribution of U.
    pub exact: bool,
    /// Observations in `a`.
    pub n_a: u64,
    /// Observations in `b`.
    pub n_b: u64,
    /// Σ(t³ − t) over groups of tied values (0 without ties).
    pub tie_term: f64,
}

/// Mann–Whitney U test of `a` against `b`, two-sided, with SciPy's `method="auto"`:
/// the exact distribution of U when one sample has at most 8 observations and there
/// are no ties, otherwise the normal approximation with tie and continuity correction.
///
/// An empty sample gives `p_value = 1` (nothing to compare).
pub fn mann_whitney_u(a: &Weighted, b: &Weighted) -> MannWhitney {
    let merged = merge(a, b);
    let n_a: u64 = merged.iter().map(|m| m.1).sum();
    let n_b: u64 = merged.iter().map(|m| m.2).sum();
    let (n1, n2) = (n_a as f64, n_b as f64);
    // Average ranks of tied groups; R1 = Σ count_a × rank.
    let mut below = 0.0;
    let mut r1 = 0.0;
    let mut tie_term = 0.0;
    let mut ties = false;
    for &(_, ca, cb) in &merged {
        let t = (ca + cb) as f64;
        r1 += ca as f64 * (below + (t + 1.0) / 2.0);
        below += t;
        if ca + cb > 1 {
            ties = true;
            tie_term += t * t * t - t;
        }
    }
    let u1 = r1 - n1 * (n1 + 1.0) / 2.0;
    let mut out = MannWhitney {
        u: u1,
        p_value: 1.0,
        z: None,
        exact: false,
        n_a,
        n_b,
        tie_term,
    };
    if n_a == 0 || n_b == 0 {
        return out;
    }
    let u = u1.max(n1 * n2 - u1);
    // The exact distribution costs O(min² · max) time and O(min · max) memory: beyond
    // EXACT_LIMIT (10⁷ values of U — never reached from histograms, which have under 900
    // distinct values) the normal approximation is used instead of SciPy's exact method.
    if (n_a <= 8 || n_b <= 8) && !ties && n_a.saturating_mul(n_b) <= EXACT_LIMIT {
        out.exact = true;
        out.p_value =
            (2.0 * exact_u_sf(u.round() as u64, n_a.min(n_b), n_a.max(n_b))).clamp(0.0, 1.0);
        return out;
    }
    let n = n1 + n2;
    let s = (n1 * n2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)))).sqrt();
    let z = (u - n1 * n2 / 2.0 - 0.5) / s;
    out.z = Some(z);
    out.p_value = if z.is_nan() {
        1.0
    } else {
        (2.0 * normal_sf(z)).clamp(0.0, 1.0)
    };
    out
}

/// Largest `n_a · n_b` for which [`mann_whitney_u`] uses the exact distribution.
pub const EXACT_LIMIT: u64 = 10_000_000;

/// `P(U >= u)` under the null hypothesis for samples of sizes `m <= n` without ties.
///
/// The counts of U are the coefficients of the Gaussian binomial `[m+n choose m]_q =
/// Π_{i=1..m} (1 − q^(n+i)) / (1 − q^i)`: O(m² n) work, fine for the m ≤ 8 it is used for.
fn exact_u_sf(u: u64, m: u64, n: u64) -> f64 {
    let (m, n) = (m as usize, n as usize);
    let top = m * n;
    if u as usize > top {
        return 0.0;
    }
    let mut c = vec![0.0f64; top + n + m + 1];
    c[0] = 1.0;
    let mut deg = 0;
    for i in 1..=m {
        let up = n + i;
        for k in (up..=deg + up).rev() {
            c[k] -= c[k - up];
        }
        for k in i..=deg + up {
            c[k] += c[k - i];
        }
        // The quotient has degree deg + n; what rounding left above it is noise.
        c[deg + n + 1..=deg + up].fill(0.0);
        deg += n;
    }
    let total: f64 = c[..=top].iter().sum();
    let tail: f64 = c[u as usize..=top].iter().sum();
    (tail / total).clamp(0.0, 1.0)
}

/// Distinct values in ascending order with their counts in `a` and in `b`.
fn merge(a: &Weighted, b: &Weighted) -> Vec<(f64, u64, u64)> {
    let mut all: Vec<(f64, u64, u64)> = a
        .iter()
        .map(|&(v, c)| (v, c, 0))
        .chain(b.iter().map(|&(v, c)| (v, 0, c)))
        .filter(|e| (e.1 > 0 || e.2 > 0) && !e.0.is_nan())
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut out: Vec<(f64, u64, u64)> = Vec::with_capacity(all.len());
    for (v, ca, cb) in all {
        match out.last_mut() {
            Some(last) if last.0 == v => {
                last.1 += ca;
                last.2 += cb;
            }
            _ => out.push((v, ca, cb)),
        }
    }
    out
}

/// Hodges–Lehmann estimate of the shift of `b` relative to `a` — the median of all
/// pairwise differences `y − x` (x from a, y from b) — and its distribution-free
/// confidence interval `(estimate, lo, hi)`.
///
/// The interval is `[D(k), D(N − k + 1)]` where `D(1) <= ... <= D(N)` are the
/// `N = n_a·n_b` differences and `k = floor(N/2 − z·σ)`, with `z` the two-sided normal
/// quantile of `confidence` and `σ` the tie-corrected standard deviation of U (the large
/// sample form of the Mann–Whitney inversion, Hollander & Wolfe). When samples are so small
/// that `k < 1`, the interval is the full range `[D(1), D(N)]`. The median of an even
/// number of differences is the mean of the middle two.
///
/// Works on pairs of distinct values (weight = product of counts), so 10⁶ requests in a
/// few hundred histogram buckets cost the same as a few hundred requests. Returns zeros
/// when a sample is empty.
pub fn hodges_lehmann_shift_ci(a: &Weighted, b: &Weighted, confidence: f64) -> (f64, f64, f64) {
    let merged = merge(a, b);
    let xs: Vec<(f64, u64)> = merged
        .iter()
        .filter(|m| m.1 > 0)
        .map(|m| (m.0, m.1))
        .collect();
    let ys: Vec<(f64, u64)> = merged
        .iter()
        .filter(|m| m.2 > 0)
        .map(|m| (m.0, m.2))
        .collect();
    let n_a: u64 = xs.iter().map(|x| x.1).sum();
    let n_b: u64 = ys.iter().map(|y| y.1).sum();
    if n_a == 0 || n_b == 0 {
        return (0.0, 0.0, 0.0);
    }
    let mut diffs: Vec<(f64, u128)> = Vec::with_capacity(xs.len() * ys.len());
    for &(y, cy) in &ys {
        for &(x, cx) in &xs {
            diffs.push((y - x, u128::from(cx) * u128::from(cy)));
        }
    }
    diffs.sort_by(|p, q| p.0.total_cmp(&q.0));
    let total = u128::from(n_a) * u128::from(n_b);
    // Order statistic D(k), 1-based.
    let nth = |k: u128| -> f64 {
        let mut seen = 0u128;
        for &(d, w) in &diffs {
            seen += w;
            if seen >= k {
                return d;
            }
        }
        diffs.last().map_or(0.0, |d| d.0)
    };
    let estimate = if total % 2 == 1 {
        nth(total / 2 + 1)
    } else {
        (nth(total / 2) + nth(total / 2 + 1)) / 2.0
    };
    let tie_term: f64 = merged
        .iter()
        .map(|m| {
            let t = (m.1 + m.2) as f64;
            t * t * t - t
        })
        .sum();
    let (n1, n2) = (n_a as f64, n_b as f64);
    let n = n1 + n2;
    let sigma = if n > 1.0 {
        (n1 * n2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0))))
            .max(0.0)
            .sqrt()
    } else {
        0.0
    };
    let z = normal_quantile(0.5 + confidence.clamp(0.0, 1.0) / 2.0);
    let k = (total as f64 / 2.0 - z * sigma).floor();
    let k = if k.is_finite() && k >= 1.0 {
        (k as u128).min(total)
    } else {
        1
    };
    (estimate, nth(k), nth(total - k + 1))
}

/// Fisher's exact test on the 2×2 table `[[a_err, a_n − a_err], [b_err, b_n − b_err]]`,
/// two-sided: the probability of every table with the same margins that is at most as
/// likely as the observed one (SciPy's definition; "as likely" within a relative 1e-7,
/// which only matters for tables that are equally likely in exact arithmetic).
///
/// Counts above their totals are clamped; an empty row or column gives 1.
pub fn fisher_exact(a_err: u64, a_n: u64, b_err: u64, b_n: u64) -> f64 {
    let (a_err, b_err) = (a_err.min(a_n), b_err.min(b_n));
    let k = a_err + b_err; // errors overall: the column margin
    let total = a_n + b_n;
    if a_n == 0 || b_n == 0 || k == 0 || k == total {
        return 1.0;
    }
    // x = errors in row a ~ hypergeometric(total, a_n, k).
    let lo = k.saturating_sub(b_n);
    let hi = a_n.min(k);
    let mode = (((k + 1) as f64 * (a_n + 1) as f64) / (total + 2) as f64).floor() as u64;
    let mode = mode.clamp(lo, hi);
    // Terms relative to pmf(mode): pmf(x+1)/pmf(x) = (a_n−x)(k−x) / ((x+1)(b_n−k+x+1)).
    let up = |x: u64| -> f64 {
        ((a_n - x) as f64 * (k - x) as f64) / ((x + 1) as f64 * (b_n + x + 1 - k) as f64)
    };
    let mut terms_above = Vec::new();
    let mut t = 1.0;
    let mut x = mode;
    while x < hi {
        t *= up(x);
        x += 1;
        if t == 0.0 || (t < 1e-300 && x > a_err) {
            break;
        }
        terms_above.push(t);
    }
    let mut terms_below = Vec::new();
    let mut t = 1.0;
    let mut x = mode;
    while x > lo {
        t /= up(x - 1);
        x -= 1;
        if t == 0.0 || (t < 1e-300 && x < a_err) {
            break;
        }
        terms_below.push(t);
    }
    let observed = if a_err == mode {
        1.0
    } else if a_err > mode {
        terms_above
            .get((a_err - mode - 1) as usize)
            .copied()
            .unwrap_or(0.0)
    } else {
        terms_below
            .get((mode - a_err - 1) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let all = std::iter::once(1.0)
        .chain(terms_above.iter().copied())
        .chain(terms_below.iter().copied());
    let (mut sum, mut tail) = (0.0, 0.0);
    let threshold = observed * (1.0 + 1e-7);
    for term in all {
        sum += term;
        if term <= threshold {
            tail += term;
        }
    }
    (tail / sum).clamp(0.0, 1.0)
}

/// Two-proportion z-test with the pooled variance: `z = (rate_a − rate_b) / se`, and the
/// two-sided p-value. `(0, 1)` when the variance is zero (no errors at all, or only errors)
/// or a sample is empty.
pub fn two_proportion_z(a_err: u64, a_n: u64, b_err: u64, b_n: u64) -> (f64, f64) {
    if a_n == 0 || b_n == 0 {
        return (0.0, 1.0);
    }
    let (a_err, b_err) = (a_err.min(a_n), b_err.min(b_n));
    let (n1, n2) = (a_n as f64, b_n as f64);
    let pooled = (a_err + b_err) as f64 / (n1 + n2);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    if se == 0.0 || !se.is_finite() {
        return (0.0, 1.0);
    }
    let z = (a_err as f64 / n1 - b_err as f64 / n2) / se;
    (z, (2.0 * normal_sf(z.abs())).clamp(0.0, 1.0))
}

/// Wilson score interval of a proportion `errors / n` at `confidence`; `(0, 1)` for n = 0.
pub fn wilson_interval(errors: u64, n: u64, confidence: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = normal_quantile(0.5 + confidence.clamp(0.0, 1.0) / 2.0);
    let n = n as f64;
    let p = errors.min(n as u64) as f64 / n;
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denom;
    let half = z / denom * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((center - half).max(0.0), (center + half).min(1.0))
}

/// Newcombe's hybrid score interval (method 10) for `rate_b − rate_a`, built from the two
/// Wilson intervals: sound for small counts and rates near 0, unlike the Wald interval.
pub fn newcombe_diff_ci(a_err: u64, a_n: u64, b_err: u64, b_n: u64, confidence: f64) -> (f64, f64) {
    let rate = |e: u64, n: u64| {
        if n == 0 {
            0.0
        } else {
            e.min(n) as f64 / n as f64
        }
    };
    let (pa, pb) = (rate(a_err, a_n), rate(b_err, b_n));
    let (la, ua) = wilson_interval(a_err, a_n, confidence);
    let (lb, ub) = wilson_interval(b_err, b_n, confidence);
    let d = pb - pa;
    let lo = d - ((pb - lb).powi(2) + (ua - pa).powi(2)).sqrt();
    let hi = d + ((ub - pb).powi(2) + (pa - la).powi(2)).sqrt();
    (lo.max(-1.0), hi.min(1.0))
}

/// Standard normal cumulative distribution function.
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
}

/// Standard normal survival function `1 − Φ(x)`, accurate in the far tail.
pub fn normal_sf(x: f64) -> f64 {
    0.5 * libm::erfc(x / std::f64::consts::SQRT_2)
}

/// Standard normal quantile `Φ⁻¹(p)`: Acklam's rational approximation refined by one
/// Halley step (full double precision). ±∞ at 0 and 1, NaN outside [0, 1].
pub fn normal_quantile(p: f64) -> f64 {
    if p.is_nan() || !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    if p > 0.5 {
        // 1 − p is exact here (Sterbenz), and the refinement is accurate in the lower tail.
        return -normal_quantile(1.0 - p);
    }
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const LOW: f64 = 0.024_25;
    let x = if p < LOW {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    };
    // One Halley step on Φ(x) − p.
    let e = normal_cdf(x) - p;
    let u = e * (2.0 * std::f64::consts::PI).sqrt() * (x * x / 2.0).exp();
    x - u / (1.0 + x * u / 2.0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1e-300) || (a - b).abs() < 1e-300
    }

    #[test]
    fn normal_quantile_inverts_the_cdf() {
        for p in [1e-12, 1e-6, 0.01, 0.025, 0.3, 0.5, 0.7, 0.975, 0.999_999] {
            let x = normal_quantile(p);
            assert!(close(normal_cdf(x), p, 1e-12), "{p}: {x}");
        }
        assert!(close(normal_quantile(0.975), 1.959_963_984_540_054, 1e-14));
    }

    #[test]
    fn exact_u_distribution_small_cases() {
        // m = 1, n = 2: U uniform on {0, 1, 2}.
        assert!(close(exact_u_sf(2, 1, 2), 1.0 / 3.0, 1e-12));
        assert!(close(exact_u_sf(0, 1, 2), 1.0, 1e-12));
        // m = n = 2: counts 1,1,2,1,1 over U = 0..4.
        assert!(close(exact_u_sf(3, 2, 2), 2.0 / 6.0, 1e-12));
        assert!(close(exact_u_sf(4, 2, 2), 1.0 / 6.0, 1e-12));
    }

    #[test]
    fn weighted_equals_expanded() {
        let a = [(1.0, 3), (5.0, 2)];
        let b = [(2.0, 1), (5.0, 4), (9.0, 1)];
        let expand = |s: &[(f64, u64)]| -> Vec<(f64, u64)> {
            s.iter()
                .flat_map(|&(v, c)| std::iter::repeat_n((v, 1), c as usize))
                .collect()
        };
        let w = mann_whitney_u(&a, &b);
        let e = mann_whitney_u(&expand(&a), &expand(&b));
        assert_eq!(w, e);
        assert_eq!(
            hodges_lehmann_shift_ci(&a, &b, 0.9),
            hodges_lehmann_shift_ci(&expand(&a), &expand(&b), 0.9)
        );
    }

    #[test]
    fn degenerate_inputs_do_not_panic() {
        assert_eq!(mann_whitney_u(&[], &[(1.0, 1)]).p_value, 1.0);
        assert_eq!(mann_whitney_u(&[(1.0, 5)], &[(1.0, 5)]).p_value, 1.0);
        assert_eq!(
            hodges_lehmann_shift_ci(&[], &[(1.0, 1)], 0.95),
            (0.0, 0.0, 0.0)
        );
        assert_eq!(fisher_exact(0, 0, 0, 0), 1.0);
        assert_eq!(fisher_exact(5, 3, 0, 10), fisher_exact(3, 3, 0, 10));
        assert_eq!(two_proportion_z(0, 100, 0, 100), (0.0, 1.0));
        assert_eq!(wilson_interval(0, 0, 0.95), (0.0, 1.0));
    }
}
