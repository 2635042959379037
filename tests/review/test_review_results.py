"""Review reads: side by side with filters, a run's battle results, and the Bradley–Terry leaderboard."""
from __future__ import annotations

import pytest

from labeling.models import Completion, PairTask
from tests.factories import UserFactory, make_pair_vote
from tests.review.conftest import MATCHED
from training.models import ModelVersion
from training.review import battles as review_battles
from training.review import leaderboard as review_leaderboard
from training.review import results as review_results
from training.review import selectors as review_selectors
from training.review import side_by_side as review_side_by_side

pytestmark = pytest.mark.django_db


def _vote_as(setup, outcomes: list[str]) -> None:
    """One vote per battle, in prompt order: 'tuned', 'base', 'tie' or 'both_bad' says who won."""
    tasks = sorted(PairTask.objects.filter(purpose="review").select_related("completion_a"), key=lambda t: t.prompt_id)
    annotator = UserFactory()
    for task, outcome in zip(tasks, outcomes, strict=True):
        tuned_is_a = task.completion_a.model_version_id == setup.tuned.pk
        choice = {"tuned": "a" if tuned_is_a else "b", "base": "b" if tuned_is_a else "a"}.get(outcome, outcome)
        make_pair_vote(task, annotator, choice)


def test_side_by_side_pairs_outputs_and_filters(setup):
    Completion.objects.filter(model_version=setup.tuned, prompt=setup.heldout[0]).update(text="Base answer 0.")
    compare = {"project": setup.project, "base": setup.base, "tuned": setup.tuned, "settings": MATCHED}
    rows = review_side_by_side.side_by_side(**compare)
    assert [r.prompt.pk for r in rows] == [p.pk for p in setup.heldout]
    assert [r.sample for r in rows] == [0, 0, 0, 0]
    assert [r.differ for r in rows] == [False, True, True, True]
    assert rows[1].length_change == 16
    assert len(review_side_by_side.side_by_side(**compare, only_different=True)) == 3
    found = review_side_by_side.side_by_side(**compare, search="question 2")
    assert [r.prompt.pk for r in found] == [setup.heldout[2].pk]
    found = review_side_by_side.side_by_side(**compare, search="TUNED ANSWER 3")
    assert [r.prompt.pk for r in found] == [setup.heldout[3].pk]
    assert review_side_by_side.output_lengths(rows)["pairs"] == 4


def test_battle_results_count_ties_half_with_a_wilson_interval_and_length_change(setup):
    review_battles.battles_create(project=setup.project, version_a=setup.tuned, version_b=setup.base, seed=2)
    _vote_as(setup, ["tuned", "tuned", "tie", "base"])
    results = review_results.battle_results(project=setup.project, tuned=setup.tuned, base=setup.base)
    assert (results.wins, results.ties, results.losses, results.votes) == (2, 1, 1, 4)
    assert results.rate == pytest.approx(0.625)
    assert (results.low, results.high) == pytest.approx((0.2194, 0.9081), abs=1e-4)
    assert results.mean_length_change == pytest.approx(16.0)
    assert results.tasks == results.tasks_complete == 4 and results.rate_percent == "62.5%"


def test_both_bad_counts_as_a_tie(setup):
    review_battles.battles_create(project=setup.project, version_a=setup.tuned, version_b=setup.base, seed=2)
    _vote_as(setup, ["both_bad", "tuned", "tuned", "tuned"])
    results = review_results.battle_results(project=setup.project, tuned=setup.tuned, base=setup.base)
    assert (results.wins, results.ties, results.losses, results.both_bad) == (3, 1, 0, 1)


def test_the_leaderboard_ranks_versions_with_intervals(setup):
    review_battles.battles_create(project=setup.project, version_a=setup.tuned, version_b=setup.base, seed=2)
    _vote_as(setup, ["tuned", "tuned", "tuned", "base"])
    rows = review_leaderboard.leaderboard(project=setup.project)
    assert [r.version for r in rows] == [setup.tuned, setup.base]
    top = rows[0]
    assert (top.battles, top.wins, top.ties, top.losses) == (4, 3, 0, 1)
    # With the 0.5-game prior: 3.25 points to 1.25, so the gap is 400·log10(2.6).
    import math

    assert top.rating - rows[1].rating == pytest.approx(400 * math.log10(3.25 / 1.25), abs=1e-6)
    assert top.low <= top.rating <= top.high
    assert review_leaderboard.leaderboard(project=setup.project) == rows, "seeded: a reload shows the same figures"


def test_the_leaderboard_and_battle_results_count_only_battles_on_held_out_prompts(setup):
    # Given the four held-out battles won 3-1 by the tuned version, and a battle on the train prompt (next-round
    # preference data) that the base won
    from labeling.models import Prompt
    from tests.review.conftest import SETTINGS, add_output

    review_battles.battles_create(project=setup.project, version_a=setup.tuned, version_b=setup.base, seed=2)
    _vote_as(setup, ["tuned", "tuned", "tuned", "base"])
    train = Prompt.objects.get(project=setup.project, split="train")
    add_output(train, setup.base, "A base answer to train on.", SETTINGS)
    add_output(train, setup.tuned, "A tuned answer to train on.", SETTINGS)
    review_battles.battles_create(project=setup.project, version_a=setup.tuned, version_b=setup.base, seed=2,
                                  prompt_ids=[train.pk])
    on_train = PairTask.objects.get(purpose="review", prompt=train)
    make_pair_vote(on_train, UserFactory(), "a" if on_train.completion_a.model_version_id == setup.base.pk else "b")

    # Then the leaderboard is what the held-out battles say, the train-prompt vote left out
    top = review_leaderboard.leaderboard(project=setup.project)[0]
    assert (top.version, top.battles, top.wins, top.losses) == (setup.tuned, 4, 3, 1)
    # and so are the run's battle results, which say how many train-prompt battles they left out
    results = review_results.battle_results(project=setup.project, tuned=setup.tuned, base=setup.base)
    assert (results.wins, results.losses, results.tasks, results.on_train_prompts) == (3, 1, 4, 1)


def test_versions_with_outputs_are_offered_for_battles(setup):
    ModelVersion.objects.create(name="idle", base_model=setup.run.base_model, adapter_path="/b")
    assert review_selectors.project_versions_with_outputs(project=setup.project) == sorted([setup.base, setup.tuned], key=lambda v: v.name)
