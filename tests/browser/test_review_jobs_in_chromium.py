"""A review job followed in real Chromium on a real gpu worker (issue 26): the review page shows the job's done/total
and a time left as it goes, without a reload; Generate pressed again while it runs is told so and queues nothing;
Cancel stops it within one batch and comes back to the review page. The tiny random-weight model and its adapter
write the outputs (their answers rarely end, so every batch runs to the token limit)."""
from __future__ import annotations

import re

import pytest

from labeling.models import Completion
from tests.browser.pages import log_in
from tests.factories import AdminFactory
from tests.review.conftest import review_setup, tiny_adapter_dir  # noqa: F401 - a fixture
from tests.worker_process import celery_worker, purge_queues, wait_for
from training.models import GenerationJob

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.postgres, pytest.mark.django_db(transaction=True),
              pytest.mark.timeout(600)]

BATCH = 4


def test_a_review_job_shows_progress_refuses_a_second_generate_and_cancels_within_a_batch(
    page, live_server, tiny_model_dir, tiny_adapter_dir,  # noqa: F811 - the fixture imported above
):
    setup = review_setup(prompts=30, base_path=str(tiny_model_dir), adapter_path=str(tiny_adapter_dir), with_outputs=False)
    admin = AdminFactory(username="review-jobs-admin")
    purge_queues("gpu")
    log_in(page, live_server.url, admin.username)
    review = f"{live_server.url}/runs/{setup.run.pk}/review/"
    page.goto(review)
    page.fill("input[name=max_new_tokens]", "96")  # the form's other defaults as they are
    page.click("[data-testid=generate]")
    page.wait_for_url(review)
    job = GenerationJob.objects.get(run=setup.run)
    outputs = Completion.objects.filter(prompt__project=setup.project, source="generated")

    with celery_worker("review-jobs", queues="gpu", extra_env={"PREFTUNE_GENERATION_BATCH_SIZE": str(BATCH)}):
        # The table follows the job on its own (htmx), with done/total and the time left at its pace
        row = page.locator(f"#review-jobs tr[data-job='{job.pk}']")
        row.locator("[data-testid=job-eta]", has_text=re.compile(r"left$")).wait_for(timeout=120_000)
        job.refresh_from_db()
        assert re.search(rf"\d+% · \d+ of {job.completions_total}", row.locator("[data-testid=job-progress]").inner_text())

        # Generate again while it runs: told, nothing queued
        page.click("[data-testid=generate]")
        page.wait_for_url(review)
        assert f"Review job {job.pk} is still running for this run" in page.locator("ul.messages").inner_text()
        assert GenerationJob.objects.count() == 1

        # Cancel: back on the review page, and the worker stops within one batch
        stored_at_click = outputs.count()
        page.locator(f"#review-jobs tr[data-job='{job.pk}'] [data-testid=job-cancel]").click()
        page.wait_for_url(review)
        assert "it stops once the batch it is writing is stored" in page.locator("ul.messages").inner_text()
        wait_for(lambda: GenerationJob.objects.filter(pk=job.pk, finished_at__isnull=False).exists(), timeout=120,
                 what="the worker to stop the job")

    job.refresh_from_db()
    stored = outputs.count()
    assert job.status == "cancelled"
    assert stored_at_click <= stored <= stored_at_click + BATCH, (stored_at_click, stored)
    assert stored < job.completions_total and job.completions_created == stored
    page.goto(review)
    assert page.locator(f"#review-jobs tr[data-job='{job.pk}'] [data-testid=job-cancel]").count() == 0
    assert page.locator("#review-jobs").get_attribute("data-active") == "false"
