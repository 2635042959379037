"""The one home of the proportion statistics: known values, and every figure that reads them agrees."""
from __future__ import annotations

import pytest

from labeling.statistics import binomial_two_sided_p_half, wilson_interval


def test_wilson_interval_matches_known_values_and_stays_inside_zero_and_one():
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_a_tie_counts_half_a_success():
    low, high = wilson_interval(8.5, 10)
    assert wilson_interval(8, 10)[0] < low < wilson_interval(9, 10)[0] and high < 1


def test_exact_binomial_test_against_a_fair_coin():
    assert binomial_two_sided_p_half(5, 10) == 1.0
    assert binomial_two_sided_p_half(0, 10) == pytest.approx(2 / 1024)
    assert binomial_two_sided_p_half(9, 10) == binomial_two_sided_p_half(1, 10) == pytest.approx(22 / 1024)
    assert binomial_two_sided_p_half(0, 0) == 1.0


def test_every_figure_reads_the_same_interval_and_test():
    from training.trainer.ratings import win_rate
    from training.trainer.reward import PairwiseAccuracy
    from training.trainer.win_rates import _sign_test_p

    assert PairwiseAccuracy(correct=8, pairs=10, ties=1).interval() == wilson_interval(8.5, 10)
    assert win_rate(8, 1, 1)[1:] == wilson_interval(8.5, 10)
    assert _sign_test_p(9, 1) == binomial_two_sided_p_half(9, 10)
