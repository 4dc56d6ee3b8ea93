#!/usr/bin/env python3
"""Reference values for baton-analysis's statistics, computed with SciPy.

Run once; the output, reference.json, is committed and tests/reference.rs compares the
Rust functions against it. To regenerate:

    python3 -m venv /tmp/scipy-venv
    /tmp/scipy-venv/bin/pip install scipy numpy
    /tmp/scipy-venv/bin/python crates/baton-analysis/reference/gen_reference.py

Samples are weighted, as in the crate: lists of [value, count] (latency histograms give
bucket midpoints with counts); here they are expanded to one entry per observation before
SciPy sees them. Everything is deterministic (fixed seeds), so a rerun gives the same file.

- Mann-Whitney U: scipy.stats.mannwhitneyu(a, b, alternative="two-sided", method="auto").
- Hodges-Lehmann: brute force over every pairwise difference b_j - a_i: numpy's median,
  and the interval [D(k), D(N-k+1)] with k = floor(N/2 - z*sigma), z = norm.ppf(1/2 +
  confidence/2) and sigma the tie-corrected standard deviation of U (k clamped to >= 1).
- Fisher: scipy.stats.fisher_exact([[a_err, a_n - a_err], [b_err, b_n - b_err]]).
- Two-proportion z: pooled standard error, p = 2 * norm.sf(|z|).
- Wilson: scipy.stats.binomtest(k, n).proportion_ci(confidence, method="wilson");
  Newcombe's hybrid score interval of rate_b - rate_a from those.
- Sample size: Fleiss's formula (no continuity correction) with norm.ppf.
"""

import json
import math
import os

import numpy as np
import scipy
from scipy import stats


def expand(sample):
    return np.repeat(np.array([v for v, _ in sample], dtype=float), [c for _, c in sample])


def weighted(values):
    vals, counts = np.unique(np.asarray(values, dtype=float), return_counts=True)
    return [[float(v), int(c)] for v, c in zip(vals, counts)]


def histogram_like(rng, n, median_us, sigma, shift_us=0.0, error_tail=0.0):
    """Lognormal latencies rounded to 250 µs steps (so there are many ties), as [v, c]."""
    x = rng.lognormal(math.log(median_us), sigma, n) + shift_us
    if error_tail:
        k = int(n * error_tail)
        x[:k] += 40_000
    return weighted(np.round(x / 250.0) * 250.0)


def mann_whitney_case(name, a, b):
    x, y = expand(a), expand(b)
    res = stats.mannwhitneyu(x, y, alternative="two-sided", method="auto")
    ties = len(np.unique(np.concatenate([x, y]))) < len(x) + len(y)
    exact = (len(x) <= 8 or len(y) <= 8) and not ties
    return {
        "name": name,
        "a": a,
        "b": b,
        "u": float(res.statistic),
        "p": float(res.pvalue),
        "exact": bool(exact),
    }


def hodges_lehmann_case(name, a, b, confidence):
    x, y = expand(a), expand(b)
    d = np.sort(np.subtract.outer(y, x).ravel())
    n_pairs = d.size
    n1, n2 = len(x), len(y)
    n = n1 + n2
    _, t = np.unique(np.concatenate([x, y]), return_counts=True)
    tie_term = float(np.sum(t.astype(float) ** 3 - t))
    sigma = math.sqrt(max(0.0, n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1))))) if n > 1 else 0.0
    z = stats.norm.ppf(0.5 + confidence / 2)
    k = math.floor(n_pairs / 2 - z * sigma)
    k = max(1, min(k, n_pairs))
    return {
        "name": name,
        "a": a,
        "b": b,
        "confidence": confidence,
        "estimate": float(np.median(d)),
        "lo": float(d[k - 1]),
        "hi": float(d[n_pairs - k]),
    }


def fisher_case(a_err, a_n, b_err, b_n):
    res = stats.fisher_exact([[a_err, a_n - a_err], [b_err, b_n - b_err]])
    return {"a_err": a_err, "a_n": a_n, "b_err": b_err, "b_n": b_n, "p": float(res.pvalue)}


def z_case(a_err, a_n, b_err, b_n):
    pooled = (a_err + b_err) / (a_n + b_n)
    se = math.sqrt(pooled * (1 - pooled) * (1 / a_n + 1 / b_n))
    z = (a_err / a_n - b_err / b_n) / se
    return {"a_err": a_err, "a_n": a_n, "b_err": b_err, "b_n": b_n, "z": z, "p": float(2 * stats.norm.sf(abs(z)))}


def wilson(k, n, confidence):
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def newcombe_case(a_err, a_n, b_err, b_n, confidence):
    pa, pb = a_err / a_n, b_err / b_n
    la, ua = wilson(a_err, a_n, confidence)
    lb, ub = wilson(b_err, b_n, confidence)
    d = pb - pa
    return {
        "a_err": a_err, "a_n": a_n, "b_err": b_err, "b_n": b_n, "confidence": confidence,
        "wilson_a": [la, ua], "wilson_b": [lb, ub],
        "lo": d - math.sqrt((pb - lb) ** 2 + (ua - pa) ** 2),
        "hi": d + math.sqrt((ub - pb) ** 2 + (pa - la) ** 2),
    }


def sample_size_case(p_base, mde, alpha, power):
    p1, p2 = p_base, min(p_base + mde, 1.0)
    pbar = (p1 + p2) / 2
    za, zb = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    root = za * math.sqrt(2 * pbar * (1 - pbar)) + zb * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    return {"p_base": p_base, "mde": mde, "alpha": alpha, "power": power, "n": int(math.ceil(root ** 2 / (p2 - p1) ** 2))}


def main():
    rng = np.random.default_rng(20261121)
    distinct = lambda k, lo, hi: weighted(np.round(rng.uniform(lo, hi, k), 6))  # noqa: E731

    mw_samples = [
        ("tiny exact, separated", [[1, 1], [2, 1], [3, 1]], [[4, 1], [5, 1], [6, 1]]),
        ("tiny exact, interleaved", weighted([1.5, 3.2, 7.7, 0.4]), weighted([2.2, 5.1, 9.9, 8.8, 6.6])),
        ("one observation each", [[1, 1]], [[2, 1]]),
        ("one against nine", [[5, 1]], weighted([1, 2, 3, 4, 6, 7, 8, 9, 10])),
        ("exact 3 vs 20", distinct(3, 0, 10), distinct(20, 2, 12)),
        ("exact 8 vs 30", distinct(8, 0, 10), distinct(30, 1, 11)),
        ("exact 8 vs 8", distinct(8, 0, 10), distinct(8, 3, 13)),
        ("asymptotic 9 vs 9 no ties", distinct(9, 0, 10), distinct(9, 2, 12)),
        ("tiny with ties", weighted([1, 2, 2, 3]), weighted([2, 3, 3, 4])),
        ("identical samples", weighted([1, 2, 3, 4, 5]), weighted([1, 2, 3, 4, 5])),
        ("one value everywhere", [[7, 5]], [[7, 9]]),
        ("heavy ties, histogram counts", [[10, 50], [20, 30]], [[10, 40], [20, 45], [30, 5]]),
        ("histogram-like null", histogram_like(rng, 2000, 20_000, 0.4), histogram_like(rng, 2000, 20_000, 0.4)),
        ("histogram-like +50ms", histogram_like(rng, 2000, 20_000, 0.4), histogram_like(rng, 2000, 20_000, 0.4, 50_000)),
        ("histogram-like +1ms small shift", histogram_like(rng, 1500, 20_000, 0.4), histogram_like(rng, 1500, 20_000, 0.4, 1_000)),
        ("unequal sizes", histogram_like(rng, 3000, 15_000, 0.3), histogram_like(rng, 120, 15_000, 0.3, 2_000)),
    ]
    mann_whitney = [mann_whitney_case(*s) for s in mw_samples]

    hl_samples = [
        ("tiny odd", weighted([1.0, 4.0, 9.0]), weighted([2.0, 3.0, 11.0]), 0.95),
        ("tiny even", weighted([1.0, 4.0]), weighted([2.0, 3.0, 11.0, 12.0]), 0.95),
        ("ties", [[10, 5], [20, 3]], [[10, 2], [20, 6], [30, 2]], 0.9),
        ("moderate no ties", distinct(25, 0, 10), distinct(30, 2, 12), 0.95),
        ("moderate 99%", distinct(40, 0, 10), distinct(35, 1, 11), 0.99),
        ("histogram-like null", mw_samples[12][1], mw_samples[12][2], 0.95),
        ("histogram-like +50ms", mw_samples[13][1], mw_samples[13][2], 0.95),
        ("histogram-like +1ms 90%", mw_samples[14][1], mw_samples[14][2], 0.9),
        ("unequal sizes", mw_samples[15][1], mw_samples[15][2], 0.95),
    ]
    hodges_lehmann = [hodges_lehmann_case(*s) for s in hl_samples]

    fisher = [
        fisher_case(*t)
        for t in [
            (0, 10, 5, 10), (1, 100, 10, 100), (3, 7, 1, 9), (2, 5, 2, 5), (1, 1000, 0, 1000),
            (12, 1000, 4, 1000), (7, 12, 1, 13), (0, 2000, 100, 2000), (0, 20, 0, 20),
            (500, 10000, 560, 10000), (1, 3, 2, 3), (0, 100, 1, 5), (30, 100, 30, 100),
        ]
    ]
    two_proportion = [
        z_case(*t)
        for t in [(0, 2000, 100, 2000), (10, 1000, 12, 1000), (500, 10000, 560, 10000),
                  (3, 50, 9, 60), (100, 1000, 50, 1000), (1, 200, 0, 300)]
    ]
    newcombe = [
        newcombe_case(*t)
        for t in [(0, 2000, 100, 2000, 0.95), (10, 1000, 12, 1000, 0.95), (0, 10, 0, 10, 0.95),
                  (3, 7, 5, 8, 0.9), (40, 500, 20, 600, 0.99)]
    ]
    sample_size = [
        sample_size_case(*t)
        for t in [(0.01, 0.01, 0.05, 0.8), (0.0, 0.01, 0.05, 0.8), (0.05, 0.02, 0.01, 0.9),
                  (0.2, 0.05, 0.05, 0.8), (0.5, 0.1, 0.1, 0.95), (0.95, 0.1, 0.05, 0.8)]
    ]
    normal_quantile = [
        {"p": p, "x": float(stats.norm.ppf(p))}
        for p in [1e-10, 0.001, 0.025, 0.05, 0.3, 0.5, 0.8, 0.95, 0.975, 0.995, 1 - 1e-9]
    ]

    out = {
        "generated_by": f"gen_reference.py with scipy {scipy.__version__}, numpy {np.__version__}",
        "mann_whitney": mann_whitney,
        "hodges_lehmann": hodges_lehmann,
        "fisher": fisher,
        "two_proportion_z": two_proportion,
        "newcombe": newcombe,
        "sample_size": sample_size,
        "normal_quantile": normal_quantile,
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    counts = {k: len(v) for k, v in out.items() if isinstance(v, list)}
    print(f"wrote {path}: {counts}")


if __name__ == "__main__":
    main()
