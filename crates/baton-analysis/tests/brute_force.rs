//! The fast, weighted statistics against slow, obvious ones on many small random samples
//! (fixed seed): every pairwise difference, every assignment of ranks, every 2×2 table.

#![allow(clippy::unwrap_used)]

use baton_analysis::stats::{
    fisher_exact, hodges_lehmann_shift_ci, mann_whitney_u, normal_quantile,
};

fn sample(rng: &mut fastrand::Rng, ties: bool) -> Vec<(f64, u64)> {
    let k = rng.usize(1..7);
    (0..k)
        .map(|_| {
            let v = if ties {
                rng.u32(0..12) as f64
            } else {
                rng.f64() * 100.0
            };
            (v, if ties { rng.u64(1..5) } else { 1 })
        })
        .collect()
}

fn expand(s: &[(f64, u64)]) -> Vec<f64> {
    s.iter()
        .flat_map(|&(v, c)| std::iter::repeat_n(v, c as usize))
        .collect()
}

#[test]
fn u_and_hodges_lehmann_match_pairwise_brute_force() {
    let mut rng = fastrand::Rng::with_seed(6);
    for round in 0..400 {
        let ties = round % 2 == 0;
        let (a, b) = (sample(&mut rng, ties), sample(&mut rng, ties));
        let (x, y) = (expand(&a), expand(&b));
        let u: f64 = x
            .iter()
            .flat_map(|&xi| y.iter().map(move |&yj| (xi, yj)))
            .map(|(xi, yj)| match xi.partial_cmp(&yj).unwrap() {
                std::cmp::Ordering::Greater => 1.0,
                std::cmp::Ordering::Equal => 0.5,
                std::cmp::Ordering::Less => 0.0,
            })
            .sum();
        let mw = mann_whitney_u(&a, &b);
        assert!((mw.u - u).abs() < 1e-9, "{a:?} {b:?}: {} vs {u}", mw.u);

        let mut d: Vec<f64> = y
            .iter()
            .flat_map(|&yj| x.iter().map(move |&xi| yj - xi))
            .collect();
        d.sort_by(f64::total_cmp);
        let n = d.len();
        let median = if n % 2 == 1 {
            d[n / 2]
        } else {
            (d[n / 2 - 1] + d[n / 2]) / 2.0
        };
        // Tie-corrected σ of U, then k = floor(N/2 − zσ) clamped to >= 1.
        let mut all: Vec<f64> = x.iter().chain(&y).copied().collect();
        all.sort_by(f64::total_cmp);
        let mut tie_term = 0.0;
        let mut i = 0;
        while i < all.len() {
            let j = all[i..].iter().take_while(|&&v| v == all[i]).count();
            tie_term += (j * j * j - j) as f64;
            i += j;
        }
        let (n1, n2) = (x.len() as f64, y.len() as f64);
        let nn = n1 + n2;
        let sigma = (n1 * n2 / 12.0 * ((nn + 1.0) - tie_term / (nn * (nn - 1.0))))
            .max(0.0)
            .sqrt();
        let z = normal_quantile(0.975);
        let k = ((n as f64 / 2.0 - z * sigma).floor() as i64).max(1) as usize;
        let (est, lo, hi) = hodges_lehmann_shift_ci(&a, &b, 0.95);
        assert_eq!(est, median, "{a:?} {b:?}");
        assert_eq!((lo, hi), (d[k - 1], d[n - k]), "{a:?} {b:?}");
    }
}

/// P(U >= u) by enumerating every way to pick which of the ranks 1..=m+n belong to a.
fn enumerated_sf(u: f64, m: usize, n: usize) -> f64 {
    let total = m + n;
    let (mut hits, mut all) = (0u64, 0u64);
    for mask in 0u32..(1 << total) {
        if mask.count_ones() as usize != m {
            continue;
        }
        let rank_sum: usize = (0..total)
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| i + 1)
            .sum();
        let u1 = rank_sum as f64 - (m * (m + 1)) as f64 / 2.0;
        all += 1;
        hits += u64::from(u1 >= u);
    }
    hits as f64 / all as f64
}

#[test]
fn exact_p_values_match_enumeration() {
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..60 {
        let (m, n) = (rng.usize(1..7), rng.usize(1..8));
        let a: Vec<(f64, u64)> = (0..m).map(|_| (rng.f64(), 1)).collect();
        let b: Vec<(f64, u64)> = (0..n).map(|_| (rng.f64() + 0.3, 1)).collect();
        let mw = mann_whitney_u(&a, &b);
        assert!(mw.exact);
        let big = mw.u.max((m * n) as f64 - mw.u);
        let want = (2.0 * enumerated_sf(big, m, n)).min(1.0);
        assert!(
            (mw.p_value - want).abs() < 1e-12,
            "m={m} n={n}: {} vs {want}",
            mw.p_value
        );
    }
}

/// ln C(n, k)
fn ln_choose(n: u64, k: u64) -> f64 {
    let lf = |x: u64| (1..=x).map(|i| (i as f64).ln()).sum::<f64>();
    lf(n) - lf(k) - lf(n - k)
}

#[test]
fn fisher_matches_summing_every_table() {
    let mut rng = fastrand::Rng::with_seed(8);
    for _ in 0..300 {
        let (a_n, b_n) = (rng.u64(1..60), rng.u64(1..60));
        let (a_err, b_err) = (rng.u64(0..=a_n), rng.u64(0..=b_n));
        let k = a_err + b_err;
        let pmf =
            |x: u64| (ln_choose(a_n, x) + ln_choose(b_n, k - x) - ln_choose(a_n + b_n, k)).exp();
        let observed = pmf(a_err);
        let want: f64 = (k.saturating_sub(b_n)..=a_n.min(k))
            .map(pmf)
            .filter(|&p| p <= observed * (1.0 + 1e-7))
            .sum::<f64>()
            .min(1.0);
        let got = fisher_exact(a_err, a_n, b_err, b_n);
        assert!(
            (got - want).abs() <= 1e-9 * want.max(1e-12),
            "{a_err}/{a_n} vs {b_err}/{b_n}: {got} vs {want}"
        );
    }
}
