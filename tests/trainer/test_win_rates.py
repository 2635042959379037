"""Paired, length-controlled and thumbs-up win rates, checked against scipy and hand-worked numbers (no database)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import expit
from scipy.stats import binomtest

from training.trainer.win_rates import length_controlled_win_rate, paired_win_rate, thumbs_up_rate

DOCUMENTED_LENGTH_PENALTY = 0.1  # λ in λ·phi²/2, as win_rates.py documents it


def one_big_prompt_won_nine_small_lost() -> list[tuple[str, float]]:
    return [("big", 1.0)] * 50 + [(f"small-{i}", 0.0) for i in range(9)]


# ---------------------------------------------------------------- paired win rate


def test_it_counts_ties_half_and_averages_over_votes_not_prompts():
    # given prompt a: win + tie, b: tie + loss, c: win
    outcomes = [("a", 1.0), ("a", 0.5), ("b", 0.5), ("b", 0.0), ("c", 1.0)]
    # when
    result = paired_win_rate(outcomes, rounds=200)
    # then 3 points of 5 votes; the mean of prompt means would be (0.75 + 0.25 + 1) / 3 = 0.667
    assert result.rate == pytest.approx(0.6)
    assert (result.votes, result.prompts) == (5, 3)
    assert (result.wins, result.ties, result.losses) == (2, 2, 1)
    assert (result.prompts_won, result.prompts_lost, result.prompts_even) == (2, 1, 0)


def test_the_sign_test_matches_scipy_and_leaves_out_even_prompts():
    # given 12 prompts won, 4 lost and 3 whose mean is exactly 0.5, with varied numbers of votes
    won = [[1.0], [1.0, 0.5], [1.0, 1.0, 0.0], [0.5, 1.0]] * 3
    lost = [[0.0], [0.0, 0.5], [0.0, 0.0, 1.0], [0.5, 0.0]]
    even = [[0.5], [1.0, 0.0], [1.0, 0.5, 0.0]]
    outcomes = [(f"prompt-{i}", o) for i, votes in enumerate(won + lost + even) for o in votes]
    # when
    result = paired_win_rate(outcomes, rounds=100)
    # then
    assert (result.prompts_won, result.prompts_lost, result.prompts_even) == (12, 4, 3)
    assert result.sign_test_p == pytest.approx(binomtest(12, 16, 0.5).pvalue, rel=1e-12)
    assert result.sign_test_p == pytest.approx(0.0768, abs=1e-4)  # 2 · (1 + 16 + 120 + 560 + 1820) / 2^16
    assert result.sign_test_p != pytest.approx(binomtest(12, 19, 0.5).pvalue)  # what counting the evens would give


@pytest.mark.parametrize(("won", "lost"), [(0, 1), (3, 3), (5, 0), (2, 9), (530, 470), (4, 5)])
def test_the_sign_test_agrees_with_scipy_across_counts(won: int, lost: int):
    # given prompts with one vote each
    outcomes = [(f"w{i}", 1.0) for i in range(won)] + [(f"l{i}", 0.0) for i in range(lost)]
    # when
    result = paired_win_rate(outcomes, rounds=10)
    # then
    assert result.sign_test_p == pytest.approx(binomtest(won, won + lost, 0.5).pvalue, rel=1e-9)


def test_the_sign_test_is_one_when_every_prompt_is_even():
    result = paired_win_rate([("a", 0.5), ("b", 1.0), ("b", 0.0)], rounds=10)
    assert result.prompts_even == 2 and result.sign_test_p == 1.0


def test_votes_of_one_prompt_move_together_in_the_bootstrap():
    # given one prompt with 50 won votes and 9 prompts with one lost vote each: 50/59 = 84.7% of votes
    outcomes = one_big_prompt_won_nine_small_lost()
    # when
    result = paired_win_rate(outcomes, rounds=2000, seed=0)
    # then a resample holds the big prompt m ~ Binomial(10, 0.1) times and reads 50m / (50m + 10 - m).
    # P(m = 0) = 0.9^10 = 35% > 2.5%, so the low end is 0; P(m >= 3) = 7.0% and P(m >= 4) = 1.3%, so the
    # 97.5th percentile is the m = 3 value 150/157.
    assert result.rate == pytest.approx(50 / 59)
    assert result.low == 0.0
    assert result.high == pytest.approx(150 / 157)
    # A vote-level Wilson interval treats the 59 votes as independent: about 73.5–91.8%.
    wilson = binomtest(50, 59).proportion_ci(confidence_level=0.95, method="wilson")
    assert (wilson.low, wilson.high) == pytest.approx((0.7348, 0.9176), abs=1e-4)
    assert result.high - result.low > 5 * (wilson.high - wilson.low)  # 0.955 against 0.183
    assert result.summary == "tuned wins 84.7% (95% CI 0.0–95.5%, 10 prompts, 59 votes); sign test p = 0.021"


def test_the_bootstrap_is_seeded_and_contains_the_point_estimate():
    # given 40 prompts with 1-4 votes each, tuned ahead
    rng = np.random.default_rng(11)
    outcomes = [
        (f"prompt-{p}", float(rng.choice([1.0, 0.5, 0.0], p=[0.55, 0.15, 0.30])))
        for p in range(40)
        for _ in range(int(rng.integers(1, 5)))
    ]
    # when
    first = paired_win_rate(outcomes, seed=5)
    again = paired_win_rate(outcomes, seed=5)
    other = paired_win_rate(outcomes, seed=6)
    # then
    assert first == again
    assert (other.low, other.high) != (first.low, first.high)
    for result in (first, other, paired_win_rate(outcomes, seed=7, level=0.8)):
        assert result.low < result.rate < result.high
    assert paired_win_rate(outcomes, seed=5, level=0.8).high < first.high


def test_a_single_prompt_gives_a_degenerate_interval():
    result = paired_win_rate([("only", 1.0), ("only", 0.0), ("only", 0.5), ("only", 1.0)], rounds=50)
    assert result.rate == result.low == result.high == 0.625
    assert result.sign_test_p == 1.0  # one prompt won of one decided


def test_it_refuses_no_votes_and_outcomes_that_are_not_win_tie_or_loss():
    with pytest.raises(ValueError, match="No votes"):
        paired_win_rate([])
    with pytest.raises(ValueError, match=r"1 \(tuned wins\), 0.5 .* got 0.3"):
        paired_win_rate([("a", 1.0), ("b", 0.3)])
    with pytest.raises(ValueError, match="level"):
        paired_win_rate([("a", 1.0)], level=95)


# ---------------------------------------------------------------- length-controlled win rate


def votes_explained_by_length(prompts: int = 600, k: int = 3, seed: int = 0) -> list[tuple[int, float, float, float]]:
    """Tuned longer on 80% of pairs; P(win) = sigmoid(3 tanh(d / s)), which is 0.5 at d = 0."""
    rng = np.random.default_rng(seed)
    n = prompts * k
    d = np.where(rng.random(n) < 0.8, 1.0, -1.0) * rng.uniform(0, 400, n)
    y = (rng.random(n) < expit(3 * np.tanh(d / d.std()))).astype(float)
    base = rng.uniform(100, 600, n)
    return [(i // k, float(y[i]), float(base[i] + d[i]), float(base[i])) for i in range(n)]


def votes_not_explained_by_length(prompts: int = 300, k: int = 3, seed: int = 0) -> list[tuple[int, float, float, float]]:
    """Tuned longer on 80% of pairs, but wins 65%, ties 10%, loses 25% whatever the lengths."""
    rng = np.random.default_rng(seed)
    n = prompts * k
    base = rng.uniform(100, 600, n)
    tuned = base + np.where(rng.random(n) < 0.8, 1.0, -1.0) * rng.uniform(0, 400, n)
    u = rng.random(n)
    y = np.where(u < 0.65, 1.0, np.where(u < 0.75, 0.5, 0.0))
    return [(i // k, float(y[i]), float(tuned[i]), float(base[i])) for i in range(n)]


def test_it_removes_a_win_rate_that_length_fully_explains():
    # given votes driven only by length, the tuned answer mostly longer
    items = votes_explained_by_length()
    # when
    result = length_controlled_win_rate(items, rounds=200)
    # then the raw rate is inflated, the length-controlled rate is back near 50%, and phi near the true 3
    assert result.raw_rate == pytest.approx(np.mean([item[1] for item in items]))
    assert result.raw_rate > 0.65
    assert abs(result.rate - 0.5) < 0.06
    assert 2.0 < result.length_coefficient < 4.0
    assert result.low < 0.5 < result.high < result.raw_rate
    assert (result.votes, result.prompts, result.length_unit) == (1800, 600, "characters")


def test_it_leaves_a_win_rate_that_length_does_not_explain():
    # given tuned better by a fixed margin, longer on 80% of pairs but with no effect of length on the votes
    items = votes_not_explained_by_length()
    # when
    result = length_controlled_win_rate(items, rounds=200)
    # then
    assert abs(result.rate - result.raw_rate) < 0.05
    assert abs(result.length_coefficient) < 0.5
    assert result.low < result.rate < result.high
    assert result == length_controlled_win_rate(items, rounds=200)


def scipy_fit(items: list[tuple[int, float, float, float]]) -> tuple[float, float]:
    """The same penalised likelihood minimised derivative-free by Nelder–Mead, from the definitions."""
    y = np.array([item[1] for item in items])
    d = np.array([item[2] - item[3] for item in items])
    s = math.sqrt(sum((v - d.mean()) ** 2 for v in d) / len(d))
    x = np.tanh(d / s)

    def penalised_nll(params: np.ndarray) -> float:
        p = np.clip(expit(params[0] + params[1] * x), 1e-300, 1 - 1e-16)
        return -np.sum(y * np.log(p) + (1 - y) * np.log1p(-p)) + DOCUMENTED_LENGTH_PENALTY / 2 * params[1] ** 2

    fit = minimize(penalised_nll, x0=[0.1, 0.1], method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-13, "maxiter": 20_000})
    assert fit.success
    return float(fit.x[0]), float(fit.x[1])


def small_mixed_set() -> list[tuple[int, float, float, float]]:
    rng = np.random.default_rng(3)
    return [
        (i // 2, float(rng.choice([1.0, 0.5, 0.0], p=[0.5, 0.2, 0.3])), float(rng.integers(50, 500)), float(rng.integers(50, 500)))
        for i in range(60)
    ]


def perfectly_separated_set() -> list[tuple[int, float, float, float]]:
    # the longer answer always wins, plus one tie so that theta has a finite optimum; only the penalty bounds phi
    return [(i, 1.0, 300.0 + 10 * i, 200.0) for i in range(8)] + [(10 + i, 0.0, 200.0, 250.0 + 10 * i) for i in range(4)] + [(99, 0.5, 200.0, 200.0)]


@pytest.mark.parametrize("items", [small_mixed_set(), perfectly_separated_set()], ids=["mixed-with-ties", "separated"])
def test_the_fit_matches_an_independent_scipy_minimisation(items: list[tuple[int, float, float, float]]):
    # when
    result = length_controlled_win_rate(items, rounds=20)
    theta, phi = scipy_fit(items)
    # then
    assert result.intercept == pytest.approx(theta, abs=1e-4)
    assert result.length_coefficient == pytest.approx(phi, abs=1e-4)
    assert result.rate == pytest.approx(expit(theta), abs=1e-4)
    assert math.isfinite(result.length_coefficient)


def test_when_every_vote_is_a_win_the_length_controlled_rate_is_one():
    result = length_controlled_win_rate([(i, 1.0, 100.0 + i, 100.0) for i in range(5)], rounds=20)
    assert result.rate == result.low == result.high == 1.0
    assert result.length_coefficient == 0.0


def test_it_refuses_no_items_and_bad_outcomes():
    with pytest.raises(ValueError, match="No votes"):
        length_controlled_win_rate([])
    with pytest.raises(ValueError, match="got 0.3"):
        length_controlled_win_rate([("a", 0.3, 10.0, 12.0)])
    with pytest.raises(ValueError, match="finite"):
        length_controlled_win_rate([("a", 1.0, math.nan, 12.0)])


# ---------------------------------------------------------------- thumbs up


def test_the_thumbs_up_rate_has_a_wilson_interval():
    rate, low, high = thumbs_up_rate(18, 6)
    wilson = binomtest(18, 24).proportion_ci(confidence_level=0.95, method="wilson")
    assert rate == 0.75
    assert (low, high) == pytest.approx((wilson.low, wilson.high), abs=1e-9)
    with pytest.raises(ValueError, match="No thumbs"):
        thumbs_up_rate(0, 0)
