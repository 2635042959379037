"""Uncertain-first labeling: with a reward model in the project, annotators get first the open pairs whose two
answers it scores closest; otherwise (or when asked) pairs come in order."""
from __future__ import annotations

import pytest
from django.utils import timezone

from labeling import services
from labeling.models import Project
from tests.factories import ProjectFactory, UserFactory, make_pair_task, make_pair_vote, make_run
from training.models import RewardScore, TuningRun

pytestmark = pytest.mark.django_db


def _scored_project(order: str, gaps: list[float | None]) -> tuple[Project, list, object]:
    project = ProjectFactory(name=f"Ordered {order}", overlap=2, label_order=order)
    annotator = UserFactory()
    project.members.add(annotator)
    reward = make_run(project, status="succeeded", method="reward")
    TuningRun.objects.filter(pk=reward.pk).update(finished_at=timezone.now())
    tasks = [make_pair_task(project, n) for n in range(len(gaps))]
    for task, gap in zip(tasks, gaps, strict=True):
        if gap is not None:
            RewardScore.objects.create(reward_run=reward, completion=task.completion_a, score=1.0)
            RewardScore.objects.create(reward_run=reward, completion=task.completion_b, score=1.0 - gap)
    return project, tasks, annotator


def _served(project: Project, annotator) -> list[int]:
    served = []
    while (task := services.task_lease_next(project=project, annotator=annotator)) is not None:
        served.append(task.pk)
        services.task_skip(project=project, annotator=annotator, kind="pair", task_id=task.pk)
    return served


def test_uncertain_first_serves_the_closest_scored_pairs_first_and_unscored_ones_last():
    project, tasks, annotator = _scored_project("uncertain_first", [3.0, 0.1, None, -1.0, 0.5])

    assert _served(project, annotator) == [tasks[1].pk, tasks[4].pk, tasks[3].pk, tasks[0].pk, tasks[2].pk]


def test_a_pair_someone_started_is_still_finished_first():
    project, tasks, annotator = _scored_project("uncertain_first", [3.0, 0.1, 0.5])
    make_pair_vote(tasks[0], UserFactory(), "a")

    assert _served(project, annotator)[0] == tasks[0].pk


def test_in_order_ignores_the_reward_model():
    project, tasks, annotator = _scored_project("in_order", [3.0, 0.1, None])

    assert _served(project, annotator) == [t.pk for t in tasks]


def test_uncertain_first_without_a_reward_model_serves_in_order():
    project, tasks, annotator = _scored_project("uncertain_first", [3.0, 0.1])
    TuningRun.objects.filter(project=project).update(status="failed")

    assert _served(project, annotator) == [t.pk for t in tasks]


def test_the_newest_reward_model_decides():
    project, tasks, annotator = _scored_project("uncertain_first", [0.1, 3.0])
    newer = make_run(project, status="succeeded", method="reward")
    TuningRun.objects.filter(pk=newer.pk).update(finished_at=timezone.now())
    RewardScore.objects.create(reward_run=newer, completion=tasks[0].completion_a, score=0.0)
    RewardScore.objects.create(reward_run=newer, completion=tasks[0].completion_b, score=5.0)
    RewardScore.objects.create(reward_run=newer, completion=tasks[1].completion_a, score=0.0)
    RewardScore.objects.create(reward_run=newer, completion=tasks[1].completion_b, score=0.2)

    assert _served(project, annotator) == [tasks[1].pk, tasks[0].pk]


def test_the_settings_page_sets_the_order_and_refuses_an_unknown_one(admin_client):
    project = ProjectFactory(name="Order settings")
    form = {"name": project.name, "overlap": "1", "guidelines": "", "description": "", "label_order": "uncertain_first"}

    assert admin_client.post(f"/projects/{project.pk}/settings/", form).status_code == 302
    project.refresh_from_db()
    assert project.label_order == "uncertain_first"

    response = admin_client.post(f"/projects/{project.pk}/settings/", {**form, "label_order": "loudest_first"})
    assert response.status_code == 400 and "Select a valid choice. loudest_first is not one of the available choices." in response.content.decode()
    project.refresh_from_db()
    assert project.label_order == "uncertain_first"


def test_the_dashboard_says_which_order_annotators_get(admin_client):
    project, tasks, _ = _scored_project("uncertain_first", [3.0, 0.1, None])
    page = admin_client.get(f"/projects/{project.pk}/dashboard/").content.decode()
    assert "least sure about: 2 of 3 open pairs are scored" in page

    TuningRun.objects.filter(project=project).update(status="failed")
    page = admin_client.get(f"/projects/{project.pk}/dashboard/").content.decode()
    assert "no reward model has been trained in this project yet, so pairs come in order" in page

    Project.objects.filter(pk=project.pk).update(label_order="in_order")
    assert 'data-testid="label-order"' not in admin_client.get(f"/projects/{project.pk}/dashboard/").content.decode()


def test_the_dashboard_warns_when_the_reward_model_is_not_clearly_above_chance(admin_client):
    project, _, _ = _scored_project("uncertain_first", [3.0, 0.1])
    weak = {"correct": 3, "pairs": 8, "ties": 0, "accuracy": 0.375, "interval": [0.137, 0.694]}
    TuningRun.objects.filter(project=project).update(outcome={"reward_model": weak})

    page = admin_client.get(f"/projects/{project.pk}/dashboard/").content.decode()

    assert "Its held-out accuracy, 38% (14%–69%), is not clearly above chance" in page
    strong = {**weak, "correct": 8, "accuracy": 1.0, "interval": [0.676, 1.0]}
    TuningRun.objects.filter(project=project).update(outcome={"reward_model": strong})
    assert "not clearly above chance" not in admin_client.get(f"/projects/{project.pk}/dashboard/").content.decode()
