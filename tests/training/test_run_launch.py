"""Launching a run from the dashboard form: every refusal has a clear message and queues nothing."""
from __future__ import annotations

import pytest

from tests.factories import make_pair_task, make_pair_vote
from tests.training.conftest import LAUNCH_FORM as FORM
from tests.training.conftest import rated_project, voted_compare_project
from training.models import DatasetSnapshot, TuningRun

pytestmark = pytest.mark.django_db



def _launch(admin_client, project, base_model_id, capture, **changes):
    data = {**FORM, "base_model": str(base_model_id), **changes}
    with capture() as callbacks:
        response = admin_client.post(f"/projects/{project.pk}/runs/new/", data)
    return response, callbacks


def _nothing_queued(callbacks):
    assert callbacks == []
    assert not TuningRun.objects.exists()
    assert not DatasetSnapshot.objects.exists()


def test_it_launches_a_dpo_run_with_a_frozen_snapshot(admin_client, tiny_base, django_capture_on_commit_callbacks):
    project = voted_compare_project(6)

    response, callbacks = _launch(admin_client, project, tiny_base.pk, django_capture_on_commit_callbacks)

    run = TuningRun.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/runs/{run.pk}/"
    assert len(callbacks) == 1, "enqueued once, after commit"
    assert (run.status, run.method, run.train_rows, run.validation_rows) == ("queued", "dpo", 6, 0)
    assert run.snapshot.row_count == 6 and len(run.snapshot.rows) == 6
    assert len(run.snapshot.rows_hash) == 64
    assert run.snapshot.lineage["annotators"] and run.snapshot.lineage["guideline_version"] == 1
    assert run.settings["lora"]["r"] == 4 and run.settings["max_steps"] == 2


def test_new_votes_do_not_change_a_queued_run(admin_client, tiny_base, django_capture_on_commit_callbacks):
    project = voted_compare_project(5)
    _launch(admin_client, project, tiny_base.pk, django_capture_on_commit_callbacks)
    run = TuningRun.objects.get()
    before = (run.snapshot.rows_hash, list(run.snapshot.rows))

    annotator = project.members.first()
    make_pair_vote(make_pair_task(project, 99), annotator, "a")

    run.snapshot.refresh_from_db()
    assert (run.snapshot.rows_hash, run.snapshot.rows) == before


def test_too_little_data_is_refused(admin_client, tiny_base, django_capture_on_commit_callbacks):
    project = voted_compare_project(2)

    response, callbacks = _launch(admin_client, project, tiny_base.pk, django_capture_on_commit_callbacks)

    assert response.status_code == 400
    assert "Too little data: 2 preference pair(s) are ready, and a DPO run needs at least 4" in response.content.decode()
    _nothing_queued(callbacks)


def test_kto_without_both_labels_is_refused(admin_client, tiny_base, django_capture_on_commit_callbacks):
    project = rated_project(up=6, down=0)

    response, callbacks = _launch(admin_client, project, tiny_base.pk, django_capture_on_commit_callbacks, method="kto")

    assert response.status_code == 400
    assert "KTO needs both good and bad examples: this project has 6 thumbs-up and 0 thumbs-down" in response.content.decode()
    _nothing_queued(callbacks)


def test_an_unknown_base_model_is_refused(admin_client, tiny_base, django_capture_on_commit_callbacks):
    project = voted_compare_project(6)

    response, callbacks = _launch(admin_client, project, 987654, django_capture_on_commit_callbacks)

    assert response.status_code == 400
    assert "unknown base model" in response.content.decode()
    _nothing_queued(callbacks)


def test_a_base_model_whose_folder_is_missing_is_refused(admin_client, tiny_base, django_capture_on_commit_callbacks):
    project = voted_compare_project(6)
    tiny_base.path = "/nowhere/at/all"
    tiny_base.save()

    response, callbacks = _launch(admin_client, project, tiny_base.pk, django_capture_on_commit_callbacks)

    assert response.status_code == 400
    assert "is not a model folder on this server" in response.content.decode()
    _nothing_queued(callbacks)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"learning_rate": "-0.001"}, "Learning rate must be a positive number"),
        ({"learning_rate": "5"}, "too high to train anything"),
        ({"beta": "0"}, "beta must be a positive number"),
        ({"per_device_batch_size": "0"}, "Batch size must be a positive integer"),
        ({"max_steps": "0"}, "max_steps must be a positive integer"),
        ({"max_length": "4"}, "max_length must be an integer of at least 16"),
        ({"validation_fraction": "0.9"}, "Validation fraction must be between 0 and 0.5"),
        ({"lora_r": "0"}, "LoRA"),
        ({"lora_target_modules": "lm_head"}, "lm_head"),
        ({"method": "kto", "loss_type": "ipo"}, "not available for KTO"),
        ({"desirable_weight": "2"}, "only applies to KTO"),
    ],
)
def test_impossible_settings_are_refused(admin_client, tiny_base, django_capture_on_commit_callbacks, changes, message):
    project = voted_compare_project(6)

    response, callbacks = _launch(admin_client, project, tiny_base.pk, django_capture_on_commit_callbacks, **changes)

    assert response.status_code == 400
    assert message in response.content.decode()
    _nothing_queued(callbacks)


def test_kto_with_a_batch_larger_than_the_data_is_refused(admin_client, tiny_base, django_capture_on_commit_callbacks):
    project = rated_project(up=3, down=2)

    response, callbacks = _launch(
        admin_client, project, tiny_base.pk, django_capture_on_commit_callbacks, method="kto", per_device_batch_size="8"
    )

    assert response.status_code == 400
    assert "KTO needs at least one full batch" in response.content.decode()
    _nothing_queued(callbacks)


def test_annotators_cannot_launch(annotator_client, tiny_base, django_capture_on_commit_callbacks):
    project = voted_compare_project(6)

    response, callbacks = _launch(annotator_client, project, tiny_base.pk, django_capture_on_commit_callbacks)

    assert response.status_code == 403
    _nothing_queued(callbacks)


def test_the_launch_page_shows_the_data_ready(admin_client, tiny_base):
    project = voted_compare_project(5)

    html = admin_client.get(f"/projects/{project.pk}/runs/new/").content.decode()

    assert "DPO: 5 rows" in html
    assert "tiny-random" in html


def test_the_launch_command_queues_a_run(tiny_base, django_capture_on_commit_callbacks):
    from io import StringIO

    from django.core.management import call_command

    project = voted_compare_project(6, name="Scripted")
    out = StringIO()

    with django_capture_on_commit_callbacks() as callbacks:
        call_command("launch_run", "--project", "Scripted", "--method", "dpo", "--base-model", "tiny-random",
                     "--set", "max_steps=3", "--set", 'lora={"r": 4}', stdout=out)

    run = TuningRun.objects.get(project=project)
    assert f"Queued run {run.pk}" in out.getvalue()
    assert run.settings["max_steps"] == 3 and run.settings["lora"]["r"] == 4
    assert len(callbacks) == 1


def test_the_launch_command_explains_a_refusal(tiny_base):
    from django.core.management import CommandError, call_command

    voted_compare_project(1, name="Thin")

    with pytest.raises(CommandError, match="Too little data"):
        call_command("launch_run", "--project", "Thin", "--method", "dpo", "--base-model", "tiny-random")
    assert not TuningRun.objects.exists()
