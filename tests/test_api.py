"""The JSON API: token auth, next task, votes, and the same access rules as the pages."""
from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from labeling.models import Completion, PairTask, PairVote, Prompt, RateTask, Rating
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


def test_next_says_which_answer_was_cut_off_at_the_token_limit(client, project, token):
    task = make_pair_task(project, 1)
    Completion.objects.filter(pk=task.completion_b_id).update(finish_reason="length")

    shown = client.get(f"/api/projects/{project.pk}/next", **_auth(token)).json()["task"]

    cut_off = {side["text"]: side["cut_off"] for side in (shown["left"], shown["right"])}
    assert cut_off == {task.completion_a.text: False, task.completion_b.text: True}


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


# ---------------------------------------------------------------- import: prompts alone, and the size limit


@pytest.fixture
def admin_token(admin_user):
    return api_token_create(user=admin_user, name="import script")


def _import(client, token, project, data: bytes, *, filename="batch.jsonl", content_type="application/octet-stream"):
    return client.post(
        f"/api/projects/{project.pk}/import?filename={filename}", data=data, content_type=content_type, **_auth(token)
    )


def _rows() -> tuple[int, int, int, int]:
    return Prompt.objects.count(), Completion.objects.count(), PairTask.objects.count(), RateTask.objects.count()


@pytest.mark.parametrize("mode", ["compare", "rate"])
def test_admin_imports_prompts_alone_through_the_api(client, admin_token, mode):
    # given
    project = ProjectFactory(mode=mode)
    data = b'{"id": "a", "prompt": "Haiku?"}\n{"id": "b", "prompt": "DNS?"}\n{"id": "h", "prompt": "Later", "split": "heldout"}\n'

    # when
    response = _import(client, admin_token, project, data)

    # then
    assert response.status_code == 201, response.content
    assert response.json() == {
        "prompts": 3,
        "completions": 0,
        "tasks": 0,
        "heldout": 1,
        "awaiting_candidates": 2,
        "next_step": "2 prompts have no completions yet: generate candidates from the dashboard",
    }
    assert sorted(Prompt.objects.filter(project=project).values_list("external_id", flat=True)) == ["a", "b", "h"]
    assert _rows()[1:] == (0, 0, 0)


@pytest.mark.parametrize("mode", ["compare", "rate"])
def test_admin_imports_a_csv_of_prompts_alone_as_a_multipart_file(client, admin_token, mode):
    # given
    project = ProjectFactory(mode=mode)
    upload = SimpleUploadedFile("prompts.csv", b"id,prompt,split\na,Haiku?,train\nb,DNS?,\n")

    # when
    response = client.post(f"/api/projects/{project.pk}/import", {"file": upload}, **_auth(admin_token))

    # then
    assert response.status_code == 201, response.content
    assert (response.json()["prompts"], response.json()["awaiting_candidates"]) == (2, 2)
    assert _rows() == (2, 0, 0, 0)


def test_the_api_says_nothing_waits_when_every_prompt_has_completions(client, admin_token, project):
    # when
    response = _import(client, admin_token, project, b'{"prompt": "x", "completions": ["a", "b"]}\n')

    # then
    assert (response.json()["awaiting_candidates"], response.json()["next_step"]) == (0, "")


@pytest.mark.parametrize("mode", ["compare", "rate"])
def test_a_prompt_alone_beside_a_malformed_line_writes_nothing_through_the_api(client, admin_token, mode):
    # given one good prompt-only line and one malformed line
    project = ProjectFactory(mode=mode)

    # when
    response = _import(client, admin_token, project, b'{"prompt": "Haiku?"}\n{"prompt": \n')

    # then
    assert response.status_code == 400
    assert response.json()["errors"] == ["line 2: not valid JSON (Expecting value at column 12)."]
    assert _rows() == (0, 0, 0, 0)


def test_a_compare_prompt_with_one_completion_is_refused_through_the_api(client, admin_token, project):
    # when
    response = _import(client, admin_token, project, b'{"prompt": "alone"}\n{"prompt": "x", "completion": "only"}\n')

    # then
    assert response.status_code == 400
    assert response.json()["errors"] == [
        "line 2: compare projects pair two or more completions per prompt, and this prompt has one: add a second "
        "completion, or import the prompt without completions and generate candidates from the dashboard."
    ]
    assert _rows() == (0, 0, 0, 0)


def _three_megabytes_of_prompts() -> bytes:
    # 300 prompts, each with two 5,000-character completions: about 3 MB, over Django's 2 MB form-body cap.
    lines = [
        json.dumps({"id": f"q{n}", "prompt": f"Q{n}?", "completions": [f"yes {n} " + "y" * 5000, f"no {n} " + "n" * 5000]})
        for n in range(300)
    ]
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize("content_type", ["application/octet-stream", "application/x-www-form-urlencoded"])
def test_a_raw_body_over_the_form_body_cap_but_within_the_import_limit_imports(client, admin_token, project, settings, content_type):
    # given the defaults: 2 MB for form bodies, 10 MB for imports (curl --data-binary sends a form content type)
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
    settings.PREFTUNE_IMPORT_MAX_BYTES = 10 * 1024 * 1024
    data = _three_megabytes_of_prompts()
    assert 3_000_000 < len(data) < 3_200_000

    # when
    response = _import(client, admin_token, project, data, content_type=content_type)

    # then
    assert response.status_code == 201, response.content[:500]
    assert (response.json()["prompts"], response.json()["tasks"]) == (300, 300)
    assert _rows() == (300, 600, 300, 0)


def test_a_raw_body_over_the_import_limit_is_413_and_writes_nothing(client, admin_token, project, settings):
    # given
    settings.PREFTUNE_IMPORT_MAX_BYTES = 2 * 1024 * 1024
    data = _three_megabytes_of_prompts()

    # when
    response = _import(client, admin_token, project, data)

    # then
    assert response.status_code == 413
    assert response.json()["error"] == (
        f"The body is {len(data):,} bytes, over the 2,097,152-byte import limit; split it into smaller files. "
        "Nothing was imported."
    )
    assert _rows() == (0, 0, 0, 0)


def test_a_multipart_file_over_the_import_limit_is_413_and_writes_nothing(client, admin_token, project, settings):
    # given a file just over the limit, in an upload whose overhead keeps it under the declared-length check
    settings.PREFTUNE_IMPORT_MAX_BYTES = 1000
    upload = SimpleUploadedFile("big.jsonl", b'{"prompt": "x", "completions": ["a", "b"]}\n' * 30)

    # when
    response = client.post(f"/api/projects/{project.pk}/import", {"file": upload}, **_auth(admin_token))

    # then
    assert response.status_code == 413
    assert response.json()["error"].startswith("The file is 1,290 bytes, over the 1,000-byte import limit;")
    assert _rows() == (0, 0, 0, 0)


def test_other_api_bodies_keep_the_form_body_cap(client, project, token, settings):
    # given an import limit far above the form-body cap
    settings.PREFTUNE_IMPORT_MAX_BYTES = 10 * 1024 * 1024
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    task = make_pair_task(project, 1)

    # when a vote body is over the form-body cap
    response = _vote(client, token, "pair", task.pk, {"pick": "left", "client_key": "k", "rationale": "x" * 2000})

    # then
    assert response.status_code == 413
    assert not PairVote.objects.exists()
