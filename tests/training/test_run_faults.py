"""A run cancelled from its page, and a worker killed mid-run: both end in a clear state, and the killed run
resumes from its last checkpoint when retried. Real worker processes, Redis, PostgreSQL, a tiny model."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.factories import PASSWORD, AdminFactory, ProjectFactory, make_run
from tests.training.conftest import voted_compare_project
from tests.worker_process import celery_worker, kill_worker, purge_queues, wait_for
from training import services
from training.models import TuningRun
from training.trainer.core import latest_checkpoint

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.worker,
    pytest.mark.postgres,
    pytest.mark.timeout(480),
]

LONG = {
    "max_steps": 400,
    "per_device_batch_size": 2,
    "max_length": 64,
    "validation_fraction": 0.0,
    "learning_rate": 1e-3,
    "save_steps": 2,
    "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
}


@pytest.fixture
def admin(client):
    user = AdminFactory()
    assert client.login(username=user.username, password=PASSWORD)
    return user


def _launch(project, base, admin, **settings) -> TuningRun:
    purge_queues("default", "gpu")
    return services.run_launch(
        project=project, base_model_id=base.pk, method="dpo", settings_data={**LONG, **settings}, created_by=admin
    )


def _status(run_id: int) -> str:
    return TuningRun.objects.values_list("status", flat=True).get(pk=run_id)


def test_cancel_from_the_run_page_stops_at_the_next_step_and_frees_the_worker(client, admin, tiny_base):
    project = voted_compare_project(8, name="Cancel me")
    run = _launch(project, tiny_base, admin)

    with celery_worker("cancel"):
        wait_for(lambda: TuningRun.objects.filter(pk=run.pk, step__gte=2).exists(), timeout=180, what="training to start")
        response = client.post(f"/runs/{run.pk}/cancel/")
        wait_for(lambda: _status(run.pk) == "cancelled", timeout=120, what="the run to stop")
        follow_up = _launch(project, tiny_base, admin, max_steps=2)
        wait_for(lambda: _status(follow_up.pk) == "succeeded", timeout=180, what="the freed worker to train the next run")

    run.refresh_from_db()
    assert response.status_code == 302
    assert run.step < 400 and run.model_version is None
    assert run.error == "Cancelled by an admin."
    assert "Cancelled" in client.get(f"/runs/{run.pk}/").content.decode()


def test_a_queued_run_is_cancelled_at_once_without_a_worker(client, admin):
    run = make_run(ProjectFactory(), status="queued")

    client.post(f"/runs/{run.pk}/cancel/")

    run.refresh_from_db()
    assert (run.status, run.error) == ("cancelled", "Cancelled before it started.")


def test_a_worker_killed_mid_run_leaves_the_run_failed_and_a_retry_resumes(client, admin, tiny_base):
    project = voted_compare_project(8, name="Kill the worker")
    run = _launch(project, tiny_base, admin, max_steps=40)

    with celery_worker("doomed") as worker:
        wait_for(
            lambda: TuningRun.objects.filter(pk=run.pk, step__gte=3).exists() and latest_checkpoint(run.output_dir),
            timeout=180, interval=0.1, what="a checkpoint",
        )
        kill_worker(worker)
    assert _status(run.pk) == "running", "nothing has noticed yet: the worker died without a word"

    # The same worker coming back knows it is training nothing, so the run it held died with it.
    with celery_worker("doomed"):
        wait_for(lambda: _status(run.pk) == "failed", timeout=60, what="the restarted worker to fail the orphaned run")
        run.refresh_from_db()
        assert "worker training this run stopped" in run.error
        assert "worker training this run stopped" in client.get(f"/runs/{run.pk}/").content.decode()

        client.post(f"/runs/{run.pk}/retry/")
        wait_for(lambda: _status(run.pk) in ("succeeded", "failed"), timeout=240, what="the retried run to finish")

    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert run.attempt == 2
    assert "checkpoint-" in run.resumed_from
    assert (run.step, run.model_version is not None) == (40, True)


def test_a_silent_worker_is_reaped_by_its_stale_heartbeat():
    run = make_run(ProjectFactory(), status="running")
    TuningRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=10), worker="gone@host")
    fresh = make_run(ProjectFactory(), status="running")
    TuningRun.objects.filter(pk=fresh.pk).update(heartbeat_at=timezone.now(), worker="alive@host")

    reaped = services.runs_reap_stale(older_than=timedelta(minutes=2))

    assert reaped == [run.pk]
    assert _status(run.pk) == "failed" and _status(fresh.pk) == "running"


def test_a_redelivered_message_for_a_claimed_run_does_nothing():
    run = make_run(ProjectFactory(), status="queued")

    assert services.run_claim(run_id=run.pk, worker="first@host") is True
    assert services.run_claim(run_id=run.pk, worker="second@host") is False
    run.refresh_from_db()
    assert (run.status, run.worker, run.attempt) == ("running", "first@host", 1)


def test_only_failed_or_cancelled_runs_can_be_retried(client, admin):
    run = make_run(ProjectFactory(), status="succeeded")

    response = client.post(f"/runs/{run.pk}/retry/", follow=True)

    assert "Only a failed or cancelled run can be retried." in response.content.decode()
    assert _status(run.pk) == "succeeded"
