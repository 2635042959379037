"""pair_vote_record and rating_record: sides, idempotency, stale and duplicate votes, nothing half-written."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from labeling import services
from labeling.errors import Conflict, InvalidInput, NotFound
from labeling.models import PairTask, PairVote, Rating, TaskLease
from tests.factories import ProjectFactory, UserFactory, make_pair_task, make_rate_task

pytestmark = pytest.mark.django_db


def _leased_pair(project, annotator, n=1):
    task = make_pair_task(project, n)
    assert services.task_lease_next(project=project, annotator=annotator) == task
    return task


def test_it_records_the_choice_in_terms_of_the_completions_and_the_side_shown(project, annotator):
    task = _leased_pair(project, annotator)
    a_side = task.a_side_for(annotator.pk)

    vote, created = services.pair_vote_record(task_id=task.pk, annotator=annotator, pick=a_side, client_key="k1")

    assert created
    assert vote.choice == "a"
    assert vote.a_side == a_side
    assert vote.picked_side == a_side
    task.refresh_from_db()
    assert (task.vote_count, task.status) == (1, "complete")
    assert not TaskLease.objects.exists()


def test_it_maps_the_other_side_to_completion_b(project, annotator):
    task = _leased_pair(project, annotator)
    other = "right" if task.a_side_for(annotator.pk) == "left" else "left"

    vote, _ = services.pair_vote_record(task_id=task.pk, annotator=annotator, pick=other, client_key="k1")

    assert vote.choice == "b"


def test_sides_are_randomised_across_annotators():
    project = ProjectFactory()
    task = make_pair_task(project, 1)
    sides = {task.a_side_for(user_id) for user_id in range(1, 40)}
    assert sides == {"left", "right"}


def test_it_counts_a_resubmitted_vote_once(project, annotator):
    task = _leased_pair(project, annotator)

    first, created_first = services.pair_vote_record(task_id=task.pk, annotator=annotator, pick="tie", client_key="same")
    second, created_second = services.pair_vote_record(task_id=task.pk, annotator=annotator, pick="tie", client_key="same")

    assert (created_first, created_second) == (True, False)
    assert first.pk == second.pk
    assert PairVote.objects.count() == 1
    task.refresh_from_db()
    assert task.vote_count == 1


def test_it_refuses_a_second_vote_with_a_new_key_on_the_same_task():
    project = ProjectFactory(overlap=2)
    annotator = UserFactory()
    task = _leased_pair(project, annotator)
    services.pair_vote_record(task_id=task.pk, annotator=annotator, pick="left", client_key="k1")

    with pytest.raises(Conflict, match="already voted"):
        services.pair_vote_record(task_id=task.pk, annotator=annotator, pick="right", client_key="k2")

    assert PairVote.objects.count() == 1
    task.refresh_from_db()
    assert task.vote_count == 1


def test_it_refuses_a_stale_vote_whose_slot_was_taken():
    project = ProjectFactory(overlap=1)
    slow, fast = UserFactory(), UserFactory()
    task = _leased_pair(project, slow)
    TaskLease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert services.task_lease_next(project=project, annotator=fast) == task
    services.pair_vote_record(task_id=task.pk, annotator=fast, pick="left", client_key="fast")

    with pytest.raises(Conflict, match="already has all the votes"):
        services.pair_vote_record(task_id=task.pk, annotator=slow, pick="right", client_key="slow")

    assert list(PairVote.objects.values_list("annotator", flat=True)) == [fast.pk]


def test_it_refuses_an_expired_lease_when_another_annotator_holds_the_slot():
    project = ProjectFactory(overlap=1)
    slow, fast = UserFactory(), UserFactory()
    task = _leased_pair(project, slow)
    TaskLease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    services.task_lease_next(project=project, annotator=fast)

    with pytest.raises(Conflict, match="expired"):
        services.pair_vote_record(task_id=task.pk, annotator=slow, pick="right", client_key="slow")

    assert not PairVote.objects.exists()


def test_it_accepts_an_expired_lease_when_the_slot_is_still_free(project, annotator):
    task = _leased_pair(project, annotator)
    TaskLease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    _, created = services.pair_vote_record(task_id=task.pk, annotator=annotator, pick="left", client_key="k")

    assert created


def test_a_key_reused_for_another_task_is_refused(project, annotator):
    first = _leased_pair(project, annotator, 1)
    services.pair_vote_record(task_id=first.pk, annotator=annotator, pick="left", client_key="k")
    second = make_pair_task(project, 2)

    with pytest.raises(Conflict, match="idempotency key"):
        services.pair_vote_record(task_id=second.pk, annotator=annotator, pick="left", client_key="k")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pick": "middle"}, "Unknown choice"),
        ({"pick": "left", "client_key": ""}, "no idempotency key"),
        ({"pick": "left", "client_key": "bad key!"}, "idempotency key must be"),
        ({"pick": "left", "strength": 7}, "Strength must be"),
        ({"pick": "tie", "edited_text": "b" * 50_001}, "edited answer is too long"),
        ({"pick": "left", "rationale": "x" * 5001}, "rationale is too long"),
        ({"pick": "left", "time_spent_ms": -5}, "cannot be negative"),
    ],
)
def test_it_rejects_bad_input_and_writes_nothing(project, annotator, kwargs, message):
    task = _leased_pair(project, annotator)
    arguments = {"task_id": task.pk, "annotator": annotator, "client_key": "k1", **kwargs}

    with pytest.raises(InvalidInput, match=message):
        services.pair_vote_record(**arguments)

    assert not PairVote.objects.exists()
    assert PairTask.objects.get(pk=task.pk).vote_count == 0


def test_it_refuses_a_task_of_another_project(project, annotator):
    foreign = make_pair_task(ProjectFactory(), 9)

    with pytest.raises(NotFound):
        services.pair_vote_record(task_id=foreign.pk, annotator=annotator, pick="left", client_key="k", project=project)


def test_an_edit_is_kept_only_when_it_changes_the_text(project, annotator):
    task = _leased_pair(project, annotator)
    a_side = task.a_side_for(annotator.pk)

    vote, _ = services.pair_vote_record(
        task_id=task.pk, annotator=annotator, pick=a_side, client_key="k", edited_text="A much better answer."
    )

    assert vote.edited_text == "A much better answer."


def test_an_answer_written_on_a_tie_is_kept_as_the_better_answer(project, annotator):
    task = _leased_pair(project, annotator)

    vote, _ = services.pair_vote_record(
        task_id=task.pk, annotator=annotator, pick="tie", client_key="k", edited_text="  What it should have said.  "
    )

    assert (vote.choice, vote.edited_text) == ("tie", "What it should have said.")


def test_a_both_bad_rewrite_that_copies_a_shown_answer_is_no_rewrite(project, annotator):
    task = _leased_pair(project, annotator)

    vote, _ = services.pair_vote_record(
        task_id=task.pk, annotator=annotator, pick="both_bad", client_key="k", edited_text=task.completion_b.text + "\n"
    )

    assert (vote.choice, vote.edited_text) == ("both_bad", "")


def test_it_records_ratings_once_per_key(annotator):
    project = ProjectFactory(mode="rate", overlap=1)
    project.members.add(annotator)
    task = make_rate_task(project, 1)
    services.task_lease_next(project=project, annotator=annotator)

    first, created = services.rating_record(task_id=task.pk, annotator=annotator, value="up", client_key="r1")
    again, created_again = services.rating_record(task_id=task.pk, annotator=annotator, value="up", client_key="r1")

    assert (created, created_again) == (True, False)
    assert first.pk == again.pk
    assert Rating.objects.get().completion_id == task.completion_id
    task.refresh_from_db()
    assert (task.vote_count, task.status) == (1, "complete")


def test_it_rejects_an_unknown_rating(annotator):
    project = ProjectFactory(mode="rate")
    task = make_rate_task(project, 1)

    with pytest.raises(InvalidInput, match="Unknown rating"):
        services.rating_record(task_id=task.pk, annotator=annotator, value="meh", client_key="r1")

    assert not Rating.objects.exists()
