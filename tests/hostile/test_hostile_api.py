"""Hostile JSON API calls: wrong types, odd bodies, foreign and leased tasks, bad tokens.

Every case gets a 4xx with a message a script can show, never a 500, and writes nothing.
(tests/test_api.py covers the first few wrong types and malformed bodies; these are the rest.)
"""
from __future__ import annotations

import json

import pytest

from labeling import services
from labeling.models import PairVote, Rating, TaskLease
from labeling.services import api_token_create
from tests.factories import ProjectFactory, UserFactory, make_pair_task, make_rate_task

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]

HUGE_ID = 2**63  # one past PostgreSQL's bigint


@pytest.fixture
def token(annotator):
    return api_token_create(user=annotator, name="script")


@pytest.fixture
def task(project):
    return make_pair_task(project, 1)


def _post(client, path, body, token, content_type="application/json"):
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return client.post(path, data=data, content_type=content_type, HTTP_AUTHORIZATION=f"Token {token}")


def _error_of(response) -> str:
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    return response.json()["error"]


VOTE_PAYLOADS = [
    pytest.param({"pick": None, "client_key": "k1"}, 400, "Unknown choice None", id="pick-null"),
    pytest.param({"pick": ["left"], "client_key": "k1"}, 400, "'pick' has the wrong type", id="pick-list"),
    pytest.param({"pick": {"side": "left"}, "client_key": "k1"}, 400, "'pick' has the wrong type", id="pick-object"),
    pytest.param({"pick": "LEFT", "client_key": "k1"}, 400, "Unknown choice 'LEFT'", id="pick-uppercase"),
    pytest.param({"pick": "a", "client_key": "k1"}, 400, "Unknown choice 'a'", id="pick-internal-name"),
    pytest.param({"pick": "left", "client_key": ""}, 400, "no idempotency key", id="key-empty"),
    pytest.param({"pick": "left", "client_key": "k" * 65}, 400, "1–64 letters", id="key-too-long"),
    pytest.param({"pick": "left", "client_key": "k'; DROP TABLE x;--"}, 400, "1–64 letters", id="key-sql"),
    pytest.param({"pick": "left", "client_key": "a/b"}, 400, "1–64 letters", id="key-slash"),
    pytest.param({"pick": "left", "client_key": ["k1"]}, 400, "'client_key' has the wrong type", id="key-list"),
    pytest.param({"pick": "left", "client_key": "k1", "strength": 0}, 400, "Strength must be 1", id="strength-0"),
    pytest.param({"pick": "left", "client_key": "k1", "strength": 4}, 400, "Strength must be 1", id="strength-4"),
    pytest.param({"pick": "left", "client_key": "k1", "strength": -1}, 400, "Strength must be 1", id="strength-negative"),
    pytest.param({"pick": "left", "client_key": "k1", "strength": 10**30}, 400, "Strength must be 1", id="strength-huge"),
    pytest.param({"pick": "left", "client_key": "k1", "strength": 2.0}, 400, "'strength' has the wrong type", id="strength-float"),
    pytest.param({"pick": "left", "client_key": "k1", "time_spent_ms": -1}, 400, "cannot be negative", id="time-negative"),
    pytest.param({"pick": "left", "client_key": "k1", "time_spent_ms": 1.5}, 400, "'time_spent_ms' has the wrong type", id="time-float"),
    pytest.param({"pick": "left", "client_key": "k1", "time_spent_ms": "10"}, 400, "'time_spent_ms' has the wrong type", id="time-string"),
    pytest.param({"pick": "left", "client_key": "k1", "rationale": "x" * 5001}, 400, "rationale is too long", id="rationale-long"),
    pytest.param({"pick": "left", "client_key": "k1", "rationale": {"a": 1}}, 400, "'rationale' has the wrong type", id="rationale-object"),
    pytest.param({"pick": "tie", "client_key": "k1", "edited_text": ["better"]}, 400, "'edited_text' has the wrong type", id="edit-on-tie-list"),
    pytest.param({"pick": "left", "client_key": "k1", "edited_text": "x" * 50_001}, 400, "edited answer is too long", id="edit-long"),
    pytest.param({"pick": "left", "client_key": "k1", "edited_text": 5}, 400, "'edited_text' has the wrong type", id="edit-int"),
]


@pytest.mark.parametrize(("payload", "status", "message"), VOTE_PAYLOADS)
def test_bad_vote_payloads_are_refused(client, token, task, rows, payload, status, message):
    rows.snapshot()

    response = _post(client, f"/api/tasks/pair/{task.pk}/vote", payload, token)

    assert response.status_code == status
    assert message in _error_of(response)
    rows.assert_unchanged()


RAW_BODIES = [
    pytest.param(b"", "application/json", 400, "must be a JSON object", id="empty-body"),
    pytest.param(b"null", "application/json", 400, "must be a JSON object", id="null-body"),
    pytest.param(b'{"pick": NaN, "client_key": "k1"}', "application/json", 400, "'pick' has the wrong type", id="nan"),
    pytest.param(b'{"pick": "left", "client_key": "k1", "strength": ' + b"1" * 5000 + b"}", "application/json", 400,
                 "not valid JSON", id="5000-digit-number"),
    pytest.param(b'{"pick": "l\xffeft", "client_key": "k1"}', "application/json", 400, "not valid JSON", id="invalid-utf8"),
    pytest.param(b"pick=left&client_key=k1", "application/x-www-form-urlencoded", 400, "not valid JSON", id="form-encoded"),
    pytest.param(b'{"pick": "left", "client_key": "k1"', "application/json", 400, "not valid JSON", id="truncated"),
]


@pytest.mark.parametrize(("body", "content_type", "status", "message"), RAW_BODIES)
def test_odd_bodies_are_refused(client, token, task, rows, body, content_type, status, message):
    rows.snapshot()

    response = _post(client, f"/api/tasks/pair/{task.pk}/vote", body, token, content_type=content_type)

    assert response.status_code == status
    assert message in _error_of(response)
    rows.assert_unchanged()


def test_a_body_over_the_upload_limit_is_413(client, token, task, rows, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024

    rows.snapshot()

    response = _post(client, f"/api/tasks/pair/{task.pk}/vote", {"pick": "left", "client_key": "k1", "rationale": "x" * 2000}, token)

    assert response.status_code == 413
    assert "too large" in _error_of(response)
    rows.assert_unchanged()


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        pytest.param(f"/api/tasks/pair/{HUGE_ID}/vote", 404, "Not found", id="task-id-past-bigint"),
        pytest.param("/api/tasks/pair/0/vote", 404, "Not found", id="task-id-zero"),
        pytest.param("/api/tasks/rate/999999/vote", 404, "Not found", id="rate-task-unknown"),
        pytest.param("/api/tasks/PAIR/1/vote", 400, "Task kind must be", id="kind-uppercase"),
    ],
)
def test_unknown_tasks_and_kinds_are_refused(client, token, task, rows, path, status, message):
    rows.snapshot()

    response = _post(client, path, {"pick": "left", "client_key": "k1"}, token)

    assert response.status_code == status
    assert message in _error_of(response)
    rows.assert_unchanged()


@pytest.mark.parametrize(
    ("path", "status"),
    [
        pytest.param(f"/api/projects/{HUGE_ID}/next", 404, id="next-project-past-bigint"),
        pytest.param("/api/projects/0/next", 404, id="next-project-zero"),
    ],
)
def test_unknown_projects_are_404(client, token, rows, path, status):
    rows.snapshot()

    response = client.get(path, HTTP_AUTHORIZATION=f"Token {token}")

    assert response.status_code == status
    assert _error_of(response) == "Not found."
    rows.assert_unchanged()


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("Token", id="scheme-only"),
        pytest.param("Token    ", id="blank-token"),
        pytest.param("Basic dXNlcjpwdw==", id="basic-auth"),
        pytest.param("Token " + "A" * 10_000, id="10k-token"),
        pytest.param("Token pt_\u00e9\u00e9", id="non-ascii-token"),
    ],
)
def test_bad_authorization_headers_are_401(client, task, rows, header):
    rows.snapshot()

    response = client.post(
        f"/api/tasks/pair/{task.pk}/vote", data=json.dumps({"pick": "left", "client_key": "k1"}),
        content_type="application/json", HTTP_AUTHORIZATION=header,
    )

    assert response.status_code == 401
    assert "Authentication required" in _error_of(response)
    rows.assert_unchanged()


def test_a_task_leased_by_another_annotator_is_409(client, token, project, rows):
    # given the only slot on a task is held by someone else
    other = UserFactory()
    project.members.add(other)
    leased = make_pair_task(project, 7, overlap=1)
    assert services.task_lease_next(project=project, annotator=other) == leased
    rows.snapshot()

    # when I vote on it anyway
    response = _post(client, f"/api/tasks/pair/{leased.pk}/vote", {"pick": "left", "client_key": "k1"}, token)

    # then
    assert response.status_code == 409
    assert "other annotators took the remaining slots" in _error_of(response)
    rows.assert_unchanged()


def test_a_finished_task_is_409(client, token, project, annotator):
    done = make_pair_task(project, 8, overlap=1)
    other = UserFactory()
    project.members.add(other)
    services.pair_vote_record(task_id=done.pk, annotator=other, pick="left", client_key="theirs")

    response = _post(client, f"/api/tasks/pair/{done.pk}/vote", {"pick": "left", "client_key": "mine"}, token)

    assert response.status_code == 409
    assert "already has all the votes it needs" in _error_of(response)
    assert PairVote.objects.count() == 1


def test_another_annotators_client_key_is_409(client, token, project):
    # given someone else's vote with a key I guessed
    first, second = make_pair_task(project, 2, overlap=2), make_pair_task(project, 3, overlap=2)
    other = UserFactory()
    project.members.add(other)
    services.pair_vote_record(task_id=first.pk, annotator=other, pick="left", client_key="shared-key")

    # when I send that key for my own vote
    response = _post(client, f"/api/tasks/pair/{second.pk}/vote", {"pick": "right", "client_key": "shared-key"}, token)

    # then it is refused and their vote is untouched
    assert response.status_code == 409
    assert "already used for a different vote" in _error_of(response)
    assert list(PairVote.objects.values_list("annotator", "task", "choice")) == [(other.pk, first.pk, PairVote.objects.get().choice)]


def test_my_key_reused_on_another_task_is_409(client, token, project):
    first, second = make_pair_task(project, 4), make_pair_task(project, 5)
    assert _post(client, f"/api/tasks/pair/{first.pk}/vote", {"pick": "left", "client_key": "once"}, token).status_code == 201

    response = _post(client, f"/api/tasks/pair/{second.pk}/vote", {"pick": "left", "client_key": "once"}, token)

    assert response.status_code == 409
    assert "already used for a different vote" in _error_of(response)
    assert PairVote.objects.count() == 1


def test_a_rating_with_an_unknown_value_is_400(client, annotator, token, rows):
    project = ProjectFactory(mode="rate")
    project.members.add(annotator)
    task = make_rate_task(project, 1)
    rows.snapshot()

    response = _post(client, f"/api/tasks/rate/{task.pk}/vote", {"value": "meh", "client_key": "k1"}, token)

    assert response.status_code == 400
    assert "Unknown rating 'meh'" in _error_of(response)
    assert not Rating.objects.exists()
    rows.assert_unchanged()


def test_a_rate_task_of_a_foreign_project_is_403(client, token, rows):
    foreign = make_rate_task(ProjectFactory(mode="rate"), 1)
    rows.snapshot()

    response = _post(client, f"/api/tasks/rate/{foreign.pk}/vote", {"value": "up", "client_key": "k1"}, token)

    assert response.status_code == 403
    assert "not a member" in _error_of(response)
    rows.assert_unchanged()


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_other_methods_on_vote_are_405(client, token, task, rows, method):
    rows.snapshot()

    response = getattr(client, method)(f"/api/tasks/pair/{task.pk}/vote", HTTP_AUTHORIZATION=f"Token {token}")

    assert response.status_code == 405
    assert "not allowed" in _error_of(response)
    rows.assert_unchanged()


@pytest.mark.parametrize(
    ("query", "body", "message"),
    [
        pytest.param("", b"", "Send the file as multipart field 'file'", id="no-file-no-name"),
        pytest.param("?filename=data.exe", b"MZ\x90\x00binary", "NUL byte", id="binary-exe"),
        pytest.param("?filename=data.xlsx", b"PK\x03\x04zip", "Cannot tell the format", id="zip-as-xlsx"),
        pytest.param("?filename=d.jsonl", b'{"id": ' + b"9" * 5000 + b', "prompt": "x", "completions": ["a", "b"]}',
                     "line 1: not valid JSON", id="5000-digit-id"),
        pytest.param("?filename=d.jsonl", b'{"prompt": "alone"}\n{"prompt": "x", "completions": ["only"]}\n',
                     "line 2: compare projects pair two or more completions per prompt, and this prompt has one",
                     id="prompt-alone-then-one-completion"),
        pytest.param("?filename=d.csv", b'prompt\nalone\n"never closed\nswallowed\n',
                     'line 3: a quote (") opens a cell that is never closed', id="csv-prompts-alone-unclosed-quote"),
    ],
)
def test_hostile_imports_through_the_api_are_400(client, admin_user, project, rows, query, body, message):
    admin_token = api_token_create(user=admin_user)
    rows.snapshot()

    response = client.post(f"/api/projects/{project.pk}/import{query}", data=body, content_type="application/octet-stream",
                           HTTP_AUTHORIZATION=f"Token {admin_token}")

    assert response.status_code == 400
    body_json = response.json()
    assert message in body_json["error"] + " ".join(body_json.get("errors", []))
    rows.assert_unchanged()


def test_a_multipart_import_without_a_file_field_is_400(client, admin_user, project, rows):
    admin_token = api_token_create(user=admin_user)
    rows.snapshot()

    response = client.post(f"/api/projects/{project.pk}/import?filename=d.jsonl", {"data": '{"prompt": "x"}'},
                           HTTP_AUTHORIZATION=f"Token {admin_token}")

    assert response.status_code == 400
    assert "Send the file as multipart field 'file'" in _error_of(response)
    rows.assert_unchanged()


@pytest.mark.parametrize(
    ("content_type", "declared"),
    [
        pytest.param("application/octet-stream", "99999999999999999999", id="raw-body"),
        pytest.param("multipart/form-data; boundary=zzz", "99999999999999999999", id="multipart"),
    ],
)
def test_an_import_declared_over_the_limit_is_413_before_it_is_read(
    client, admin_user, project, rows, settings, content_type, declared
):
    settings.PREFTUNE_IMPORT_MAX_BYTES = 10 * 1024 * 1024
    admin_token = api_token_create(user=admin_user)
    rows.snapshot()

    response = client.generic("POST", f"/api/projects/{project.pk}/import?filename=d.jsonl", data=b'{"prompt": "x"}\n',
                              content_type=content_type, CONTENT_LENGTH=declared, HTTP_AUTHORIZATION=f"Token {admin_token}")

    assert response.status_code == 413
    assert "over the 10,485,760-byte import limit" in _error_of(response)
    rows.assert_unchanged()


@pytest.mark.parametrize("declared", ["-1", "not a number"])
def test_an_import_with_a_nonsense_length_reads_as_empty(client, admin_user, project, rows, declared):
    admin_token = api_token_create(user=admin_user)
    rows.snapshot()

    response = client.generic("POST", f"/api/projects/{project.pk}/import?filename=d.jsonl", data=b'{"prompt": "x"}\n',
                              content_type="application/octet-stream", CONTENT_LENGTH=declared,
                              HTTP_AUTHORIZATION=f"Token {admin_token}")

    assert response.status_code == 400
    assert response.json()["errors"] == ["The file is empty."]
    rows.assert_unchanged()


def test_an_unknown_export_format_is_400(client, admin_user, project):
    admin_token = api_token_create(user=admin_user)

    response = client.get(f"/api/projects/{project.pk}/export?format=xml", HTTP_AUTHORIZATION=f"Token {admin_token}")

    assert response.status_code == 400
    assert "format must be dpo or kto" in _error_of(response)


def test_nothing_is_leased_for_a_project_i_am_not_in(client, token, rows):
    foreign = ProjectFactory()
    make_pair_task(foreign, 1)
    rows.snapshot()

    response = client.get(f"/api/projects/{foreign.pk}/next", HTTP_AUTHORIZATION=f"Token {token}")

    assert response.status_code == 403
    assert not TaskLease.objects.exists()
    rows.assert_unchanged()
