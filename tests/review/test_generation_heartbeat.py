"""Generation jobs have a heartbeat like runs: touched while the job generates, and a job whose heartbeat is
stale (its worker killed, frozen or cut off) is failed by the periodic reaper instead of staying running."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.factories import ProjectFactory
from tests.review.conftest import review_setup
from training.models import GenerationJob
from training.review import generation as review_generation

STALE = timedelta(seconds=120)


def _job(project, **fields) -> GenerationJob:
    defaults = {"prompt_ids": [], "settings": {}, "purpose": "candidates", "prompt_count": 1}
    return GenerationJob.objects.create(project=project, **{**defaults, **fields})


@pytest.mark.django_db
def test_a_running_job_with_a_stale_heartbeat_is_failed_and_a_live_one_is_left_alone():
    project = ProjectFactory()
    now = timezone.now()
    stale = _job(project, status="running", worker="gone@host", heartbeat_at=now - timedelta(minutes=5))
    silent = _job(project, status="running", worker="old@host", heartbeat_at=None)
    live = _job(project, status="running", worker="busy@host", heartbeat_at=now - timedelta(seconds=5))
    queued = _job(project, status="queued")

    reaped = review_generation.generation_jobs_reap(older_than=STALE)

    assert sorted(reaped) == sorted([stale.pk, silent.pk])
    statuses = dict(GenerationJob.objects.values_list("pk", "status"))
    assert (statuses[stale.pk], statuses[silent.pk], statuses[live.pk], statuses[queued.pk]) == (
        "failed", "failed", "running", "queued"
    )
    stale.refresh_from_db()
    assert stale.error.startswith("The worker running this job stopped before it finished (it was killed, frozen")
    assert stale.finished_at is not None


@pytest.mark.django_db
def test_the_periodic_reaper_fails_stale_generation_jobs_too():
    from workers.tasks import runs_reap_stale

    job = _job(ProjectFactory(), status="running", heartbeat_at=timezone.now() - timedelta(hours=1))

    runs_reap_stale()

    job.refresh_from_db()
    assert job.status == "failed"


@pytest.mark.django_db
def test_a_claim_starts_the_heartbeat_and_the_reaper_needs_to_be_told_what_is_stale():
    job = _job(ProjectFactory(), status="queued")

    assert review_generation.generation_job_claim(job_id=job.pk, worker="w@host")

    job.refresh_from_db()
    assert job.heartbeat_at == job.started_at is not None
    with pytest.raises(ValueError, match="Say which jobs are stale"):
        review_generation.generation_jobs_reap()


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_moves_while_a_job_generates(tiny_model_dir, monkeypatch):
    monkeypatch.setattr("training.heartbeat.HEARTBEAT_SECONDS", 0.05)
    s = review_setup(prompts=6, base_path=str(tiny_model_dir), with_outputs=False)
    job = review_generation.generation_job_create(
        project=s.project, versions=[s.base], purpose="candidates", split="heldout", enqueue=False,
        settings_data={"n": 2, "max_new_tokens": 48, "temperature": 0.7, "top_p": 0.9, "seed": 0},
    )
    assert review_generation.generation_job_claim(job_id=job.pk, worker="w@host")
    claimed_at = GenerationJob.objects.get(pk=job.pk).heartbeat_at

    job = review_generation.generation_job_execute(job_id=job.pk, batch_size=2)

    assert job.status == "succeeded", job.error
    assert job.heartbeat_at > claimed_at, "the side thread touched it while the batches ran"
