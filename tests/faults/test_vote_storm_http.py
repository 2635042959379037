"""A storm of one vote over real HTTP: many copies of the same client_key at once, through gunicorn's workers.

tests/test_concurrency.py storms the service from threads in one process; this goes through the whole stack
(token auth, JSON parsing, three worker processes with their own connections), as a client that retries
impatiently would.
"""
from __future__ import annotations

import threading
from collections import Counter

import pytest

from labeling.models import PairTask, PairVote
from labeling.services import api_token_create
from tests.factories import ProjectFactory, UserFactory, make_pair_task

pytestmark = pytest.mark.timeout(120)
COPIES = 24


def test_many_copies_of_one_vote_at_once_store_one_vote(live_app, transactional_db):
    annotator, other = UserFactory(), UserFactory()
    project = ProjectFactory(overlap=2)
    project.members.add(annotator, other)
    task = make_pair_task(project, 1)
    token, other_token = api_token_create(user=annotator), api_token_create(user=other)
    path = f"/api/tasks/pair/{task.pk}/vote"
    vote = {"pick": "left", "client_key": "storm-key-1"}
    barrier = threading.Barrier(COPIES)
    results: list[tuple[int, dict]] = []

    def send() -> None:
        barrier.wait()
        results.append(live_app.request("POST", path, token=token, body=vote))

    threads = [threading.Thread(target=send) for _ in range(COPIES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not any(thread.is_alive() for thread in threads)
    statuses = Counter(status for status, _ in results)
    assert statuses == {201: 1, 200: COPIES - 1}, (statuses, live_app.server_log())
    stored = PairVote.objects.get()
    assert {body["id"] for _, body in results} == {stored.pk}
    assert (stored.annotator, PairTask.objects.get(pk=task.pk).vote_count) == (annotator, 1)

    # and someone else sending the same key afterwards is refused, not merged into my vote
    status, body = live_app.request("POST", path, token=other_token, body=vote)
    assert status == 409 and "already used for a different vote" in body["error"]
    assert PairVote.objects.count() == 1
