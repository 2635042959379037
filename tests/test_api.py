"""The JSON API: token auth, next task, votes, and the same access rules as the pages."""
from __future__ import annotations

import json

import pytest

from labeling.models import PairVote, Rating
from labeling.services import api_token_create
from tests.factories import ProjectFactory, make_pair_task, make_rate_task

pytestmark = pytest.mark.django_db


@pytest.fixture
def token(annotator):
    return api_token_create(user=annotator, name="script")


def _auth(token):
    return {"HTTP_AUTHORIZATION": f"Token {token}"}


def _vote(client, token, kind, task_id, payload):
    return client.post(
        f"/api/tasks/{kind}/{task_id}/vote", data=json.dumps(payload), content_type="application/json", **_auth(token)
    )


def test_it_refuses_requests_without_a_token(client, project):
    response = client.get(f"/api/projects/{project.pk}/next")

    assert response.status_code == 401
    assert "Token" in response.json()["error"]


def test_it_refuses_a_wrong_token(client, project):
    response = client.get(f"/api/projects/{project.pk}/next", HTTP_AUTHORIZATION="Token pt_nope")

    assert response.status_code == 401


def test_a_session_alone_does_not_authenticate_the_api(annotator_client, project):
    assert annotator_client.get(f"/api/projects/{project.pk}/next").status_code == 401


def test_next_then_vote_round_trip(client, project, token, annotator):
    task = make_pair_task(project, 1)

    nxt = client.get(f"/api/projects/{project.pk}/next", **_auth(token)).json()
    response = _vote(client, token, "pair", nxt["task"]["id"], {"pick": "left", "client_key": nxt["client_key"]})
    again = _vote(client, token, "pair", nxt["task"]["id"], {"pick": "left", "client_key": nxt["client_key"]})

    assert nxt["task"]["id"] == task.pk
    shown_left = nxt["task"]["left"]["text"]
    assert response.status_code == 201 and again.status_code == 200
    vote = PairVote.objects.get()
    assert vote.annotator == annotator
    assert (task.completion_a.text if vote.choice == "a" else task.completion_b.text) == shown_left
    assert client.get(f"/api/projects/{project.pk}/next", **_auth(token)).json()["task"] is None


def test_rating_round_trip(client, annotator, token):
    project = ProjectFactory(mode="rate")
    project.members.add(annotator)
    task = make_rate_task(project, 1)

    nxt = client.get(f"/api/projects/{project.pk}/next", **_auth(token)).json()
    response = _vote(client, token, "rate", task.pk, {"value": "up", "client_key": nxt["client_key"]})

    assert nxt["task"]["kind"] == "rate"
    assert response.status_code == 201
    assert Rating.objects.get().value == "up"


@pytest.mark.parametrize(
    ("payload", "status", "message"),
    [
        ({"pick": 1, "client_key": "k"}, 400, "wrong type"),
        ({"pick": "left", "client_key": 5}, 400, "wrong type"),
        ({"pick": "left", "client_key": "k", "strength": "3"}, 400, "wrong type"),
        ({"pick": "left", "client_key": "k", "strength": True}, 400, "wrong type"),
        ({"pick": "sideways", "client_key": "k"}, 400, "Unknown choice"),
        ({"pick": "left"}, 400, "idempotency key"),
    ],
)
def test_bad_vote_payloads_get_a_clear_400(client, project, token, payload, status, message):
    task = make_pair_task(project, 1)

    response = _vote(client, token, "pair", task.pk, payload)

    assert response.status_code == status
    assert message in response.json()["error"]
    assert not PairVote.objects.exists()


@pytest.mark.parametrize("body", ["not json", "[1, 2]", "[" * 100_000, '"just a string"'])
def test_malformed_json_bodies_get_a_400(client, project, token, body):
    task = make_pair_task(project, 1)

    response = client.post(f"/api/tasks/pair/{task.pk}/vote", data=body, content_type="application/json", **_auth(token))

    assert response.status_code == 400
    assert not PairVote.objects.exists()


def test_a_task_of_a_project_i_am_not_in_is_403(client, token):
    foreign = make_pair_task(ProjectFactory(), 1)

    response = _vote(client, token, "pair", foreign.pk, {"pick": "left", "client_key": "k"})

    assert response.status_code == 403
    assert not PairVote.objects.exists()


def test_an_unknown_task_is_404(client, token):
    assert _vote(client, token, "pair", 999_999, {"pick": "left", "client_key": "k"}).status_code == 404


def test_an_unknown_kind_is_400(client, token):
    assert _vote(client, token, "poll", 1, {"pick": "left", "client_key": "k"}).status_code == 400


def test_annotators_cannot_import_or_export(client, project, token):
    imported = client.post(f"/api/projects/{project.pk}/import?filename=x.jsonl", data=b"{}", content_type="application/octet-stream", **_auth(token))
    exported = client.get(f"/api/projects/{project.pk}/export?format=dpo", **_auth(token))

    assert (imported.status_code, exported.status_code) == (403, 403)


def test_wrong_method_is_405(client, project, token):
    assert client.post(f"/api/projects/{project.pk}/next", **_auth(token)).status_code == 405


def test_an_inactive_users_token_stops_working(client, project, annotator, token):
    annotator.is_active = False
    annotator.save()

    assert client.get("/api/projects/", **_auth(token)).status_code == 401


def test_the_project_list_shows_only_my_projects(client, project, token):
    ProjectFactory(name="Not mine")

    names = [p["name"] for p in client.get("/api/projects/", **_auth(token)).json()["projects"]]

    assert names == [project.name]


def test_admin_import_and_export_through_the_api(client, admin_user):
    project = ProjectFactory()
    admin_token = api_token_create(user=admin_user)
    lines = "\n".join(json.dumps({"prompt": f"Q{n}?", "completions": [f"yes {n}", f"no {n}"]}) for n in range(3))

    imported = client.post(
        f"/api/projects/{project.pk}/import?filename=batch.jsonl", data=lines.encode(),
        content_type="application/octet-stream", **_auth(admin_token),
    )
    exported = client.get(f"/api/projects/{project.pk}/export?format=dpo", **_auth(admin_token))

    assert imported.status_code == 201, imported.content
    assert imported.json()["tasks"] == 3
    assert exported.status_code == 200
    assert exported.content == b""  # nothing voted yet
