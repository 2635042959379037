"""The newcomer's path in real Chromium, on the shipped demo history and a real Celery worker: the home page's
walkthrough leads to the launch form, Launch with its defaults, the run succeeds and its page gives a verdict, the
review generates base and tuned answers on the held-out prompts and shows its figures, and the walkthrough then
says what is done. The tiny random-weight model stands in for the bundled one (the same tokenizer and
architecture), and two Advanced fields are changed so that it trains in a minute (4 steps, rows cut at 64 tokens:
the demo's answers run to 384 tokens, and the tiny model's step is almost all the log-probability head over the
full vocabulary), and the review writes one sample a prompt of at most 24 tokens. A real `make run` with the bundled model and every default is timed by bench/newcomer_path.py."""
from __future__ import annotations

import re

import pytest
from django.core.management import call_command

from labeling.management.commands.load_demo import DEFAULT_PASSWORD, HISTORY_NAME
from labeling.models import Project
from tests.worker_process import celery_worker, purge_queues, wait_for
from training.models import BaseModel, GenerationJob, TuningRun

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.postgres, pytest.mark.django_db(transaction=True),
              pytest.mark.timeout(600)]


def test_a_newcomer_launches_with_the_defaults_on_the_demo_history_and_reviews_the_run(page, live_server, tiny_model_dir):
    BaseModel.objects.create(name="SmolLM2-135M-Instruct", path=str(tiny_model_dir))
    call_command("load_demo", stdout=open("/dev/null", "w"))  # noqa: PTH123, SIM115
    project = Project.objects.get(name=HISTORY_NAME)
    purge_queues("default", "gpu")
    with celery_worker("newcomer"):
        page.goto(f"{live_server.url}/accounts/login/")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", DEFAULT_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.url}/")

        walkthrough = page.locator("[data-testid=walkthrough]")
        assert HISTORY_NAME in walkthrough.locator("h2").inner_text()
        assert page.locator("[data-testid=loop-step-1]").get_attribute("data-state") == "done"
        page.locator("[data-testid=loop-step-2] a.button").click()
        page.wait_for_url(f"{live_server.url}/projects/{project.pk}/runs/new/")
        # Enough judgements: the form says how the rows split and what the validation share can resolve, no warning.
        assert page.locator("[data-testid=launch-validation]").is_visible()
        assert page.locator("[data-testid=launch-data-warning]").count() == 0
        page.click("[data-testid=advanced] summary")
        page.fill("input[name=max_steps]", "4")
        page.fill("input[name=max_length]", "64")
        page.click("button[type=submit]:has-text('Launch')")
        page.wait_for_url(re.compile(rf"{re.escape(live_server.url)}/runs/\d+/$"))

        run = TuningRun.objects.get(project=project)
        assert run.train_rows + run.validation_rows >= 100
        wait_for(lambda: TuningRun.objects.filter(pk=run.pk, status__in=["succeeded", "failed", "cancelled"]).exists(),
                 timeout=300, what="the demo run to finish")
        page.reload()
        assert page.locator("[data-testid=run-status]").inner_text() == "Succeeded", run.error
        assert page.locator("[data-testid=run-verdict]").is_visible()
        assert "Measured on" in page.locator("[data-testid=measured-on]").inner_text()

        page.goto(f"{live_server.url}/runs/{run.pk}/review/")
        # The review's own defaults, but a short token limit (the random-weight model never ends an answer) and one
        # sample a prompt.
        page.fill("input[name=max_new_tokens]", "24")
        page.fill("input[name=n]", "1")
        page.click("[data-testid=generate]")
        job = GenerationJob.objects.filter(run=run, purpose="review").latest("pk")
        wait_for(lambda: GenerationJob.objects.filter(pk=job.pk, status__in=["succeeded", "failed", "cancelled"]).exists(),
                 timeout=300, what="the review outputs")
        job.refresh_from_db()
        assert job.status == "succeeded", job.error
        assert job.prompt_count == project.prompts.filter(split="heldout").count()
        page.goto(f"{live_server.url}/runs/{run.pk}/review/")
        headline = page.locator("[data-testid=headline]")
        assert "Training:" in headline.inner_text()
        assert re.search(r"% of \d+ matched outputs are identical", page.locator("[data-testid=movement]").inner_text())
        assert re.search(r"cut off at 24 tokens: \d+ of \d+ tuned outputs", page.locator("[data-testid=cut-off]").inner_text())
        assert page.locator("[data-testid=side-by-side] tr[data-prompt]").count() >= 20

        page.goto(f"{live_server.url}/")
        states = [page.locator(f"[data-testid=loop-step-{n}]").get_attribute("data-state") for n in range(1, 5)]
        assert states == ["done", "done", "done", "next"]
