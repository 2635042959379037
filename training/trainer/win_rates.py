"""Win rates for the review pages, Django-free: a paired win rate with a prompt-level bootstrap interval and a
sign test, a length-controlled win rate, and a thumbs-up rate.

Outcomes are from the tuned model's point of view: 1 win, 0.5 tie (ties and both-bad count half, as in
ratings.py), 0 loss. The k samples of one prompt, and the several annotators of one pair, are not independent
votes: a prompt that suits the tuned model tends to win all of them. So every interval here is a cluster
bootstrap that resamples *prompts* with replacement and takes all their votes along; resampling votes would
count correlated votes as independent evidence and give intervals that are too narrow.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from labeling.statistics import binomial_two_sided_p_half

from .ratings import LOSS, TIE, WIN, win_rate

# L2 penalty λ on the length coefficient phi (λ·phi²/2 added to the negative log-likelihood), the same as a
# Normal(0, sd ≈ 3.2) prior. It keeps phi finite when length separates wins from losses perfectly, and is
# weak next to a few dozen votes. theta is not penalised: the length-controlled rate must not be pulled to 50%.
LENGTH_PENALTY = 0.1


@dataclass(frozen=True)
class PairedWinRate:
    """The tuned model's share of points over base, ties half, with a prompt-level bootstrap interval."""

    rate: float
    low: float
    high: float
    votes: int
    prompts: int
    wins: int
    ties: int
    losses: int
    prompts_won: int  # prompts whose mean outcome is above 0.5
    prompts_lost: int
    prompts_even: int  # mean exactly 0.5; left out of the sign test
    sign_test_p: float  # two-sided exact binomial test of prompts_won vs prompts_lost; 1.0 if both are 0
    level: float = 0.95

    @property
    def summary(self) -> str:
        """One line for a person, e.g. 'tuned wins 61.2% (95% CI 52.0–70.1%, 30 prompts, 90 votes); sign test
        p = 0.03'."""
        p = "p < 0.001" if self.sign_test_p < 0.001 else f"p = {self.sign_test_p:.2g}"
        return (
            f"tuned wins {self.rate:.1%} ({self.level:.0%} CI {self.low * 100:.1f}–{self.high:.1%}, "
            f"{self.prompts} prompts, {self.votes} votes); sign test {p}"
        )


@dataclass(frozen=True)
class LengthControlledWinRate:
    """The win rate the tuned model would have at equal lengths, from the model
    P(tuned wins) = sigmoid(intercept + length_coefficient · tanh(d / length_scale)), d = tuned − base length.

    ``rate`` = sigmoid(intercept). A positive ``length_coefficient`` means the longer answer tends to win;
    ``length_scale`` (s, in ``length_unit``) is the standard deviation of d that the coefficient is read
    against: at d = s the length term adds 0.76 · length_coefficient to the log-odds."""

    rate: float
    low: float
    high: float
    raw_rate: float  # the plain win rate over the same votes, ties half
    intercept: float
    length_coefficient: float
    length_scale: float
    length_unit: str
    votes: int
    prompts: int
    level: float = 0.95


def paired_win_rate(
    outcomes: Sequence[tuple[Hashable, float]], *, rounds: int = 2000, seed: int = 0, level: float = 0.95
) -> PairedWinRate:
    """Win rate of tuned over base from (prompt key, outcome) votes, outcome 1, 0.5 or 0.

    The rate is the mean over votes. The interval is a percentile bootstrap over prompts: ``rounds``
    resamples of the prompts with replacement, each taking all its votes, seeded so that the same input gives
    the same interval. With a single prompt every resample is that prompt, so the interval is the point
    itself; likewise when every vote agrees (a clean sweep reads 100%–100%). Such intervals mean "no
    evidence of spread", not certainty. Raises ValueError on no votes or an outcome outside {0, 0.5, 1}.
    """
    if not outcomes:
        raise ValueError("No votes yet: a win rate needs at least one vote.")
    _check_bootstrap(rounds, level)
    y = _outcomes([outcome for _, outcome in outcomes])
    prompt_of, n_prompts = _prompt_indices([key for key, _ in outcomes])
    points = np.bincount(prompt_of, weights=y, minlength=n_prompts)
    votes = np.bincount(prompt_of, minlength=n_prompts)

    rng = np.random.default_rng(seed)
    resampled = np.empty(rounds)
    for r in range(rounds):
        drawn = _prompt_multiplicities(rng, n_prompts)
        resampled[r] = (drawn @ points) / (drawn @ votes)
    low, high = _percentile_interval(resampled, level)

    # Points are sums of halves, exact in floating point, so "mean exactly 0.5" is an exact comparison.
    won, lost = int(np.sum(2 * points > votes)), int(np.sum(2 * points < votes))
    return PairedWinRate(
        rate=float(points.sum() / len(y)),
        low=low,
        high=high,
        votes=len(y),
        prompts=n_prompts,
        wins=int(np.sum(y == WIN)),
        ties=int(np.sum(y == TIE)),
        losses=int(np.sum(y == LOSS)),
        prompts_won=won,
        prompts_lost=lost,
        prompts_even=n_prompts - won - lost,
        sign_test_p=_sign_test_p(won, lost),
        level=level,
    )


def length_controlled_win_rate(
    items: Sequence[tuple[Hashable, float, float, float]],
    *,
    rounds: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    length_unit: str = "characters",
) -> LengthControlledWinRate:
    """Win rate of tuned over base with the effect of answer length taken out, in the spirit of AlpacaEval 2.

    Each item is (prompt key, outcome, tuned_length, base_length); ``length_unit`` only labels the result.
    Fits P(tuned wins) = sigmoid(theta + phi · tanh(d / s)), d = tuned − base length, s = the population
    standard deviation of d (1 if d never varies), by penalised maximum likelihood (a tie is y = 0.5 in the
    Bernoulli likelihood; LENGTH_PENALTY on phi only) and reports sigmoid(theta), the win rate at d = 0. The
    interval refits on ``rounds`` seeded resamples of the prompts, s kept from the full data. When every vote
    in the data (or a resample) goes one way, theta has no finite optimum and the rate is exactly 1 or 0.
    Raises ValueError on no items, an outcome outside {0, 0.5, 1} or a length that is not a finite number.
    """
    if not items:
        raise ValueError("No votes yet: a length-controlled win rate needs at least one vote.")
    _check_bootstrap(rounds, level)
    y = _outcomes([item[1] for item in items])
    difference = np.array([item[2] - item[3] for item in items], dtype=float)
    if not np.all(np.isfinite(difference)):
        raise ValueError("Answer lengths must be finite numbers.")
    prompt_of, n_prompts = _prompt_indices([item[0] for item in items])
    scale = float(np.std(difference)) or 1.0
    x = np.tanh(difference / scale)

    theta, phi = _fit_length_model(y, x, np.ones_like(y))
    rng = np.random.default_rng(seed)
    resampled = np.empty(rounds)
    for r in range(rounds):
        weights = _prompt_multiplicities(rng, n_prompts)[prompt_of].astype(float)
        resampled[r] = _sigmoid(_fit_length_model(y, x, weights)[0])
    low, high = _percentile_interval(resampled, level)
    return LengthControlledWinRate(
        rate=_sigmoid(theta),
        low=low,
        high=high,
        raw_rate=float(y.mean()),
        intercept=theta,
        length_coefficient=phi,
        length_scale=scale,
        length_unit=length_unit,
        votes=len(y),
        prompts=n_prompts,
        level=level,
    )


def thumbs_up_rate(ups: int, downs: int) -> tuple[float, float, float]:
    """(rate, low, high): the share of thumbs up with a 95% Wilson interval. Raises ValueError with no thumbs
    or a negative count. Each thumb is taken as independent, unlike the paired win rate's votes."""
    if ups == 0 and downs == 0:
        raise ValueError("No thumbs yet: a thumbs-up rate needs at least one.")
    return win_rate(ups, 0, downs)


# ---------------------------------------------------------------- helpers


def _outcomes(values: Sequence[float]) -> np.ndarray:
    for value in values:
        if value not in (WIN, TIE, LOSS):
            raise ValueError(f"An outcome must be 1 (tuned wins), 0.5 (tie or both bad) or 0 (tuned loses), got {value!r}.")
    return np.array(values, dtype=float)


def _check_bootstrap(rounds: int, level: float) -> None:
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds!r}.")
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level!r}.")


def _prompt_indices(keys: Sequence[Hashable]) -> tuple[np.ndarray, int]:
    """Each vote's prompt as 0..P-1 in order of first appearance, and P."""
    index: dict[Hashable, int] = {}
    return np.array([index.setdefault(key, len(index)) for key in keys], dtype=np.intp), len(index)


def _prompt_multiplicities(rng: np.random.Generator, n_prompts: int) -> np.ndarray:
    """How often each prompt is drawn when n_prompts prompts are drawn with replacement."""
    return np.bincount(rng.integers(0, n_prompts, n_prompts), minlength=n_prompts)


def _percentile_interval(values: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return float(low), float(high)


def _sign_test_p(won: int, lost: int) -> float:
    # Under the null the prompts won are Binomial(won + lost, 1/2).
    return binomial_two_sided_p_half(won, won + lost)


def _sigmoid(z: float) -> float:
    return 0.5 * (1.0 + math.tanh(z / 2))


def _fit_length_model(y: np.ndarray, x: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """(theta, phi) minimising -Σ w·[y·log p + (1 − y)·log(1 − p)] + LENGTH_PENALTY·phi²/2 with
    p = sigmoid(theta + phi·x), by Newton's method with step halving (the objective is strictly convex)."""
    counted = y[weights > 0]
    if np.all(counted == WIN) or np.all(counted == LOSS):
        # The likelihood keeps rising as theta → ±∞ whatever phi is, so the penalty settles phi at 0.
        return (math.inf if counted[0] == WIN else -math.inf), 0.0
    design = np.column_stack([np.ones_like(x), x])
    ridge = np.diag([0.0, LENGTH_PENALTY])

    def objective(beta: np.ndarray) -> float:
        eta = design @ beta
        nll = weights @ (y * np.logaddexp(0, -eta) + (1 - y) * np.logaddexp(0, eta))
        return float(nll + LENGTH_PENALTY * beta[1] ** 2 / 2)

    beta = np.zeros(2)
    current = objective(beta)
    for _ in range(100):
        p = 0.5 * (1 + np.tanh(design @ beta / 2))
        gradient = design.T @ (weights * (p - y)) + ridge @ beta
        hessian = design.T @ (design * (weights * p * (1 - p))[:, None]) + ridge
        step = np.linalg.solve(hessian, gradient)
        if np.max(np.abs(step)) < 1e-9:
            return float(beta[0] - step[0]), float(beta[1] - step[1])
        shrink = 1.0
        # Near the optimum the objective is flat to rounding; the slack stops that from reading as an increase.
        while objective(beta - shrink * step) > current + 1e-12 * abs(current) and shrink > 1e-6:
            shrink /= 2
        beta = beta - shrink * step
        current = objective(beta)
    raise ArithmeticError("The length-controlled fit did not converge in 100 Newton steps.")
