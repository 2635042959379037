"""The proportion statistics every figure on a page comes from: the Wilson score interval of a share, and the exact
two-sided binomial test against a fair coin. Pure Python and Django-free, at the bottom of the import graph, so
labeling's agreement figures and training's win rates, reward-model accuracy and sign tests share one definition."""

from __future__ import annotations

import math

Z_95 = 1.959963984540054


def wilson_interval(successes: float, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for the share successes/n (95% by default); (0.0, 1.0) when n == 0. ``successes`` may
    hold halves (a tie counted half a win).

    Preferred over the normal approximation because it stays inside [0, 1] and behaves at 0 and n.
    """
    if not 0 <= successes <= n:
        raise ValueError(f"Need 0 <= successes <= n, got successes={successes}, n={n}.")
    if n == 0:
        return 0.0, 1.0
    rate = successes / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (rate + z2 / (2 * n)) / denominator
    half_width = z / denominator * math.sqrt(rate * (1 - rate) / n + z2 / (4 * n * n))
    return max(0.0, centre - half_width), min(1.0, centre + half_width)


def binomial_two_sided_p_half(k: int, n: int) -> float:
    """Exact two-sided p-value for ``k`` successes in ``n`` trials against a fair coin (p = 0.5).

    The null distribution is symmetric, so the two-sided p is twice the smaller tail, capped at 1. Computed in
    integers (exact for any n, and fast for the tens of thousands of votes one annotator can give). n == 0 gives
    1.0: no evidence against the null.
    """
    if not 0 <= k <= n:
        raise ValueError(f"Need 0 <= k <= n, got k={k}, n={n}.")
    if n == 0:
        return 1.0
    term, tail = 1, 0  # C(n, 0)
    for i in range(min(k, n - k) + 1):
        tail += term
        term = term * (n - i) // (i + 1)
    return min(1.0, 2 * tail / 2**n)
