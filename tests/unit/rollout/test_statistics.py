"""The gate's statistics: bounds that cover the truth, and that refuse to judge on noise."""

from __future__ import annotations

import numpy as np

from rtserve.rollout.statistics import psi, rate_bounds, rate_difference


def test_zero_errors_in_a_small_sample_is_not_proof_of_a_zero_rate() -> None:
    diff = rate_difference(0, 50, 0, 50, alpha=0.05)
    assert diff.difference == 0.0
    assert diff.lower_bound < 0 < diff.upper_bound


def test_a_few_unlucky_requests_do_not_exceed_a_one_percent_margin() -> None:
    assert not rate_difference(3, 200, 1, 200, alpha=0.05).exceeds(0.01)


def test_a_real_twenty_percent_error_rate_exceeds_it_with_a_few_hundred_requests() -> None:
    assert rate_difference(40, 200, 0, 2000, alpha=0.05).exceeds(0.01)


def test_the_difference_bound_covers_the_truth_about_as_often_as_promised() -> None:
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(2000):
        a, b = rng.binomial(300, 0.05), rng.binomial(300, 0.02)
        covered += rate_difference(int(a), 300, int(b), 300, alpha=0.05).lower_bound <= 0.03
    assert 0.93 <= covered / 2000 <= 0.99


def test_wilson_bounds_of_one_rate() -> None:
    bound = rate_bounds(5, 100, alpha=0.05)
    assert bound.lower_bound < 0.05 < bound.upper_bound
    assert rate_bounds(0, 100, alpha=0.05).lower_bound == 0.0


def test_psi_is_near_zero_for_the_same_distribution_and_large_for_a_shifted_one() -> None:
    rng = np.random.default_rng(1)
    reference = rng.beta(2, 5, 5000)
    assert psi(reference, rng.beta(2, 5, 5000)) < 0.02
    assert psi(reference, rng.beta(5, 2, 5000)) > 1.0
