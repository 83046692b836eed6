from math import comb

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from amal.stats import holm, rank_test_p, shift_ratio, smallest_p


def test_holm_by_hand():
    # sorted: 0.001*3 = 0.003, 0.004*2 = 0.008, 0.03*1 = 0.03; back in input order
    np.testing.assert_allclose(holm([0.03, 0.001, 0.004]), [0.03, 0.003, 0.008])
    # running maximum: 0.011*2 = 0.022 < 0.01*3 = 0.03, so it becomes 0.03; 0.5*1 stays; capped at 1
    np.testing.assert_allclose(holm([0.01, 0.011, 0.5]), [0.03, 0.03, 0.5])
    np.testing.assert_allclose(holm([0.6, 0.7]), [1.0, 1.0])


def test_shift_ratio_is_the_median_of_all_pair_ratios():
    # candidate/baseline over all 9 pairs: 2,1,.5,4,2,1,8,4,2 -> median 2
    assert shift_ratio(np.array([1.0, 2.0, 4.0]), np.array([2.0, 4.0, 8.0])) == pytest.approx(2.0)


def test_shift_ratio_stays_on_the_shift_when_times_are_bimodal():
    # 60% of the baseline's rounds and 40% of the candidate's shared their core (twice as long): the medians land in
    # different modes (ratio of medians 0.55), the pairwise estimate stays at the 1.1x shift
    base = np.array([1.0] * 4 + [2.0] * 6)
    cand = 1.1 * np.array([1.0] * 6 + [2.0] * 4)
    assert np.median(cand) / np.median(base) == pytest.approx(0.55)
    assert shift_ratio(base, cand) == pytest.approx(1.1)


def test_the_rank_test_is_exact_without_ties_so_more_rounds_never_flag_less():
    """Fully separated samples: p = 2 / C(2n, n) exactly (scipy's default switches to the normal approximation
    above 8 rounds, whose 1.8e-4 at 10 v 10 was worse than 8 v 8's exact 1.6e-4)."""
    assert smallest_p(10, 10) == pytest.approx(2 / comb(20, 10))
    best = [smallest_p(n, n) for n in range(2, 40)]
    assert all(np.diff(best) < 0)
    rng = np.random.default_rng(0)  # many rounds: the approximation (the exact p would take seconds, then be NaN)
    many = 1 + 0.1 * rng.random(600), 1.005 + 0.1 * rng.random(600)
    assert rank_test_p(*many) == pytest.approx(mannwhitneyu(many[1], many[0], method="asymptotic").pvalue)
    tied = np.array([1.0, 1.0, 2.0, 3.0]), np.array([2.0, 4.0, 5.0, 5.0])  # ties: the tie-corrected approximation
    assert rank_test_p(*tied) == pytest.approx(mannwhitneyu(tied[1], tied[0], method="asymptotic").pvalue)
