"""The reward-hacking watch's figures, warnings and kept checkpoint: pure logic, no model."""
from __future__ import annotations

from training.trainer.rl_watch import (
    BATTLES,
    DEGENERATE,
    LENGTH,
    battles_disagree,
    choose_kept,
    repetition_share,
    watch_point,
    watch_warnings,
)

PROMPTS = ["How do I sleep better?", "What is a prime?", "Name a river."]
SHORT = ["Keep a regular bedtime and a dark room.", "A number with exactly two divisors.", "The Danube flows east."]
LONG = [" ".join(["Sleep is important and there are many things to say about it in detail"] * 4)] * 3


def _point(step, texts, rewards, cut_off=(False, False, False)):
    return watch_point(step, PROMPTS, texts, list(cut_off), rewards)


def test_a_watch_point_counts_words_degeneration_and_keeps_the_highest_reward_answers_as_examples():
    point = _point(5, [SHORT[0], "ok", SHORT[2]], [0.1, 0.9, -0.2], cut_off=(False, False, True))
    assert point.answers == 3 and point.degenerate == 1 and point.cut_off == 1
    assert round(point.reward_mean, 4) == round((0.1 + 0.9 - 0.2) / 3, 4)
    assert [s["reward"] for s in point.samples] == [0.9, 0.1, -0.2]
    assert point.samples[0]["degenerate"] == "fewer than three words" and point.samples[2]["cut_off"] is True
    assert point.metrics()["cut_off_share"] == 1 / 3


def test_a_broken_answer_is_kept_as_an_example_wherever_the_reward_model_ranks_it():
    prompts = [f"Question {i}?" for i in range(5)]
    texts = [f"A fine answer number {i} with words." for i in range(4)] + ["la la la la la la la la la la la la la la la la la la la la la la la la"]
    point = watch_point(8, prompts, texts, [False] * 5, [0.9, 0.8, 0.7, 0.6, -1.0])
    assert [s["reward"] for s in point.samples] == [0.9, 0.8, 0.7, -1.0]
    assert point.samples[-1]["degenerate"] == "one short string repeated"


def test_repetition_share_is_zero_for_fresh_text_and_high_for_a_loop():
    assert repetition_share("the cat sat on the mat today") == 0.0
    assert repetition_share("buy now " * 30) > 0.9


def test_reward_rising_while_answers_balloon_is_flagged_with_examples_and_not_kept():
    base = _point(0, SHORT, [0.0, 0.0, 0.0])
    honest = _point(10, SHORT, [0.3, 0.2, 0.4])
    hacked = _point(20, LONG, [2.0, 2.1, 1.9], cut_off=(True, True, True))
    warnings = watch_warnings(base, [honest, hacked])
    assert LENGTH in {w.kind for w in warnings}
    length = next(w for w in warnings if w.kind == LENGTH)
    assert length.step == 20 and "words on average" in length.message and length.examples[0]["words"] > 40
    kept = choose_kept(base, [honest, hacked])
    assert kept.step == 10, "the highest reward was flagged, so the clear evaluation is kept"
    assert "1 evaluation(s) scored higher but were flagged (cut off, length" in kept.reason


def test_when_every_evaluation_is_flagged_the_earliest_with_fewest_flags_is_kept():
    base = _point(0, SHORT, [0.0, 0.0, 0.0])
    loops = ["la la la la la la la la la la la la la la la la la la la la la la la la"] * 3
    first = _point(10, loops, [1.0, 1.0, 1.0])
    second = _point(20, loops, [2.0, 2.0, 2.0])
    assert DEGENERATE in {w.kind for w in watch_warnings(base, [first, second])}
    assert choose_kept(base, [first, second]).step == 10


def test_without_flags_the_highest_validation_reward_is_kept():
    base = _point(0, SHORT, [0.0, 0.0, 0.0])
    points = [_point(10, SHORT, [0.1, 0.1, 0.1]), _point(20, SHORT, [0.5, 0.4, 0.6]), _point(30, SHORT, [0.2, 0.2, 0.2])]
    assert watch_warnings(base, points) == []
    assert choose_kept(base, points).step == 20


def test_battles_disagree_only_when_the_reward_rose_and_people_did_not_prefer_it():
    assert battles_disagree(0.8, 0.4, (0.3, 0.5)) is True
    assert battles_disagree(0.8, 0.7, (0.6, 0.8)) is False
    assert battles_disagree(-0.2, 0.4, (0.3, 0.5)) is False
    assert battles_disagree(0.8, None, None) is False
    assert BATTLES == "battles"
