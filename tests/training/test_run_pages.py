"""The run page, its live parts, the runs list, and the likelihood-displacement warning."""
from __future__ import annotations

import pytest

from tests.factories import ProjectFactory, make_run
from training.models import RunMetric
from training.selectors import likelihood_displacement

pytestmark = pytest.mark.django_db


def _series(chosen, margins, split="train"):
    return {split: {"logps/chosen": list(enumerate(chosen, 1)), "rewards/margins": list(enumerate(margins, 1))}}


def test_displacement_is_flagged_when_chosen_falls_and_margins_rise():
    warning = likelihood_displacement(_series([-50, -51, -60, -70], [0.1, 0.5, 1.0, 2.0], split="eval"))

    assert warning and "fell by 20.00" in warning and "validation split" in warning


def test_no_warning_when_chosen_rises_with_the_margin():
    assert likelihood_displacement(_series([-50, -45, -40, -35], [0.1, 0.5, 1.0, 2.0], split="eval")) is None


def test_no_warning_without_enough_points():
    assert likelihood_displacement(_series([-50, -90], [0.1, 2.0])) is None


def test_training_batches_are_averaged_by_quarters():
    chosen = [-50, -52, -51, -49, -70, -72, -71, -73]
    margins = [0.0, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 1.2]

    warning = likelihood_displacement(_series(chosen, margins))

    assert warning and "training batches" in warning


def test_the_run_page_shows_status_settings_and_lineage(admin_client):
    run = make_run(ProjectFactory(name="Pages"), status="running")
    RunMetric.objects.create(run=run, step=1, values={"loss": 0.69, "rewards/margins": 0.0})

    html = admin_client.get(f"/runs/{run.pk}/").content.decode()

    assert "Running" in html and 'hx-trigger="every 2s"' in html
    assert "Cancel run" in html
    assert "loss 0.6900" in html


def test_a_finished_run_stops_polling(admin_client):
    run = make_run(ProjectFactory(), status="succeeded")

    html = admin_client.get(f"/runs/{run.pk}/status/").content.decode()

    assert "hx-trigger" not in html and "Cancel run" not in html


def test_metrics_json_gives_series_per_split(admin_client):
    run = make_run(ProjectFactory(), status="running")
    RunMetric.objects.create(run=run, step=1, values={"loss": 0.7})
    RunMetric.objects.create(run=run, step=2, values={"loss": 0.6})
    RunMetric.objects.create(run=run, step=2, split="eval", values={"eval_loss": 0.65})

    body = admin_client.get(f"/runs/{run.pk}/metrics.json").json()

    assert body["series"]["train"]["loss"] == [[1, 0.7], [2, 0.6]]
    assert body["series"]["eval"]["loss"] == [[2, 0.65]]


def test_the_runs_list_shows_key_metrics(admin_client):
    project = ProjectFactory()
    run = make_run(project, status="succeeded")
    RunMetric.objects.create(run=run, step=3, values={"loss": 0.5, "rewards/margins": 1.25, "rewards/accuracies": 0.75})

    html = admin_client.get(f"/projects/{project.pk}/runs/", HTTP_HX_REQUEST="true").content.decode()

    assert run.name in html and "rewards/margins 1.250" in html and "<html" not in html


def test_run_text_is_escaped(admin_client):
    run = make_run(ProjectFactory(), status="failed")
    run.error = "<script>alert(1)</script>"
    run.name = "<img src=x onerror=alert(2)>"
    run.save()

    html = admin_client.get(f"/runs/{run.pk}/").content.decode()

    assert "<script>alert(1)" not in html and "<img src=x" not in html
