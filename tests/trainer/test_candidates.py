"""pair_candidates: which of one prompt's candidates become labeling pairs, without Django or a model."""

from __future__ import annotations

import pytest

from training.trainer.candidates import (
    AGAINST_FINISHED,
    ALL,
    DEFAULT_MAX_PAIRS,
    LEFT_OUT,
    LENGTH_EXTREMES,
    MIXED_TEMPERATURES,
    PAIRED,
    Candidate,
    expected_pairs,
    pair_candidates,
    word_count,
)


def _keys(pairing) -> list[tuple[int, int]]:
    return [(a.key, b.key) for a, b in pairing.pairs]


def test_all_pairs_every_answer_with_every_other_up_to_the_cap():
    candidates = [Candidate(k, f"answer number {k}") for k in range(5)]

    assert _keys(pair_candidates(candidates[:3], ALL)) == [(0, 1), (0, 2), (1, 2)]
    capped = pair_candidates(candidates, ALL, max_pairs=4)
    assert _keys(capped) == [(0, 1), (0, 2), (0, 3), (0, 4)]


def test_cut_off_answers_meet_only_finished_ones_by_default_and_are_left_out_or_paired_on_request():
    candidates = [
        Candidate(1, "short and done"), Candidate(2, "long and still going", truncated=True), Candidate(3, "done too"),
        Candidate(4, "another one that runs on", truncated=True),
    ]

    against_finished = pair_candidates(candidates, ALL)
    left_out = pair_candidates(candidates, ALL, cut_off=LEFT_OUT)
    paired = pair_candidates(candidates, ALL, cut_off=PAIRED)

    # Never two cut-off answers against each other: (2, 4) is the one pair missing.
    assert _keys(against_finished) == [(1, 2), (1, 3), (1, 4), (2, 3), (3, 4)] and against_finished.truncated_left_out == 0
    assert _keys(left_out) == [(1, 3)] and left_out.truncated_left_out == 2
    assert _keys(paired) == [(1, 2), (1, 3), (1, 4), (2, 3), (2, 4), (3, 4)] and paired.truncated_left_out == 0


def test_a_prompt_with_one_finished_answer_still_gets_pairs_and_one_with_none_gets_none():
    one_finished = [Candidate(1, "ends", truncated=False), Candidate(2, "runs on", truncated=True), Candidate(3, "and on", truncated=True)]
    none_finished = [Candidate(1, "runs on", truncated=True), Candidate(2, "and on", truncated=True)]

    assert _keys(pair_candidates(one_finished, ALL)) == [(1, 2), (1, 3)]
    assert pair_candidates(one_finished, ALL, cut_off=LEFT_OUT).pairs == []
    assert pair_candidates(none_finished, ALL).pairs == []


def test_identical_answers_are_never_paired_and_are_counted():
    candidates = [Candidate(1, "Paris."), Candidate(2, "  Paris.\n"), Candidate(3, "Paris, France."), Candidate(4, "Paris.")]

    pairing = pair_candidates(candidates, ALL)

    assert _keys(pairing) == [(1, 3)]
    assert pairing.duplicates_left_out == 2


def test_fewer_than_two_usable_answers_make_no_pair():
    pairing = pair_candidates(
        [Candidate(1, "same"), Candidate(2, "same"), Candidate(3, "cut", truncated=True)], ALL, cut_off=LEFT_OUT
    )

    assert pairing.pairs == [] and (pairing.duplicates_left_out, pairing.truncated_left_out) == (1, 1)


def test_length_extremes_pairs_the_shortest_complete_answer_with_the_longest():
    candidates = [
        Candidate(1, "one two three"),
        Candidate(2, "one"),
        Candidate(3, "one two three four five six seven eight", truncated=True),
        Candidate(4, "one two three four five"),
        Candidate(5, "uno"),
    ]

    pairing = pair_candidates(candidates, LENGTH_EXTREMES)

    # The cut-off answer is the longest by construction; it is left out even when cut-off answers are kept.
    assert _keys(pairing) == [(2, 4)]
    assert _keys(pair_candidates(candidates, LENGTH_EXTREMES, cut_off=PAIRED)) == [(2, 4)]
    assert pairing.truncated_left_out == 1


def test_length_extremes_takes_any_scorer_in_place_of_word_count():
    candidates = [Candidate(1, "b"), Candidate(2, "ccc"), Candidate(3, "aa")]
    reward = {"b": 0.9, "ccc": 0.1, "aa": 0.5}

    assert _keys(pair_candidates(candidates, LENGTH_EXTREMES)) == [(1, 3)]  # all one word: the first two by order
    assert _keys(pair_candidates(candidates, LENGTH_EXTREMES, score=reward.__getitem__)) == [(2, 1)]
    assert word_count("  three words here ") == 3


def test_mixed_temperatures_pairs_only_across_the_two_temperatures():
    candidates = [
        Candidate(1, "cool one", temperature=0.3),
        Candidate(2, "hot one", temperature=1.1),
        Candidate(3, "cool two", temperature=0.3),
        Candidate(4, "hot two", temperature=1.1),
    ]

    pairing = pair_candidates(candidates, MIXED_TEMPERATURES)

    assert _keys(pairing) == [(1, 2), (1, 4), (2, 3), (3, 4)]
    assert all(a.temperature != b.temperature for a, b in pairing.pairs)
    assert pair_candidates(candidates[::2], MIXED_TEMPERATURES).pairs == []
    one_cut = [Candidate(1, "cool", temperature=0.3, truncated=True), Candidate(2, "hot", temperature=1.1, truncated=True)]
    assert pair_candidates(one_cut, MIXED_TEMPERATURES).pairs == []


def test_the_same_candidates_always_give_the_same_pairs():
    candidates = [Candidate(k, f"text {k} " * k) for k in range(1, 6)]

    for strategy in (ALL, LENGTH_EXTREMES, MIXED_TEMPERATURES):
        assert _keys(pair_candidates(candidates, strategy)) == _keys(pair_candidates(list(candidates), strategy))


@pytest.mark.parametrize(
    ("strategy", "max_pairs", "cut_off", "message"),
    [("best_of", 6, AGAINST_FINISHED, "Unknown pairing"), (ALL, 0, AGAINST_FINISHED, "max_pairs"),
     (ALL, 6, "kept", "Unknown treatment of cut-off answers")],
)
def test_it_refuses_what_it_cannot_do(strategy, max_pairs, cut_off, message):
    with pytest.raises(ValueError, match=message):
        pair_candidates([Candidate(1, "a"), Candidate(2, "b")], strategy, max_pairs=max_pairs, cut_off=cut_off)


def test_expected_pairs_follow_the_binomial_count_of_finished_answers():
    p = 0.72
    q = 1 - p
    two, two_chance = expected_pairs(2, p, cut_off=LEFT_OUT)
    three, three_chance = expected_pairs(3, p, cut_off=LEFT_OUT)

    assert two == pytest.approx(p * p) and two_chance == pytest.approx(p * p)
    assert three == pytest.approx(3 * p * p) and three_chance == pytest.approx(3 * p * p * q + p**3)
    assert expected_pairs(3, p, cut_off=PAIRED) == (pytest.approx(3.0), pytest.approx(1.0))
    # Against finished answers only: k finished of three make C(k, 2) + k (3 - k) pairs.
    assert expected_pairs(3, p) == (pytest.approx(3 * p**3 + 9 * p * p * q + 6 * p * q * q), pytest.approx(1 - q**3))
    # Shortest against longest always leaves cut-off answers out, and makes one pair at most.
    assert expected_pairs(3, p, LENGTH_EXTREMES, cut_off=PAIRED) == (pytest.approx(three_chance),) * 2
    assert expected_pairs(8, 1.0)[0] == DEFAULT_MAX_PAIRS


@pytest.mark.parametrize("cut_off", [AGAINST_FINISHED, LEFT_OUT])
@pytest.mark.parametrize("strategy", [ALL, LENGTH_EXTREMES, MIXED_TEMPERATURES])
@pytest.mark.parametrize("answers", [2, 3, 5])
def test_expected_pairs_match_what_pairing_makes_from_random_finished_answers(strategy, answers, cut_off):
    import random

    rng = random.Random(answers)
    draws, made, with_pair = 4000, 0, 0
    for _ in range(draws):
        candidates = [
            Candidate(key=i, text=f"answer {i} " * (i + 1), truncated=rng.random() >= 0.7, temperature=(0.3, 1.1)[i % 2])
            for i in range(answers)
        ]
        pairs = len(pair_candidates(candidates, strategy, cut_off=cut_off).pairs)
        made += pairs
        with_pair += pairs > 0

    expected, chance = expected_pairs(answers, 0.7, strategy, cut_off=cut_off)
    assert made / draws == pytest.approx(expected, abs=0.08)
    assert with_pair / draws == pytest.approx(chance, abs=0.03)
