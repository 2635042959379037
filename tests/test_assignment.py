"""task_lease_next: who gets which task, leases, expiry, skips."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from labeling import services
from labeling.models import TaskLease
from tests.factories import ProjectFactory, UserFactory, make_pair_task, make_rate_task

pytestmark = pytest.mark.django_db


def test_it_returns_the_same_task_until_it_is_voted_on(project, annotator):
    make_pair_task(project, 1)
    make_pair_task(project, 2)

    first = services.task_lease_next(project=project, annotator=annotator)
    again = services.task_lease_next(project=project, annotator=annotator)

    assert first == again
    assert TaskLease.objects.filter(annotator=annotator).count() == 1


def test_it_moves_on_after_a_vote_and_never_repeats_a_task(project, annotator):
    tasks = {make_pair_task(project, n).pk for n in range(3)}
    seen = []
    while (task := services.task_lease_next(project=project, annotator=annotator)) is not None:
        seen.append(task.pk)
        services.pair_vote_record(task_id=task.pk, annotator=annotator, pick="tie", client_key=f"k{task.pk}")

    assert sorted(seen) == sorted(tasks)


def test_it_gives_the_last_slot_to_only_one_annotator_while_leased():
    project = ProjectFactory(overlap=1)
    first, second = UserFactory(), UserFactory()
    make_pair_task(project, 1)

    assert services.task_lease_next(project=project, annotator=first) is not None
    assert services.task_lease_next(project=project, annotator=second) is None


def test_it_frees_a_slot_when_the_lease_expires():
    project = ProjectFactory(overlap=1)
    first, second = UserFactory(), UserFactory()
    task = make_pair_task(project, 1)
    services.task_lease_next(project=project, annotator=first)

    TaskLease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    assert services.task_lease_next(project=project, annotator=second) == task


def test_it_hands_a_task_to_overlap_distinct_annotators():
    project = ProjectFactory(overlap=2)
    task = make_pair_task(project, 1)
    users = [UserFactory() for _ in range(3)]

    given = [services.task_lease_next(project=project, annotator=u) for u in users]

    assert given[:2] == [task, task]
    assert given[2] is None


def test_it_prefers_tasks_that_already_have_votes():
    project = ProjectFactory(overlap=2)
    fresh = make_pair_task(project, 1)
    started = make_pair_task(project, 2)
    voter, other = UserFactory(), UserFactory()
    services.task_lease_next(project=project, annotator=voter)  # leases `fresh`, the lowest id
    services.task_skip(project=project, annotator=voter, kind="pair", task_id=fresh.pk)
    task = services.task_lease_next(project=project, annotator=voter)
    services.pair_vote_record(task_id=task.pk, annotator=voter, pick="left", client_key="v1")

    assert services.task_lease_next(project=project, annotator=other) == started


def test_it_does_not_show_a_skipped_task_again(project, annotator):
    task = make_pair_task(project, 1)
    services.task_lease_next(project=project, annotator=annotator)

    services.task_skip(project=project, annotator=annotator, kind="pair", task_id=task.pk)

    assert services.task_lease_next(project=project, annotator=annotator) is None
    assert not TaskLease.objects.exists()


def test_it_only_hands_out_tasks_of_the_given_project(project, annotator):
    make_pair_task(ProjectFactory(), 1)

    assert services.task_lease_next(project=project, annotator=annotator) is None


def test_it_leases_rate_tasks_in_rate_projects(annotator):
    project = ProjectFactory(mode="rate", overlap=1)
    task = make_rate_task(project, 1)

    assert services.task_lease_next(project=project, annotator=annotator) == task
