"""The noise of an aggregated label, which robust DPO smooths by: a majority of agreeing votes is wrong far less
often than one vote. Checked against a simulation of annotators who flip each vote at random."""
from __future__ import annotations

import random

import pytest

from labeling.quality import majority_label_error


def _simulated_error(winner_votes: int, loser_votes: int, flip_rate: float, trials: int = 400_000) -> float:
    """Among simulated pairs whose votes split winner-loser, the share whose majority is not the better answer."""
    rng = random.Random(1)
    seen = wrong = 0
    votes = winner_votes + loser_votes
    for _ in range(trials):
        for_better = sum(rng.random() >= flip_rate for _ in range(votes))
        if {for_better, votes - for_better} != {winner_votes, loser_votes}:
            continue
        seen += 1
        wrong += for_better == loser_votes
    return wrong / seen


@pytest.mark.parametrize(("winner", "loser", "expected"), [(2, 0, 0.0588), (2, 1, 0.2), (3, 0, 0.0154), (1, 0, 0.2)])
def test_a_majoritys_error_at_a_flip_rate_of_a_fifth_matches_a_simulation(winner, loser, expected):
    computed = majority_label_error(winner, loser, 0.2)

    assert computed == pytest.approx(expected, abs=1e-4)
    assert computed == pytest.approx(_simulated_error(winner, loser, 0.2), abs=0.01)


def test_no_noise_means_no_error_and_a_coin_flip_is_refused():
    assert majority_label_error(2, 0, 0.0) == 0.0
    with pytest.raises(ValueError, match="flip rate"):
        majority_label_error(2, 0, 0.5)
