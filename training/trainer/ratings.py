"""Ratings from battles, Django-free: the outcome of one battle (WIN, TIE, LOSS), a win rate with a Wilson
interval, and a Bradley–Terry fit on the Elo-like scale (ELO_SCALE, ELO_ANCHOR) with bootstrap intervals.

Conventions (see DESIGN.md, "Evaluation conventions"):

- A *battle* is one vote: overlap 3 gives three battles. Ties and both-bad count as a tie, and a tie is
  half a win for each side (Chatbot Arena's convention).
- `win_rate` reports a Wilson score interval around (wins + ties/2) / n. Half-points vary less than a coin
  flip, so with ties the interval is slightly conservative (wider than the truth), never too narrow.
- `bradley_terry` is the maximum-likelihood fit by Hunter's MM algorithm on an Elo-like scale
  (400·log10, mean rating 1000), as Arena's leaderboard shows it; `bradley_terry_bootstrap` resamples the
  battles with replacement (Arena uses 100 rounds) and reports the 2.5 / 97.5 percentiles.
- MT-Bench judges both orders and counts an inconsistent pair as a tie; humans here see one random order
  per annotator, so no such correction is applied.
"""

from __future__ import annotations

import math
import random
from collections.abc import Hashable, Iterable, Sequence

from labeling.statistics import Z_95, wilson_interval

# Outcome of one battle, from the first model's point of view.
WIN, TIE, LOSS = 1.0, 0.5, 0.0
ELO_SCALE = 400.0
ELO_ANCHOR = 1000.0


def win_rate(wins: int, ties: int, losses: int, *, z: float = Z_95) -> tuple[float, float, float]:
    """(rate, low, high): the share of points won, ties counting half, with a Wilson score interval
    (95% by default). Raises ValueError when there are no battles."""
    if min(wins, ties, losses) < 0:
        raise ValueError("Counts cannot be negative.")
    n = wins + ties + losses
    if n == 0:
        raise ValueError("No battles yet: a win rate needs at least one vote.")
    low, high = wilson_interval(wins + 0.5 * ties, n, z)
    return (wins + 0.5 * ties) / n, low, high


Battle = tuple[str, str, float]  # (model_i, model_j, outcome for model_i: 1 win, 0.5 tie, 0 loss)


def _tally(battles: Iterable[Battle]) -> tuple[list[str], dict[tuple[str, str], float], dict[tuple[str, str], int]]:
    """Models, points[(i, j)] that i scored against j, and games[(i, j)] (both orders hold the same count)."""
    points: dict[tuple[str, str], float] = {}
    games: dict[tuple[str, str], int] = {}
    models: set[str] = set()
    for a, b, outcome in battles:
        if a == b:
            raise ValueError(f"A model cannot battle itself ({a!r}).")
        if outcome not in (WIN, TIE, LOSS):
            raise ValueError(f"Outcome must be 1 (win), 0.5 (tie) or 0 (loss), got {outcome!r}.")
        models.update((a, b))
        points[(a, b)] = points.get((a, b), 0.0) + outcome
        points[(b, a)] = points.get((b, a), 0.0) + 1.0 - outcome
        games[(a, b)] = games.get((a, b), 0) + 1
        games[(b, a)] = games.get((b, a), 0) + 1
    return sorted(models), points, games


def bradley_terry(
    battles: Iterable[Battle], *, prior: float = 0.0, max_iter: int = 10_000, tol: float = 1e-10
) -> dict[str, float]:
    """Bradley–Terry ratings on the Elo-like scale: 400·log10(strength), the models' mean rating 1000.

    Fitted by Hunter's MM update p_i ← W_i / Σ_j n_ij / (p_i + p_j), ties worth half a win to each side.
    ``prior`` adds that many virtual tied games to every pair of models that met, which keeps a clean sweep
    finite (without it the maximum-likelihood rating of an unbeaten model is infinite); 0 gives the plain
    maximum-likelihood fit. Models in parts of the battle graph that never meet each other are not
    comparable; their relative level is arbitrary.
    """
    models, points, games = _tally(battles)
    if not models:
        return {}
    wins = {m: 0.0 for m in models}
    opponents: dict[str, list[tuple[str, float]]] = {m: [] for m in models}
    for (a, b), n in games.items():
        wins[a] += points[(a, b)] + prior / 2
        opponents[a].append((b, n + prior))
    strength = {m: 1.0 for m in models}
    for _ in range(max_iter):
        updated = {}
        for m in models:
            denominator = sum(n / (strength[m] + strength[o]) for o, n in opponents[m])
            # A model that never scored goes to strength 0; floor it so the logs below stay finite.
            updated[m] = max(wins[m] / denominator, 1e-12) if denominator else 1.0
        mean_log = sum(math.log(v) for v in updated.values()) / len(models)
        updated = {m: v / math.exp(mean_log) for m, v in updated.items()}
        change = max(abs(math.log(updated[m]) - math.log(strength[m])) for m in models)
        strength = updated
        if change < tol:
            break
    return {m: ELO_ANCHOR + ELO_SCALE * math.log10(strength[m]) for m in models}


def _percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default)."""
    position = (len(sorted_values) - 1) * q
    low = math.floor(position)
    high = math.ceil(position)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def bradley_terry_bootstrap(
    battles: Sequence[Battle], *, rounds: int = 100, seed: int = 0, prior: float = 0.0, level: float = 0.95,
    groups: Sequence[Hashable] | None = None,
) -> dict[str, tuple[float, float, float]]:
    """Model → (rating, low, high): the fit on all battles and a percentile bootstrap interval from
    ``rounds`` resamples with replacement (seeded, so the same input gives the same interval). With ``groups``
    (one key per battle, such as its prompt) whole groups are resampled, every battle of a group drawn
    together: votes on one prompt are not independent, and resampling them one by one gives an interval too
    narrow. A model missing from a resample keeps no value for that round."""
    battles = list(battles)
    point = bradley_terry(battles, prior=prior)
    if not battles:
        return {}
    if groups is None:
        groups = range(len(battles))
    if len(groups) != len(battles):
        raise ValueError(f"One group per battle: {len(groups)} groups for {len(battles)} battles")
    by_group: dict[Hashable, list[Battle]] = {}
    for battle, group in zip(battles, groups, strict=True):
        by_group.setdefault(group, []).append(battle)
    clusters = list(by_group.values())
    rng = random.Random(seed)
    samples: dict[str, list[float]] = {m: [] for m in point}
    for _ in range(rounds):
        resample = [battle for _ in clusters for battle in clusters[rng.randrange(len(clusters))]]
        for model, rating in bradley_terry(resample, prior=prior, max_iter=2000, tol=1e-8).items():
            samples[model].append(rating)
    tail = (1 - level) / 2
    result = {}
    for model, rating in point.items():
        values = sorted(samples[model]) or [rating]
        result[model] = (rating, _percentile(values, tail), _percentile(values, 1 - tail))
    return result
