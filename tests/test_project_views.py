"""Creating and editing projects: guideline versions, overlap changes on open tasks, members."""
from __future__ import annotations

import pytest
from django.db.models import F

from labeling.models import PairTask, Project
from tests.factories import ProjectFactory, UserFactory, make_pair_task, make_pair_vote

pytestmark = pytest.mark.django_db


def _form(**changes):
    return {"name": "Helpfulness", "description": "", "mode": "compare", "overlap": "2", "guidelines": "Be kind.", **changes}


def test_it_creates_a_project_and_sends_the_admin_to_import(admin_client):
    member = UserFactory()

    response = admin_client.post("/projects/new/", _form(members=[member.pk]))

    project = Project.objects.get(name="Helpfulness")
    assert response.status_code == 302 and response["Location"] == f"/projects/{project.pk}/import/"
    assert list(project.members.all()) == [member]


def test_an_invalid_project_is_refused_with_the_field_error(admin_client):
    response = admin_client.post("/projects/new/", _form(overlap="0"))

    assert response.status_code == 400
    assert "Ensure this value is greater than or equal to 1." in response.content.decode()
    assert not Project.objects.exists()


def test_changing_the_guidelines_bumps_their_version(admin_client):
    project = ProjectFactory(guidelines="Old rules.")

    admin_client.post(f"/projects/{project.pk}/settings/", _form(name=project.name, guidelines="New rules.", overlap="1"))

    project.refresh_from_db()
    assert (project.guidelines, project.guideline_version) == ("New rules.", 2)


def test_saving_the_same_guidelines_keeps_the_version(admin_client):
    project = ProjectFactory(guidelines="Same.")

    admin_client.post(f"/projects/{project.pk}/settings/", _form(name=project.name, guidelines="Same.", overlap="1"))

    project.refresh_from_db()
    assert project.guideline_version == 1


def test_lowering_the_overlap_completes_open_tasks_that_have_enough_votes(admin_client):
    project = ProjectFactory(overlap=3)
    voted = make_pair_task(project, 1)
    make_pair_vote(voted, UserFactory(), "a")
    untouched = make_pair_task(project, 2)

    admin_client.post(f"/projects/{project.pk}/settings/", _form(name=project.name, overlap="1"))

    voted.refresh_from_db()
    untouched.refresh_from_db()
    assert (voted.overlap, voted.status) == (1, "complete")
    assert (untouched.overlap, untouched.status) == (1, "open")
    assert not PairTask.objects.filter(vote_count__gt=F("overlap")).exists()


def test_the_mode_cannot_change_once_created(admin_client):
    project = ProjectFactory(mode="compare")

    admin_client.post(f"/projects/{project.pk}/settings/", _form(name=project.name, mode="rate", overlap="1"))

    project.refresh_from_db()
    assert project.mode == "compare"
