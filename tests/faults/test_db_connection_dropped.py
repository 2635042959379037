"""The database connection dies under a vote: the client gets a 503 it can retry, and the retry counts once.

The app runs under gunicorn on the test database (see conftest.py). To kill a connection in the middle of
a vote's transaction, the test holds the task's row lock from its own connection, so the server's vote
waits inside SELECT … FOR UPDATE; the test then terminates that server backend (pg_terminate_backend),
as a PostgreSQL restart or failover would, and lets go of the lock.
"""
from __future__ import annotations

import threading
import time

import psycopg
import pytest
from django.db import connection

from labeling.models import PairTask, PairVote
from labeling.services import api_token_create
from tests.factories import ProjectFactory, UserFactory, make_pair_task

pytestmark = pytest.mark.timeout(120)


def _dsn() -> str:
    s = connection.settings_dict
    return f"host={s.get('HOST') or '127.0.0.1'} port={s.get('PORT') or 5432} user={s['USER']} dbname={s['NAME']}" + (
        f" password={s['PASSWORD']}" if s.get("PASSWORD") else ""
    )


@pytest.fixture
def world(transactional_db):
    annotator = UserFactory()
    project = ProjectFactory(overlap=1)
    project.members.add(annotator)
    task = make_pair_task(project, 1)
    return {"project": project, "task": task, "token": api_token_create(user=annotator)}


def _lease(live_app, world) -> dict:
    status, body = live_app.request("GET", f"/api/projects/{world['project'].pk}/next", token=world["token"])
    assert status == 200, body
    assert body["task"]["id"] == world["task"].pk
    return body


def _backend_waiting_on_a_lock(admin: psycopg.Connection, exclude: set[int], timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchall()
        waiting = [pid for (pid,) in rows if pid not in exclude]
        if waiting:
            return waiting[0]
        time.sleep(0.05)
    raise AssertionError("the vote never reached the task's row lock")


def test_a_vote_whose_connection_dies_mid_transaction_gets_a_503_and_its_retry_counts_once(live_app, world):
    nxt = _lease(live_app, world)
    vote = {"pick": "left", "client_key": nxt["client_key"]}
    path = nxt["task"]["vote_url"]
    results: list[tuple[int, dict]] = []

    with psycopg.connect(_dsn(), autocommit=True) as admin, psycopg.connect(_dsn()) as locker:
        # given the task row is locked, so the vote will stop inside its transaction
        locker.execute("SELECT id FROM labeling_pairtask WHERE id = %s FOR UPDATE", [world["task"].pk])
        sender = threading.Thread(target=lambda: results.append(live_app.request("POST", path, token=world["token"], body=vote)))
        sender.start()
        # when the server's connection is killed while it waits there
        victim = _backend_waiting_on_a_lock(admin, exclude={admin.info.backend_pid, locker.info.backend_pid})
        assert admin.execute("SELECT pg_terminate_backend(%s)", [victim]).fetchone()[0] is True
        sender.join(timeout=30)
        locker.rollback()

    # then the client is told to retry, and nothing was written
    assert not sender.is_alive()
    status, body = results[0]
    assert status == 503, (body, live_app.server_log())
    assert body["retry"] is True
    assert "temporarily unavailable" in body["error"] and "same client_key is counted once" in body["error"]
    assert not PairVote.objects.exists()
    assert PairTask.objects.get(pk=world["task"].pk).vote_count == 0

    # and the retry with the same key is stored once, however often it is sent
    first = live_app.request("POST", path, token=world["token"], body=vote)
    again = live_app.request("POST", path, token=world["token"], body=vote)
    assert first[0] == 201, (first, live_app.server_log())
    assert again == (200, first[1] | {"created": False})
    assert PairVote.objects.count() == 1
    task = PairTask.objects.get(pk=world["task"].pk)
    assert (task.vote_count, task.status) == (1, "complete")


@pytest.mark.parametrize("live_app", [1], indirect=True)
def test_connections_killed_while_idle_are_replaced_without_an_error(live_app, world):
    # given the (single) worker holds a persistent connection, used for the lease
    nxt = _lease(live_app, world)

    # when every server connection to the database is killed, as a database restart would
    with psycopg.connect(_dsn(), autocommit=True) as admin:
        mine = {admin.info.backend_pid}
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            mine.add(cursor.fetchone()[0])
        killed = admin.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> ALL(%s)",
            [list(mine)],
        ).fetchone()[0]
    assert killed >= 1

    # then the next vote reconnects (CONN_HEALTH_CHECKS) and is stored once
    status, body = live_app.request(
        "POST", nxt["task"]["vote_url"], token=world["token"], body={"pick": "right", "client_key": nxt["client_key"]}
    )
    assert status == 201, (body, live_app.server_log())
    assert PairVote.objects.count() == 1


def test_a_page_vote_gets_a_plain_503_page_when_the_database_is_gone(rf, monkeypatch):
    from django.db import OperationalError

    from webapp.db_unavailable import DatabaseUnavailableMiddleware

    middleware = DatabaseUnavailableMiddleware(lambda request: None)
    request = rf.post("/projects/1/pairs/1/vote/")

    response = middleware.process_exception(request, OperationalError("server closed the connection unexpectedly"))

    assert response.status_code == 503
    assert response["Retry-After"] == "2"
    assert b"nothing was saved" in response.content
    assert middleware.process_exception(request, ValueError("not ours")) is None
