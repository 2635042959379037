"""Cancel on a real gpu worker: a candidate job started from the form's defaults stops within one batch of the
click, keeps (and pairs) what it wrote, and the worker takes the next job. Real Celery worker, Redis, PostgreSQL,
the tiny model (its random weights rarely end an answer, so every batch runs to the token limit)."""
from __future__ import annotations

import pytest

from labeling.models import Completion, PairTask
from tests.factories import PASSWORD, AdminFactory, ProjectFactory, PromptFactory
from tests.html_forms import form_defaults
from tests.worker_process import celery_worker, kill_worker, purge_queues, wait_for
from training.models import BaseModel, GenerationJob

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.worker,
    pytest.mark.postgres,
    pytest.mark.timeout(600),
]

BATCH = 4


def _candidates_page(client, tiny_model_dir, *, name: str, prompts: int) -> tuple:  # noqa: ANN001
    """A logged-in admin on a compare project of ``prompts`` questions with the tiny base model; the candidates
    page's URL and its form's defaults."""
    admin = AdminFactory()
    assert client.login(username=admin.username, password=PASSWORD)
    project = ProjectFactory(name=name)
    for n in range(prompts):
        PromptFactory(project=project, messages=[{"role": "user", "content": f"Question number {n}?"}])
    BaseModel.objects.create(name="tiny", path=str(tiny_model_dir))
    purge_queues("gpu")
    page = f"/projects/{project.pk}/candidates/"
    return project, page, form_defaults(client.get(page).content.decode(), "candidates")


def test_cancel_stops_a_candidate_job_within_one_batch_and_frees_the_worker(client, tiny_model_dir):
    project, page, defaults = _candidates_page(client, tiny_model_dir, name="Cancel candidates", prompts=60)
    assert client.post(page, defaults).status_code == 302
    job = GenerationJob.objects.get(project=project)

    with celery_worker("cancel-candidates", queues="gpu", extra_env={"PREFTUNE_GENERATION_BATCH_SIZE": str(BATCH)}):
        wait_for(lambda: Completion.objects.filter(prompt__project=project).count() >= BATCH, timeout=180,
                 interval=0.05, what="the first batch")
        stored_at_click = Completion.objects.filter(prompt__project=project).count()
        response = client.post(f"/generation-jobs/{job.pk}/cancel/", follow=True)
        wait_for(lambda: GenerationJob.objects.filter(pk=job.pk, finished_at__isnull=False).exists(), timeout=120,
                 what="the worker to stop the job")
        job.refresh_from_db()
        stored = Completion.objects.filter(prompt__project=project).count()

        # The same worker is free for the next job (short answers, so it ends quickly).
        assert client.post(page, {**defaults, "max_new_tokens": "4"}).status_code == 302
        follow_up = GenerationJob.objects.filter(project=project).exclude(pk=job.pk).get()
        wait_for(lambda: GenerationJob.objects.filter(pk=follow_up.pk, status__in=["succeeded", "failed"]).exists(),
                 timeout=180, what="the next job")

    assert f"Job {job.pk} cancelled: it stops once the batch it is writing is stored." in response.content.decode()
    assert (job.status, job.error) == ("cancelled", "Cancelled by an admin.")
    assert stored_at_click <= stored <= stored_at_click + BATCH, (stored_at_click, stored)
    assert stored < job.completions_total == 180, "it stopped long before the end"
    assert job.completions_created == stored, "every stored answer is counted once"
    assert job.notes[-1] == (
        f"Cancelled after {stored} of 180 answers; what was written stays, and a new job over the same prompts "
        "reuses it."
    )
    assert PairTask.objects.filter(project=project).count() == job.tasks_created
    assert GenerationJob.objects.get(pk=follow_up.pk).status == "succeeded"
    html = client.get(f"/projects/{project.pk}/candidates/").content.decode()
    assert "Cancelled" in html and f'action="/generation-jobs/{job.pk}/cancel/"' not in html


def test_a_job_whose_worker_is_killed_is_failed_by_its_restart_and_a_new_job_writes_only_what_was_missing(client, tiny_model_dir):
    project, page, defaults = _candidates_page(client, tiny_model_dir, name="Killed mid-job", prompts=16)
    settings = {**defaults, "max_new_tokens": "48"}
    assert client.post(page, settings).status_code == 302
    job = GenerationJob.objects.get(project=project)
    env = {"PREFTUNE_GENERATION_BATCH_SIZE": str(BATCH)}

    # Given a worker killed (kill -9) after its first batch was stored
    with celery_worker("killed-mid-job", queues="gpu", extra_env=env) as worker:
        wait_for(lambda: Completion.objects.filter(prompt__project=project).count() >= BATCH, timeout=180,
                 interval=0.05, what="the first batch")
        kill_worker(worker)
    stored = Completion.objects.filter(prompt__project=project).count()
    assert GenerationJob.objects.get(pk=job.pk).status == "running", "nothing has noticed yet"

    # When the worker comes back, and the admin generates again with the same settings
    with celery_worker("killed-mid-job", queues="gpu", extra_env=env):
        wait_for(lambda: GenerationJob.objects.get(pk=job.pk).status == "failed", timeout=60,
                 what="the restarted worker to fail the job it held")
        assert client.post(page, settings).status_code == 302
        again = GenerationJob.objects.filter(project=project).exclude(pk=job.pk).get()
        wait_for(lambda: GenerationJob.objects.filter(pk=again.pk, status__in=["succeeded", "failed"]).exists(),
                 timeout=300, what="the new job")

    # Then the new job skipped what was stored and wrote only the rest: every answer once
    job.refresh_from_db()
    again.refresh_from_db()
    assert "The worker running this job stopped before it finished" in job.error
    assert again.status == "succeeded", again.error
    assert (again.completions_skipped, again.completions_created) == (stored, 48 - stored)
    assert Completion.objects.filter(prompt__project=project).count() == 48
