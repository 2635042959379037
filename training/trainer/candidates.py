"""Which of a prompt's candidate completions to pair for annotators, Django-free.

A vote carries signal only when the two answers differ in a way a person can judge. So before pairing:

- answers cut off at the token limit (``cut_off``) are by default paired only against a finished answer
  (``AGAINST_FINISHED``): between two cut-off answers a reader mostly judges where the text stops, not what it
  says, but a finished answer against a cut-off one is a fair question (a person prefers the one that ends, or
  writes a better one), and it gives a pair to most prompts of a small model that often runs on. ``LEFT_OUT``
  leaves them out of pairs, ``PAIRED`` pairs them like any other. The extremes always leave them out: the
  longest answer would otherwise be a cut-off one by construction. Training leaves out a pair whose chosen
  answer was cut off unless the annotator wrote a better one (``labeling.exporting``), so a cut-off answer
  teaches only as the one rejected;
- answers identical (after trimming whitespace) to an earlier one are left out: a pair of twins teaches
  nothing, and two pairs that differ only in which twin they show ask the same question twice.

Strategies (``strategy``):

- ``all``: every usable answer against every other, in order, up to ``max_pairs``;
- ``length_extremes``: one pair, the answer scoring lowest against the one scoring highest. The score is
  the word count unless a caller passes another (a reward model's score, say);
- ``mixed_temperatures``: only answers sampled at different temperatures are paired (a cool answer against
  a hot one), up to ``max_pairs``;
- ``reward_extremes``: best-of-N and worst-of-N as one pair: the answer a reward model scores highest against
  the one it scores lowest (the caller passes the reward model's scores as ``score``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

from .text import word_count

ALL = "all"
LENGTH_EXTREMES = "length_extremes"
MIXED_TEMPERATURES = "mixed_temperatures"
REWARD_EXTREMES = "reward_extremes"
STRATEGIES = (ALL, LENGTH_EXTREMES, MIXED_TEMPERATURES, REWARD_EXTREMES)
EXTREMES = (LENGTH_EXTREMES, REWARD_EXTREMES)
DEFAULT_MAX_PAIRS = 6

AGAINST_FINISHED = "against_finished"
LEFT_OUT = "left_out"
PAIRED = "paired"
CUT_OFF_CHOICES = (AGAINST_FINISHED, LEFT_OUT, PAIRED)


def check_cut_off(cut_off: str) -> None:
    if cut_off not in CUT_OFF_CHOICES:
        raise ValueError(f"Unknown treatment of cut-off answers {cut_off!r}: use one of {', '.join(CUT_OFF_CHOICES)}.")


@dataclass(frozen=True)
class Candidate:
    """One answer to one prompt. ``key`` identifies it to the caller (a Completion id, say)."""

    key: Hashable
    text: str
    truncated: bool = False
    temperature: float | None = None


@dataclass
class Pairing:
    """The pairs to make, in order, and what was left out of them."""

    pairs: list[tuple[Candidate, Candidate]] = field(default_factory=list)
    truncated_left_out: int = 0
    duplicates_left_out: int = 0


def pair_candidates(
    candidates: Sequence[Candidate],
    strategy: str = ALL,
    *,
    score: Callable[[str], float] = word_count,
    cut_off: str = AGAINST_FINISHED,
    max_pairs: int = DEFAULT_MAX_PAIRS,
) -> Pairing:
    """Pairs among one prompt's candidates by ``strategy`` (see the module docstring); deterministic, so the
    same candidates always give the same pairs (a re-run adds none). Sides are as given: the caller shuffles."""
    if strategy not in STRATEGIES:
        raise ValueError(f"Unknown pairing {strategy!r}: use one of {', '.join(STRATEGIES)}.")
    check_cut_off(cut_off)
    if max_pairs < 1:
        raise ValueError(f"max_pairs must be at least 1, got {max_pairs}.")
    result = Pairing()
    leave_out_truncated = cut_off == LEFT_OUT or (strategy in EXTREMES and cut_off != PAIRED) or strategy == LENGTH_EXTREMES
    usable: list[Candidate] = []
    seen: set[str] = set()
    for candidate in candidates:
        if candidate.truncated and leave_out_truncated:
            result.truncated_left_out += 1
            continue
        text = candidate.text.strip()
        if text in seen:
            result.duplicates_left_out += 1
            continue
        seen.add(text)
        usable.append(candidate)
    if len(usable) < 2:
        return result
    if strategy in EXTREMES:
        # sorted() is stable, so among equal scores the earlier candidate comes first.
        ranked = sorted(usable, key=lambda c: score(c.text))
        result.pairs = [(ranked[0], ranked[-1])]
        return result
    pairs = itertools.combinations(usable, 2)
    if cut_off == AGAINST_FINISHED:
        pairs = ((a, b) for a, b in pairs if not (a.truncated and b.truncated))
    if strategy == MIXED_TEMPERATURES:
        pairs = ((a, b) for a, b in pairs if a.temperature != b.temperature)
    result.pairs = list(itertools.islice(pairs, max_pairs))
    return result


def _binomial(n: int, k: int, p: float) -> float:
    return math.comb(n, k) * p**k * (1 - p) ** (n - k)


def expected_pairs(
    answers: int,
    complete_share: float,
    strategy: str = ALL,
    *,
    cut_off: str = AGAINST_FINISHED,
    max_pairs: int = DEFAULT_MAX_PAIRS,
) -> tuple[float, float]:
    """(expected pairs, chance of at least one pair) for one prompt with ``answers`` candidates, each finished
    independently with probability ``complete_share``, as ``pair_candidates`` would pair them (twins aside). With
    two temperatures, every other answer is drawn at the second one, so the first temperature has the odd one."""
    if strategy not in STRATEGIES:
        raise ValueError(f"Unknown pairing {strategy!r}: use one of {', '.join(STRATEGIES)}.")
    check_cut_off(cut_off)
    if strategy in EXTREMES and cut_off == AGAINST_FINISHED or strategy == LENGTH_EXTREMES:
        cut_off = LEFT_OUT
    p = 1.0 if cut_off == PAIRED else complete_share
    expected = at_least_one = 0.0
    if strategy == MIXED_TEMPERATURES:
        cool, hot = (answers + 1) // 2, answers // 2
        for kc in range(cool + 1):
            for kh in range(hot + 1):
                chance = _binomial(cool, kc, p) * _binomial(hot, kh, p)
                # Cut-off answers against finished ones: every cross pair but those of two cut-off answers.
                crossed = cool * hot - (cool - kc) * (hot - kh) if cut_off == AGAINST_FINISHED else kc * kh
                pairs = min(max_pairs, crossed)
                expected += chance * pairs
                at_least_one += chance if pairs else 0.0
        return expected, at_least_one
    for k in range(answers + 1):
        chance = _binomial(answers, k, p)
        if strategy in EXTREMES:
            pairs = 1 if k >= 2 else 0
        elif cut_off == AGAINST_FINISHED:
            pairs = min(max_pairs, math.comb(k, 2) + k * (answers - k))
        else:
            pairs = min(max_pairs, math.comb(k, 2))
        expected += chance * pairs
        at_least_one += chance if pairs else 0.0
    return expected, at_least_one
