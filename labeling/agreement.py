"""Inter-annotator agreement and position bias: plain functions over plain data, no Django.

The dashboard (``labeling.quality``) loads votes once and hands them here as dicts and lists, so
these formulas can be tested on hand-computed examples without a database.

Conventions, chosen once here so every caller agrees:

- Every coefficient returns ``None`` when it is undefined (no data, or no variation to be
  expected by chance) rather than 0.0 or 1.0: a dashboard must be able to tell "no evidence"
  from "perfect" or "chance-level" agreement.
- Labels are compared for equality only (nominal data): ``"a"``, ``"b"``, ``"tie"`` and
  ``"both_bad"`` are four unordered categories.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

from labeling.statistics import binomial_two_sided_p_half, wilson_interval

# z for a two-sided 95% interval (the 97.5th percentile of the standard normal).


def krippendorff_alpha_nominal(units: Mapping[Hashable, Sequence[Hashable]]) -> float | None:
    """Krippendorff's alpha for nominal data, from the coincidence matrix.

    ``units`` maps each unit (a task) to the labels its coders gave it, one label per coder, in any
    order; missing coders are simply absent. Units with fewer than two labels cannot be paired and
    are ignored, as Krippendorff prescribes.

    alpha = 1 - D_o / D_e, with, over the pairable values only (n of them):
      o_ck = sum over units of (number of ordered pairs of distinct coders giving c, k) / (m_u - 1)
      n_c  = sum_k o_ck
      D_o  = sum_{c != k} o_ck / n
      D_e  = sum_{c != k} n_c * n_k / (n * (n - 1))

    Returns None when alpha is undefined: no pairable unit, or D_e == 0 (every pairable value is
    the same category). Krippendorff leaves alpha undefined there because "agreement" on data
    that never varies says nothing about reliability; returning 1.0 would make a project where
    everyone clicks the same button look perfectly reliable.
    """
    coincidences: Counter[tuple[Hashable, Hashable]] = Counter()
    totals: Counter[Hashable] = Counter()
    for labels in units.values():
        m = len(labels)
        if m < 2:
            continue
        counts = Counter(labels)
        # Ordered pairs (c, k) from distinct coders: n_c * n_k if c != k, n_c * (n_c - 1) if c == k.
        for c, n_c in counts.items():
            totals[c] += n_c
            for k, n_k in counts.items():
                if c != k:
                    coincidences[(c, k)] += n_c * n_k / (m - 1)
    n = sum(totals.values())
    if n < 2:
        return None
    observed_disagreement = sum(coincidences.values())  # off-diagonal only; times 1/n below
    expected_pairs = n * n - sum(n_c * n_c for n_c in totals.values())  # sum_{c != k} n_c * n_k
    if expected_pairs == 0:
        return None
    return 1.0 - (n - 1) * observed_disagreement / expected_pairs


def cohen_kappa(pairs: Sequence[tuple[Hashable, Hashable]]) -> float | None:
    """Cohen's kappa for two coders: ``pairs`` holds (coder 1's label, coder 2's label), one per shared item.

    kappa = (p_o - p_e) / (1 - p_e), p_e from each coder's own label distribution. Returns None when
    there are no pairs or when p_e == 1 (both coders used one and the same label throughout, so chance
    already explains all agreement and kappa is 0/0).
    """
    n = len(pairs)
    if n == 0:
        return None
    agreed = sum(1 for first, second in pairs if first == second)
    firsts = Counter(first for first, _ in pairs)
    seconds = Counter(second for _, second in pairs)
    p_observed = agreed / n
    p_expected = sum(count * seconds.get(label, 0) for label, count in firsts.items()) / (n * n)
    if math.isclose(p_expected, 1.0):
        return None
    return (p_observed - p_expected) / (1.0 - p_expected)


def pairwise_kappas(
    votes_by_task: Mapping[Hashable, Mapping[Hashable, Hashable]],
) -> dict[tuple[Hashable, Hashable], tuple[float | None, int]]:
    """Cohen's kappa for every two annotators who labelled at least one task in common.

    ``votes_by_task`` maps task → {annotator → label}. Returns {(first, second): (kappa, n_shared)}
    with ``first < second``, so annotator keys must be mutually orderable (ids, or names). Pairs
    who share no task are left out; a pair whose kappa is undefined appears with None.
    """
    shared: dict[tuple[Hashable, Hashable], list[tuple[Hashable, Hashable]]] = {}
    for by_annotator in votes_by_task.values():
        for first, second in combinations(sorted(by_annotator), 2):  # type: ignore[type-var]
            shared.setdefault((first, second), []).append((by_annotator[first], by_annotator[second]))
    return {pair: (cohen_kappa(labels), len(labels)) for pair, labels in sorted(shared.items())}  # type: ignore[type-var]


@dataclass(frozen=True)
class PositionBias:
    """How often an annotator picked the left-hand completion, and whether that is more than chance.

    The side completion A is shown on is random per (task, annotator), so an unbiased annotator picks
    left about half the time whatever they think of the content.
    """

    left: int
    n: int
    p_value: float  # exact two-sided binomial test of left ~ Binomial(n, 0.5)
    ci_low: float  # 95% Wilson score interval for the left rate
    ci_high: float
    biased: bool

    @property
    def left_rate(self) -> float | None:
        return self.left / self.n if self.n else None


def position_bias(
    picks: Iterable[str | None], *, significance: float = 0.05, min_effect: float = 0.1
) -> PositionBias:
    """Left-pick rate of one annotator, with a test against 0.5.

    ``picks`` holds ``"left"`` or ``"right"`` per decisive vote; ``None`` (a tie or both-bad, as
    ``PairVote.picked_side`` gives) is skipped; anything else raises ValueError.

    ``biased`` needs both a significant test (p < ``significance``) and a rate at least
    ``min_effect`` away from 0.5: with thousands of votes a 52% left rate is "significant" but not
    worth a warning, and with few votes no rate is (six straight left picks give p = 0.031; five
    give 0.0625).
    """
    left = right = 0
    for pick in picks:
        if pick == "left":
            left += 1
        elif pick == "right":
            right += 1
        elif pick is not None:
            raise ValueError(f"A pick is 'left', 'right' or None, not {pick!r}.")
    n = left + right
    p_value = binomial_two_sided_p_half(left, n)
    low, high = wilson_interval(left, n)
    biased = n > 0 and p_value < significance and abs(left / n - 0.5) >= min_effect
    return PositionBias(left=left, n=n, p_value=p_value, ci_low=low, ci_high=high, biased=biased)


def flip_rate_from_agreement(agree: int, pairs: int) -> float:
    """The share of votes flipped at random that explains how often two annotators agree on a/b.

    If each annotator independently flips the true preference with probability e, two of them agree with
    probability (1 - e)^2 + e^2 = 1 - 2e(1 - e); solving for e gives e = (1 - sqrt(2p - 1)) / 2. Agreement at or
    below chance (p <= 0.5) means e = 0.5: the votes carry no signal. Raises ValueError with no pairs.
    """
    if pairs <= 0 or not 0 <= agree <= pairs:
        raise ValueError(f"Need a positive number of annotator pairs and 0 <= agree <= pairs, got {agree}/{pairs}.")
    p = agree / pairs
    return (1 - math.sqrt(max(0.0, 2 * p - 1))) / 2
