"""Hostile vote, rating and skip forms on the annotate page (htmx posts): a 4xx card with the message, never a
500, and no vote written."""
from __future__ import annotations

import html

import pytest

from labeling import services
from labeling.models import PairVote, Rating
from tests.factories import ProjectFactory, UserFactory, make_pair_task, make_rate_task

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]
HX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def task(project):
    return make_pair_task(project, 1)


def _text(response) -> str:
    return html.unescape(response.content.decode())


PAIR_FORMS = [
    pytest.param({"client_key": "k1"}, "Unknown choice ''", id="no-pick"),
    pytest.param({"pick": "middle", "client_key": "k1"}, "Unknown choice 'middle'", id="unknown-pick"),
    pytest.param({"pick": "<script>alert(1)</script>", "client_key": "k1"}, "Unknown choice", id="script-pick"),
    pytest.param({"pick": "left"}, "no idempotency key", id="no-key"),
    pytest.param({"pick": "left", "client_key": "k" * 65}, "1–64 letters", id="long-key"),
    pytest.param({"pick": "left", "client_key": "k1", "strength": "abc"}, "Strength must be a whole number", id="strength-text"),
    pytest.param({"pick": "left", "client_key": "k1", "strength": "2.5"}, "Strength must be a whole number", id="strength-decimal"),
    pytest.param({"pick": "left", "client_key": "k1", "strength": "9" * 5000}, "Strength must be a whole number",
                 id="strength-5000-digits"),
    pytest.param({"pick": "left", "client_key": "k1", "strength": "7"}, "Strength must be 1", id="strength-7"),
    pytest.param({"pick": "left", "client_key": "k1", "time_spent_ms": "-5"}, "cannot be negative", id="time-negative"),
    pytest.param({"pick": "left", "client_key": "k1", "time_spent_ms": "1e3"}, "Time spent must be a whole number", id="time-exp"),
    pytest.param({"pick": "left", "client_key": "k1", "rationale": "r" * 5001}, "rationale is too long", id="rationale-long"),
    pytest.param({"pick": "both_bad", "client_key": "k1", "edited_text": "m" * 50_001}, "edited answer is too long",
                 id="edit-on-both-bad-too-long"),
]


@pytest.mark.parametrize(("form", "message"), PAIR_FORMS)
def test_bad_pair_vote_forms_are_400(annotator_client, project, task, rows, form, message):
    rows.snapshot()

    response = annotator_client.post(f"/projects/{project.pk}/pairs/{task.pk}/vote/", form, **HX)

    assert response.status_code == 400
    assert message in _text(response)
    assert not PairVote.objects.exists()
    rows.assert_unchanged()


def test_a_bad_form_without_htmx_redirects_with_the_message(annotator_client, project, task, rows):
    rows.snapshot()

    response = annotator_client.post(f"/projects/{project.pk}/pairs/{task.pk}/vote/", {"pick": "up", "client_key": "k1"}, follow=True)

    assert response.redirect_chain[0][1] == 302
    assert "Unknown choice 'up'" in _text(response)
    rows.assert_unchanged(ignore=("labeling.TaskLease",))  # the page it lands on leases the next task


def test_a_task_of_another_project_under_my_project_url_is_404(annotator_client, project, rows):
    foreign = make_pair_task(ProjectFactory(), 9)
    rows.snapshot()

    response = annotator_client.post(f"/projects/{project.pk}/pairs/{foreign.pk}/vote/", {"pick": "left", "client_key": "k1"}, **HX)

    assert response.status_code == 404
    assert "That pair is not in this project." in _text(response)
    assert not PairVote.objects.exists()


def test_a_task_leased_by_someone_else_is_409(annotator_client, project, rows):
    other = UserFactory()
    project.members.add(other)
    taken = make_pair_task(project, 3, overlap=1)
    services.task_lease_next(project=project, annotator=other)
    rows.snapshot()

    response = annotator_client.post(f"/projects/{project.pk}/pairs/{taken.pk}/vote/", {"pick": "left", "client_key": "k1"}, **HX)

    assert response.status_code == 409
    assert "other annotators took the remaining slots" in _text(response)
    assert not PairVote.objects.exists()


def test_a_second_vote_on_the_same_task_with_a_new_key_is_409(annotator_client, project, task, annotator):
    services.pair_vote_record(task_id=task.pk, annotator=annotator, pick="left", client_key="first")

    response = annotator_client.post(f"/projects/{project.pk}/pairs/{task.pk}/vote/", {"pick": "right", "client_key": "second"}, **HX)

    assert response.status_code == 409
    assert "already" in _text(response)
    assert list(PairVote.objects.values_list("client_key", flat=True)) == ["first"]


@pytest.mark.parametrize(
    ("form", "message"),
    [
        pytest.param({"value": "sideways", "client_key": "k1"}, "Unknown rating 'sideways'", id="rating-unknown"),
        pytest.param({"client_key": "k1"}, "Unknown rating ''", id="rating-missing"),
        pytest.param({"value": "up", "client_key": "k1", "time_spent_ms": "soon"}, "Time spent must be a whole number",
                     id="rating-time-text"),
    ],
)
def test_bad_rating_forms_are_400(client, annotator, rows, form, message):
    from tests.factories import PASSWORD

    project = ProjectFactory(mode="rate")
    project.members.add(annotator)
    task = make_rate_task(project, 1)
    assert client.login(username=annotator.username, password=PASSWORD)
    rows.snapshot()

    response = client.post(f"/projects/{project.pk}/rate/{task.pk}/vote/", form, **HX)

    assert response.status_code == 400
    assert message in _text(response)
    assert not Rating.objects.exists()
    rows.assert_unchanged()


@pytest.mark.parametrize(
    ("kind", "task_id", "status", "message"),
    [
        pytest.param("poll", 1, 400, "Unknown task kind 'poll'", id="skip-unknown-kind"),
        pytest.param("pair", 999_999, 404, "That task does not exist in this project.", id="skip-unknown-task"),
    ],
)
def test_bad_skips_are_refused(annotator_client, project, task, rows, kind, task_id, status, message):
    rows.snapshot()

    response = annotator_client.post(f"/projects/{project.pk}/{kind}/{task_id}/skip/", **HX)

    assert response.status_code == status
    assert message in _text(response)
    # The refusal shows the next card, which leases it: only the lease table may change.
    rows.assert_unchanged(ignore=("labeling.TaskLease",))


def test_a_get_on_the_vote_url_is_405(annotator_client, project, task, rows):
    rows.snapshot()

    response = annotator_client.get(f"/projects/{project.pk}/pairs/{task.pk}/vote/?pick=left&client_key=k1")

    assert response.status_code == 405
    rows.assert_unchanged()
