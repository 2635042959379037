"""Many annotators at once on PostgreSQL: no task over-filled, none given twice, no vote lost or doubled."""
from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from django.db import close_old_connections, connection

from labeling import services
from labeling.errors import Conflict
from labeling.models import PairTask, PairVote, TaskLease
from tests.factories import ProjectFactory, UserFactory, make_pair_task

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.postgres,
]

ANNOTATORS = 16
TASKS = 24
OVERLAP = 3


def _open_tasks_without_my_vote(project, annotator) -> bool:
    return PairTask.objects.filter(project=project, status="open").exclude(votes__annotator=annotator).exists()


def _annotate_until_done(project, annotator, barrier, log, errors):
    """One annotator's session: lease, then vote twice with the same key (a double click), until done."""
    close_old_connections()
    try:
        barrier.wait()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            task = services.task_lease_next(project=project, annotator=annotator)
            if task is None:
                # Every free slot may be leased by others right now; stop only when nothing is left for us.
                if not _open_tasks_without_my_vote(project, annotator):
                    return
                time.sleep(0.02)
                continue
            log.append((task.pk, annotator.pk))
            key = f"{annotator.pk}-{task.pk}"
            services.pair_vote_record(task_id=task.pk, annotator=annotator, pick="left", client_key=key)
            services.pair_vote_record(task_id=task.pk, annotator=annotator, pick="left", client_key=key)
    except Exception as exc:  # noqa: BLE001 - collected and asserted on below
        errors.append(repr(exc))
    finally:
        connection.close()


def test_concurrent_annotators_fill_every_task_exactly():
    project = ProjectFactory(overlap=OVERLAP)
    tasks = [make_pair_task(project, n) for n in range(TASKS)]
    annotators = [UserFactory() for _ in range(ANNOTATORS)]
    barrier = threading.Barrier(ANNOTATORS)
    log: list[tuple[int, int]] = []
    errors: list[str] = []

    threads = [
        threading.Thread(target=_annotate_until_done, args=(project, a, barrier, log, errors)) for a in annotators
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    assert not any(thread.is_alive() for thread in threads)
    given = Counter(log)
    assert max(given.values()) == 1, "a task was handed to the same annotator twice"
    votes = list(PairVote.objects.values_list("task_id", "annotator_id"))
    assert len(votes) == len(set(votes)) == TASKS * OVERLAP, "a vote was lost or counted twice"
    assert sorted(set(log)) == sorted(votes), "every handed-out task was voted exactly once"
    per_task = Counter(task_id for task_id, _ in votes)
    for task in PairTask.objects.filter(pk__in=[t.pk for t in tasks]):
        assert task.vote_count == per_task[task.pk] == OVERLAP
        assert task.status == "complete"
    assert not TaskLease.objects.exists()


def _storm(task_id, annotator, key, barrier, results):
    close_old_connections()
    try:
        barrier.wait()
        _, created = services.pair_vote_record(task_id=task_id, annotator=annotator, pick="right", client_key=key)
        results.append(created)
    except Conflict as exc:
        results.append(exc.message)
    finally:
        connection.close()


def test_a_storm_of_one_idempotency_key_stores_one_vote():
    project = ProjectFactory(overlap=2)
    annotator = UserFactory()
    task = make_pair_task(project, 1)
    services.task_lease_next(project=project, annotator=annotator)
    copies = 12
    barrier = threading.Barrier(copies)
    results: list = []

    threads = [threading.Thread(target=_storm, args=(task.pk, annotator, "storm", barrier, results)) for _ in range(copies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(results, key=str) == [False] * (copies - 1) + [True]
    assert PairVote.objects.count() == 1
    task.refresh_from_db()
    assert task.vote_count == 1
