"""The playground in real Chromium on a real gpu worker (issue 25): an admin types a question, the base and a trained
version answer it side by side, both columns fill while they are written (seen as at least two partial texts each
before the end), then the question is kept as a held-out prompt and the pair sent to a blind battle. The tiny
random-weight model and its adapter answer (they rarely stop, so each answer runs to the token limit)."""
from __future__ import annotations

import time

import pytest

from labeling.models import PairTask, Prompt
from tests.browser.pages import log_in
from tests.factories import AdminFactory
from tests.review.conftest import review_setup, tiny_adapter_dir  # noqa: F401 - a fixture
from tests.worker_process import celery_worker, purge_queues, wait_for
from training.models import PlaygroundRequest

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.postgres, pytest.mark.django_db(transaction=True),
              pytest.mark.timeout(600)]


def test_an_admin_asks_two_versions_and_watches_both_answers_being_written(
    page, live_server, tiny_model_dir, tiny_adapter_dir,  # noqa: F811 - the fixture imported above
):
    s = review_setup(prompts=1, base_path=str(tiny_model_dir), adapter_path=str(tiny_adapter_dir), with_outputs=False,
                     name="Playground in Chromium")
    admin = AdminFactory(username="playground-admin")
    purge_queues("gpu")
    log_in(page, live_server.url, admin.username)
    page.goto(f"{live_server.url}/projects/{s.project.pk}/dashboard/")
    page.click("[data-testid=playground-link]")

    with celery_worker("playground", queues="gpu"):
        page.fill("[data-testid=playground-prompt]", "Name three things that float.")
        page.fill("input[name=max_new_tokens]", "600")
        checked = page.locator("input[name=versions]:checked")
        assert checked.count() == 2, "the base and the newest tuned version are ticked"
        page.click("[data-testid=ask]")
        page.wait_for_url(lambda url: "/playground/" in url and "/projects/" not in url)

        # Every text each column showed before it was done
        partial: list[set[str]] = [set(), set()]
        deadline = time.monotonic() + 240
        while page.locator("[data-testid=playground-answers]").get_attribute("data-status") in ("queued", "running"):
            assert time.monotonic() < deadline, "the answers took more than 4 minutes"
            for n in range(2):
                column = page.locator("[data-testid=playground-answer]").nth(n)
                text = column.locator("[data-testid=answer-text]").inner_text()
                if text and column.get_attribute("data-done") == "false":
                    partial[n].add(text)
            page.wait_for_timeout(100)

        question = PlaygroundRequest.objects.get()
        assert question.status == "succeeded", question.error
        finals = [a.text for a in question.answers.order_by("position")]
        for n in range(2):
            assert len(partial[n]) >= 2, f"column {n + 1} showed {len(partial[n])} partial texts"
            assert all(finals[n].startswith(text) for text in partial[n]), "each partial text is the start of the answer"
        figures = page.locator("[data-testid=answer-figures]").first.inner_text()
        assert "tokens/s" in figures and page.locator("[data-testid=answer-cut-off]").count() == 2

        # Leaving the page while answers are written stops them
        page.fill("[data-testid=playground-prompt]", "Tell me a long story.")
        page.fill("input[name=max_new_tokens]", "2048")
        page.click("[data-testid=ask]")
        page.wait_for_url(lambda url: url.rstrip("/").endswith(str(question.pk + 1)))
        leaving = PlaygroundRequest.objects.get(pk=question.pk + 1)
        page.locator("[data-testid=answer-text]").first.filter(has_text=" ").wait_for(timeout=60_000)
        page.goto(f"{live_server.url}/projects/{s.project.pk}/dashboard/")
        wait_for(lambda: PlaygroundRequest.objects.get(pk=leaving.pk).status == "cancelled", timeout=20,
                 what="the question to stop once its page was left")
        page.go_back()

    page.goto(f"{live_server.url}/playground/{question.pk}/")
    page.click("[data-testid=keep-heldout]")
    assert "Kept as a held out prompt" in page.locator("ul.messages").inner_text()
    page.click("[data-testid=send-to-battle]")
    assert "Sent to a blind battle" in page.locator("ul.messages").inner_text()
    prompt = Prompt.objects.get(external_id=f"playground-{question.pk}")
    assert prompt.split == "heldout"
    [task] = PairTask.objects.filter(purpose="review", prompt=prompt)
    assert {task.completion_a.text, task.completion_b.text} == set(finals)
