"""Win rates and the Bradley–Terry fit, checked against small examples worked by hand (no database)."""

from __future__ import annotations

import math

import pytest

from training.trainer.generation_settings import GenerationSettings, GenerationSettingsError
from training.trainer.ratings import LOSS, TIE, WIN, bradley_terry, bradley_terry_bootstrap, win_rate


def elo(strength_ratio: float) -> float:
    return 400 * math.log10(strength_ratio)


def test_it_counts_ties_as_half_a_win_with_a_wilson_interval():
    # 2 wins, 1 tie, 1 loss: 2.5 points of 4. Wilson by hand, z² = 3.8415:
    # centre = (0.625 + 3.8415/8) / (1 + 3.8415/4) = 0.5638; half = 1.96·√(0.2344/4 + 3.8415/64) / 1.9604 = 0.3443.
    rate, low, high = win_rate(2, 1, 1)
    n, p, z = 4, 0.625, 1.959963984540054
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert rate == pytest.approx(0.625)
    assert (low, high) == pytest.approx((centre - half, centre + half))
    assert (low, high) == pytest.approx((0.2194, 0.9081), abs=1e-4)


def test_a_clean_sweep_has_an_interval_below_one():
    rate, low, high = win_rate(10, 0, 0)
    assert rate == 1.0 and high == pytest.approx(1.0) and low == pytest.approx(0.7225, abs=1e-4)


def test_it_refuses_an_empty_count():
    with pytest.raises(ValueError, match="No battles"):
        win_rate(0, 0, 0)


def test_bradley_terry_recovers_strengths_4_2_1_from_consistent_counts():
    # A beats B 2-1, B beats C 2-1, A beats C 4-1. With strengths 4:2:1 each model's expected score equals its
    # actual score (A: 3·4/6 + 5·4/5 = 6 = 2 + 4), so 4:2:1 is the exact maximum-likelihood fit.
    battles = (
        [("A", "B", WIN)] * 2 + [("A", "B", LOSS)]
        + [("B", "C", WIN)] * 2 + [("C", "B", WIN)]
        + [("A", "C", WIN)] * 4 + [("A", "C", LOSS)]
    )
    ratings = bradley_terry(battles)
    # Mean rating 1000 puts B (the geometric mean of 4, 2, 1) at exactly 1000.
    assert ratings["A"] == pytest.approx(1000 + elo(2), abs=1e-6)
    assert ratings["B"] == pytest.approx(1000, abs=1e-6)
    assert ratings["C"] == pytest.approx(1000 - elo(2), abs=1e-6)
    assert sorted(ratings, key=ratings.get, reverse=True) == ["A", "B", "C"]


def test_ties_count_half_to_each_side():
    # 2 wins and 2 ties for A: 3 points to 1, so A is 3 times as strong.
    ratings = bradley_terry([("A", "B", WIN)] * 2 + [("B", "A", TIE)] * 2)
    assert ratings["A"] - ratings["B"] == pytest.approx(elo(3), abs=1e-6)


def test_a_prior_keeps_a_clean_sweep_finite():
    ratings = bradley_terry([("A", "B", WIN)] * 3, prior=1.0)
    # One virtual tie: 3.5 points to 0.5.
    assert ratings["A"] - ratings["B"] == pytest.approx(elo(7), abs=1e-6)


def test_bootstrap_interval_matches_the_binomial_quantiles_for_two_models():
    # 9 battles, A wins 5. A resample's win count is Binomial(9, 5/9), whose 2.5% and 97.5% quantiles are 2 and 8
    # (P(X<=1)=0.0065, P(X<=2)=0.0413; P(X<=7)=0.9587, P(X<=8)=0.9949), far from the cut-offs for 2000 rounds.
    # With one virtual tie per pair, w wins give A a rating of 1000 + 200·log10((w + .5) / (9 - w + .5)).
    battles = [("A", "B", WIN)] * 5 + [("A", "B", LOSS)] * 4
    result = bradley_terry_bootstrap(battles, rounds=2000, seed=7, prior=1.0)
    rating, low, high = result["A"]
    assert rating == pytest.approx(1000 + 200 * math.log10(5.5 / 4.5), abs=1e-6)
    assert low == pytest.approx(1000 + 200 * math.log10(2.5 / 7.5), abs=1e-6)
    assert high == pytest.approx(1000 + 200 * math.log10(8.5 / 1.5), abs=1e-6)
    assert result["B"][1] == pytest.approx(2000 - high, abs=1e-6)


def test_a_prompt_bootstrap_resamples_whole_prompts_and_its_interval_is_the_hand_computed_extremes():
    # Prompt 1: A beats B in all 10 votes; prompt 2: B beats A in all 10. A prompt resample is {1,1}, {1,2} or
    # {2,2}, each {1,1} (or {2,2}) a quarter of the time, so the 2.5% and 97.5% percentiles are the fits on
    # prompt 2 alone and prompt 1 alone, doubled: with one virtual tie, A at 1000 ± 200·log10(20.5 / 0.5).
    battles = [("A", "B", WIN)] * 10 + [("A", "B", LOSS)] * 10
    prompts = [1] * 10 + [2] * 10

    by_prompt = bradley_terry_bootstrap(battles, rounds=400, seed=5, prior=1.0, groups=prompts)
    by_vote = bradley_terry_bootstrap(battles, rounds=400, seed=5, prior=1.0)

    rating, low, high = by_prompt["A"]
    assert rating == pytest.approx(1000, abs=1e-6)
    assert high == pytest.approx(1000 + 200 * math.log10(20.5 / 0.5), abs=1e-6)
    assert low == pytest.approx(1000 - 200 * math.log10(20.5 / 0.5), abs=1e-6)
    # Votes resampled one by one: 20 coin flips, an interval a fraction as wide.
    assert by_vote["A"][2] - by_vote["A"][1] < (high - low) / 3
    with pytest.raises(ValueError, match="One group per battle"):
        bradley_terry_bootstrap(battles, groups=[1])


def test_bootstrap_is_reproducible_and_degenerate_when_every_battle_is_a_tie():
    battles = [("A", "B", TIE)] * 6 + [("B", "C", TIE)] * 6
    result = bradley_terry_bootstrap(battles, rounds=50, seed=1)
    for rating, low, high in result.values():
        assert rating == low == high == pytest.approx(1000)
    mixed = [("A", "B", WIN), ("B", "C", LOSS), ("A", "C", TIE), ("C", "A", WIN)] * 3
    assert bradley_terry_bootstrap(mixed, seed=3, prior=0.5) == bradley_terry_bootstrap(mixed, seed=3, prior=0.5)


def test_generation_settings_parse_and_refuse_nonsense():
    settings = GenerationSettings.from_dict({"temperature": 0.0, "max_new_tokens": 16, "seed": 4})
    assert settings.for_sample(0) == {"temperature": 0.0, "top_p": 0.9, "max_new_tokens": 16, "seed": 4, "sample": 0}
    for bad, message in (
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"max_new_tokens": 4096}, "max_new_tokens"),
        ({"seed": -1}, "seed"),
        ({"n": 9}, "n \\(completions"),
        ({"n": 2, "temperature": 0}, "Greedy"),
        ({"temprature": 1}, "Unknown"),
        ({"max_new_tokens": True}, "max_new_tokens"),
    ):
        with pytest.raises(GenerationSettingsError, match=message):
            GenerationSettings.from_dict(bad)
