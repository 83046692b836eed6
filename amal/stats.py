"""The statistics of a comparison of two samples of round times: the Hodges–Lehmann ratio of the candidate to the
baseline with its percentile bootstrap interval, the two-sided Mann–Whitney U test, and Holm's correction over the
benchmarks compared (amal.compare says when each is used and why)."""

import numpy as np
from scipy.stats import mannwhitneyu

BOOTSTRAP_ROUNDS = 200  # rounds per side in one bootstrap resample (the pair ratios grow as n²)
ESTIMATE_ROUNDS = 2000  # rounds per side for the point estimate; longer samples are thinned (seeded)


def thin(sample: np.ndarray, most: int, rng: np.random.Generator) -> np.ndarray:
    """`sample`, or `most` of its rounds drawn without replacement when it is longer."""
    return sample if len(sample) <= most else rng.choice(sample, size=most, replace=False)


def shift_ratio(baseline: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Hodges–Lehmann ratio, exp(median over all pairs (i, j) of log(candidate_j / baseline_i)); batched on axis 0."""
    logs = np.log(candidate)[..., :, None] - np.log(baseline)[..., None, :]
    return np.exp(np.median(logs.reshape(*logs.shape[:-2], -1), axis=-1))


def ratio_ci(baseline: np.ndarray, candidate: np.ndarray, confidence: float, resamples: int,
             rng: np.random.Generator) -> tuple[float, float]:
    """Percentile bootstrap interval of the Hodges–Lehmann ratio, each sample resampled on its own.

    Resamples hold at most BOOTSTRAP_ROUNDS rounds per side (the pairs grow as n²): for longer samples this is an
    m-out-of-n bootstrap, whose interval is wider than the n-out-of-n one would be (conservative)."""
    size_a, size_b = min(len(baseline), BOOTSTRAP_ROUNDS), min(len(candidate), BOOTSTRAP_ROUNDS)
    chunk = max(1, 4_000_000 // (size_a * size_b))  # bounds memory: ~32 MB of pair ratios at once
    ratios = []
    for start in range(0, resamples, chunk):
        count = min(chunk, resamples - start)
        ratios.append(shift_ratio(rng.choice(baseline, size=(count, size_a)),
                                  rng.choice(candidate, size=(count, size_b))))
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(np.concatenate(ratios), [tail, 100 - tail])
    return float(low), float(high)


EXACT_ROUNDS = 100  # up to this many rounds a side, the rank test's p is exact (when no rounds tie)


def rank_test_p(baseline: np.ndarray, candidate: np.ndarray) -> float:
    """Two-sided Mann–Whitney U p-value: exact when no two rounds tie (round times in ns seldom do) and neither side
    has more than EXACT_ROUNDS rounds; the normal approximation, with tie correction, otherwise. scipy's default is
    exact only up to 8 rounds a side, and the approximation's tails are too heavy for Holm's small levels (at 10
    against 10 fully separated rounds: 1.8e-4 instead of 1.1e-5), so 10 rounds could flag less than 8; past a few
    hundred rounds the exact distribution takes seconds and then overflows (NaN), where the approximation is good."""
    if len(baseline) < 2 or len(candidate) < 2:
        return 1.0  # one round says nothing about noise
    pooled = np.concatenate([baseline, candidate])
    small = max(len(baseline), len(candidate)) <= EXACT_ROUNDS
    method = "exact" if small and len(np.unique(pooled)) == len(pooled) else "asymptotic"
    return float(mannwhitneyu(candidate, baseline, alternative="two-sided", method=method).pvalue)


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values: the i-th smallest times (m - i + 1), running maximum, capped at 1."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    scaled = p[order] * (len(p) - np.arange(len(p)))
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted


def smallest_p(n_baseline: int, n_candidate: int) -> float:
    """The smallest two-sided Mann–Whitney p two samples of these sizes can reach (fully separated samples)."""
    if min(n_baseline, n_candidate) < 2:
        return 1.0
    return rank_test_p(np.arange(n_baseline, dtype=float), np.arange(n_candidate, dtype=float) + n_baseline + 1)
