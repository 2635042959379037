"""labeling.agreement on small examples worked out by hand (in the comments) and against a brute-force alpha."""
from __future__ import annotations

import random
from fractions import Fraction

import pytest

from labeling.agreement import (
    binomial_two_sided_p_half,
    cohen_kappa,
    krippendorff_alpha_nominal,
    pairwise_kappas,
    position_bias,
    wilson_interval,
)


def brute_force_alpha(units: dict) -> Fraction | None:
    """alpha = 1 - D_o / D_e straight from the pairwise definition, in exact fractions.

    D_o = 1/n  · Σ_units 1/(m_u - 1) · #{ordered pairs of distinct coders in the unit who disagree}
    D_e = 1/(n(n-1)) · #{ordered pairs of distinct pairable values, from any units, that disagree}
    No coincidence matrix, so it checks the implementation by a different route.
    """
    pairable = [list(labels) for labels in units.values() if len(labels) >= 2]
    values = [v for labels in pairable for v in labels]
    n = len(values)
    if n < 2:
        return None
    observed = sum(
        Fraction(sum(1 for i, x in enumerate(labels) for j, y in enumerate(labels) if i != j and x != y), len(labels) - 1)
        for labels in pairable
    ) / n
    expected = Fraction(sum(1 for i, x in enumerate(values) for j, y in enumerate(values) if i != j and x != y), n * (n - 1))
    if expected == 0:
        return None
    return 1 - observed / expected


# Krippendorff, "Computing Krippendorff's Alpha-Reliability" (2011), the nominal example with missing
# data: four observers A–D (rows), units 1–12 (columns), "." = no value.
#   A:     1 2 3 3 2 1 4 1 2 . . .
#   B:     1 2 3 3 2 2 4 1 2 5 . 3
#   C:     . 3 3 3 2 3 4 2 2 5 1 .
#   D:     1 2 3 3 2 4 4 1 2 5 1 .
KRIPPENDORFF_EXAMPLE = {
    1: [1, 1, 1],
    2: [2, 2, 3, 2],
    3: [3, 3, 3, 3],
    4: [3, 3, 3, 3],
    5: [2, 2, 2, 2],
    6: [1, 2, 3, 4],
    7: [4, 4, 4, 4],
    8: [1, 1, 2, 1],
    9: [2, 2, 2, 2],
    10: [5, 5, 5],
    11: [1, 1],
    12: [3],  # one value: not pairable, must be ignored
}


def test_alpha_matches_krippendorffs_worked_example():
    # By hand. Pairable values n = 3 + 8·4 + 3 + 2 = 40 (unit 12 dropped).
    # Totals n_c: 1 → 3+1+3+2 = 9; 2 → 3+4+1+1+4 = 13; 3 → 1+4+4+1 = 10; 4 → 1+4 = 5; 5 → 3.  Σ = 40.
    # Off-diagonal coincidences (ordered pairs of different values / (m_u - 1)):
    #   unit 2 {2,2,2,3}: (2,3) and (3,2) 3 pairs each / 3 → 1 + 1 = 2
    #   unit 6 {1,2,3,4}: 12 ordered pairs of different values / 3 → 4
    #   unit 8 {1,1,1,2}: (1,2) and (2,1) 3 pairs each / 3 → 2
    #   Σ_{c≠k} o_ck = 8
    # Σ_{c≠k} n_c·n_k = n² - Σ n_c² = 1600 - (81 + 169 + 100 + 25 + 9) = 1600 - 384 = 1216
    # alpha = 1 - (n - 1)·8 / 1216 = 1 - 312/1216 = 113/152 ≈ 0.7434 (Krippendorff reports 0.743).
    alpha = krippendorff_alpha_nominal(KRIPPENDORFF_EXAMPLE)
    assert alpha == pytest.approx(113 / 152, abs=1e-12)
    assert brute_force_alpha(KRIPPENDORFF_EXAMPLE) == Fraction(113, 152)


def test_alpha_on_a_two_coder_example():
    # Units (a,a), (a,b), (b,b), (b,b): n = 8, n_a = 3, n_b = 5.
    # Only unit 2 disagrees: o_ab = o_ba = 1/(2-1) = 1, so Σ_{c≠k} o = 2.
    # Σ_{c≠k} n_c n_k = 2·3·5 = 30.  alpha = 1 - 7·2/30 = 16/30 = 8/15.
    units = {"t1": ["a", "a"], "t2": ["a", "b"], "t3": ["b", "b"], "t4": ["b", "b"]}
    assert krippendorff_alpha_nominal(units) == pytest.approx(8 / 15)


@pytest.mark.parametrize("seed", range(30))
def test_alpha_agrees_with_the_brute_force_definition(seed):
    rng = random.Random(seed)
    categories = ["a", "b", "tie", "both_bad"][: rng.randint(2, 4)]
    units = {
        unit: [rng.choice(categories) for _ in range(rng.randint(0, 5))] for unit in range(rng.randint(1, 25))
    }
    expected = brute_force_alpha(units)
    alpha = krippendorff_alpha_nominal(units)
    if expected is None:
        assert alpha is None
    else:
        assert alpha == pytest.approx(float(expected), abs=1e-12)


def test_alpha_is_one_for_perfect_agreement_over_two_categories():
    assert krippendorff_alpha_nominal({1: ["a", "a"], 2: ["b", "b", "b"]}) == 1.0


def test_alpha_is_negative_for_systematic_disagreement():
    # Every unit (a, b): n = 4, n_a = n_b = 2, Σ o_{c≠k} = 4, Σ n_c n_k = 8 → alpha = 1 - 3·4/8 = -0.5.
    assert krippendorff_alpha_nominal({1: ["a", "b"], 2: ["b", "a"]}) == pytest.approx(-0.5)


@pytest.mark.parametrize(
    "units",
    [
        {},  # no data
        {1: ["a"], 2: ["b"]},  # no unit has two values: nothing can be paired
        {1: ["a", "a"], 2: ["a", "a", "a"]},  # one category only: expected disagreement is 0
    ],
    ids=["empty", "no-pairable-unit", "one-category"],
)
def test_alpha_is_none_when_undefined(units):
    assert krippendorff_alpha_nominal(units) is None


def test_alpha_ignores_single_value_units():
    base = {"t1": ["a", "a"], "t2": ["a", "b"], "t3": ["b", "b"]}
    assert krippendorff_alpha_nominal({**base, "t9": ["tie"]}) == krippendorff_alpha_nominal(base)


def test_kappa_on_a_textbook_table():
    # 50 items: both yes 20, first yes/second no 5, first no/second yes 10, both no 15.
    # p_o = 35/50 = 0.7; first says yes 25/50, second 30/50; p_e = 0.5·0.6 + 0.5·0.4 = 0.5.
    # kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4.
    pairs = [("y", "y")] * 20 + [("y", "n")] * 5 + [("n", "y")] * 10 + [("n", "n")] * 15
    assert cohen_kappa(pairs) == pytest.approx(0.4)


def test_kappa_on_the_two_coder_example():
    # Same data as the alpha example, coder 1 = (a, a, b, b), coder 2 = (a, b, b, b):
    # p_o = 3/4; coder 1 a = 1/2, coder 2 a = 1/4; p_e = 1/2·1/4 + 1/2·3/4 = 1/2; kappa = (1/4)/(1/2) = 0.5.
    assert cohen_kappa([("a", "a"), ("a", "b"), ("b", "b"), ("b", "b")]) == pytest.approx(0.5)


def test_kappa_edge_cases():
    assert cohen_kappa([]) is None
    assert cohen_kappa([("a", "a"), ("a", "a")]) is None  # p_e = 1: undefined
    assert cohen_kappa([("a", "a"), ("b", "b")]) == 1.0
    # Coders never agree and each uses one label: p_o = 0, p_e = 0, kappa = 0.
    assert cohen_kappa([("a", "b"), ("a", "b")]) == 0.0


def test_pairwise_kappas_pairs_annotators_on_shared_tasks_only():
    votes = {
        1: {"ann": "a", "bob": "a", "cat": "b"},
        2: {"ann": "b", "bob": "b"},
        3: {"bob": "a", "ann": "b"},
        4: {"cat": "tie"},  # cat shares task 1 with ann and bob only
        5: {"dan": "a"},  # dan shares nothing: no pair with dan
    }
    result = pairwise_kappas(votes)
    assert set(result) == {("ann", "bob"), ("ann", "cat"), ("bob", "cat")}
    # ann vs bob on tasks 1-3: (a,a), (b,b), (b,a). p_o = 2/3; ann a = 1/3, bob a = 2/3;
    # p_e = 1/3·2/3 + 2/3·1/3 = 4/9; kappa = (2/3 - 4/9) / (5/9) = (2/9)/(5/9) = 0.4.
    kappa, shared = result[("ann", "bob")]
    assert shared == 3
    assert kappa == pytest.approx(0.4)
    # ann vs cat share one task with different labels: p_o = 0, p_e = 0 → kappa 0.
    assert result[("ann", "cat")] == (0.0, 1)


def test_position_bias_counts_left_picks_and_skips_ties():
    # 9 left, 1 right, 3 ties (None): n = 10.
    # Two-sided exact p = 2·P(X ≤ 1) = 2·(C(10,0) + C(10,1))/2^10 = 2·11/1024 = 22/1024 ≈ 0.0215.
    bias = position_bias(["left"] * 9 + ["right"] + [None] * 3)
    assert (bias.left_rate, bias.n, bias.left) == (0.9, 10, 9)
    assert bias.p_value == pytest.approx(22 / 1024)
    # Wilson 95%, z = 1.96: z²/n = 0.38416; centre = (0.9 + 0.19208)/1.38416 = 0.78898;
    # half width = 1.96/1.38416 · √(0.09/10 + 3.8416/400) = 1.41602 · √0.018604 = 0.19314;
    # interval ≈ (0.5958, 0.9821).
    assert bias.ci_low == pytest.approx(0.5958, abs=5e-4)
    assert bias.ci_high == pytest.approx(0.9821, abs=5e-4)
    assert bias.biased


def test_position_bias_needs_enough_votes_and_a_real_effect():
    # Five straight left picks: p = 2/32 = 0.0625, not significant.
    assert position_bias(["left"] * 5).p_value == pytest.approx(0.0625)
    assert not position_bias(["left"] * 5).biased
    # Six: p = 2/64 = 0.03125, flagged.
    assert position_bias(["left"] * 6).biased
    # 5,200 of 10,000 left is significant (p ≈ 6e-5) but only 2 points from 50%: not flagged.
    many = position_bias(["left"] * 5200 + ["right"] * 4800)
    assert many.p_value < 0.001
    assert not many.biased
    # Balanced picks.
    balanced = position_bias(["left", "right"] * 20)
    assert balanced.p_value == 1.0
    assert not balanced.biased


def test_position_bias_with_no_decisive_picks():
    bias = position_bias([None, None])
    assert bias.n == 0
    assert bias.left_rate is None
    assert bias.p_value == 1.0
    assert (bias.ci_low, bias.ci_high) == (0.0, 1.0)
    assert not bias.biased


def test_position_bias_rejects_unknown_picks():
    with pytest.raises(ValueError, match="tie"):
        position_bias(["left", "tie"])


def test_binomial_and_wilson_small_cases():
    assert binomial_two_sided_p_half(0, 0) == 1.0
    assert binomial_two_sided_p_half(1, 2) == 1.0  # 2·P(X ≤ 1) = 2·3/4, capped at 1
    assert binomial_two_sided_p_half(0, 3) == pytest.approx(0.25)  # 2·(1/8)
    assert binomial_two_sided_p_half(3, 3) == pytest.approx(0.25)
    low, high = wilson_interval(0, 10)
    assert low == 0.0
    # k = 0: upper = (z²/2n + z·√(z²/4n²)) / (1 + z²/n) = (z²/n) / (1 + z²/n) = 0.38416/1.38416 ≈ 0.2775.
    assert high == pytest.approx(0.2775, abs=5e-4)
    with pytest.raises(ValueError):
        wilson_interval(5, 4)
