"""Every list or page that can be empty says why it is empty and what to do next (issue 10, point 4).

tests/browser/test_every_screen.py renders the same empty project in Chromium to check that it fits the screen;
this checks the words, and that the "nothing here yet" text is not shown where there is something.
"""
from __future__ import annotations

import pytest

from tests.factories import (
    PASSWORD,
    AdminFactory,
    ProjectFactory,
    UserFactory,
    make_pair_task,
    make_pair_vote,
    make_rate_task,
)

pytestmark = pytest.mark.django_db


def _client_for(client, user):  # noqa: ANN001, ANN202
    assert client.login(username=user.username, password=PASSWORD)
    return client


@pytest.mark.parametrize(("mode", "heading"), [("compare", "No pairs yet"), ("rate", "Nothing to rate yet")])
def test_an_annotator_in_an_empty_project_is_told_why_there_is_nothing_to_do(client, mode, heading):
    annotator = UserFactory()
    project = ProjectFactory(mode=mode)
    project.members.add(annotator)
    page = _client_for(client, annotator).get(f"/projects/{project.pk}/").content.decode()
    assert heading in page
    assert "an admin imports" in page
    assert "All done here" not in page
    # Annotators are not sent to admin pages they cannot open.
    assert f"/projects/{project.pk}/import/" not in page


def test_an_annotator_who_finished_is_thanked_not_told_the_project_is_empty(client):
    annotator = UserFactory()
    project = ProjectFactory(overlap=1)
    project.members.add(annotator)
    make_pair_vote(make_pair_task(project), annotator, "a")
    page = _client_for(client, annotator).get(f"/projects/{project.pk}/").content.decode()
    assert "All done here" in page
    assert "No pairs yet" not in page


def test_an_admin_in_an_empty_project_gets_the_next_step_on_every_page(client):
    project = ProjectFactory()
    admin_client = _client_for(client, AdminFactory())

    annotate = admin_client.get(f"/projects/{project.pk}/").content.decode()
    assert f"/projects/{project.pk}/import/" in annotate and f"/projects/{project.pk}/candidates/" in annotate

    dashboard = admin_client.get(f"/projects/{project.pk}/dashboard/").content.decode()
    assert 'data-testid="annotators-empty"' in dashboard and f"/projects/{project.pk}/settings/" in dashboard

    runs = admin_client.get(f"/projects/{project.pk}/runs/", HTTP_HX_REQUEST="true").content.decode()
    assert 'data-testid="runs-empty"' in runs and f"/projects/{project.pk}/runs/new/" in runs

    candidates = admin_client.get(f"/projects/{project.pk}/candidates/").content.decode()
    assert 'data-testid="jobs-empty"' in candidates and "Import prompts without answers" in candidates
    # It names the button by its label, and where it is (issue 26: "Generate candidates above" for "Generate" below).
    assert "press <b>Generate candidates</b> at the end of the form" in candidates
    assert 'data-testid="generate-candidates">Generate candidates</button>' in candidates

    export = admin_client.get(f"/projects/{project.pk}/export/").content.decode()
    assert 'data-testid="export-empty"' in export and "complete task" in export

    leaderboard = admin_client.get(f"/projects/{project.pk}/leaderboard/").content.decode()
    assert "No votes on matched review pairs yet" in leaderboard

    disagreements = admin_client.get(f"/projects/{project.pk}/disagreements/").content.decode()
    assert "No disagreements" in disagreements


def test_the_empty_texts_go_away_once_there_is_something(client):
    annotator = UserFactory()
    project = ProjectFactory(overlap=1)
    project.members.add(annotator)
    make_pair_vote(make_pair_task(project), annotator, "a")
    admin_client = _client_for(client, AdminFactory())
    assert 'data-testid="annotators-empty"' not in admin_client.get(f"/projects/{project.pk}/dashboard/").content.decode()
    assert 'data-testid="export-empty"' not in admin_client.get(f"/projects/{project.pk}/export/").content.decode()


def test_a_rate_project_with_tasks_is_not_called_empty(client):
    annotator = UserFactory()
    project = ProjectFactory(mode="rate")
    project.members.add(annotator)
    make_rate_task(project)
    page = _client_for(client, annotator).get(f"/projects/{project.pk}/").content.decode()
    assert "Nothing to rate yet" not in page
    assert 'data-testid="completion-text"' in page
