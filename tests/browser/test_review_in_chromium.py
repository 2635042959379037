"""In real Chromium: an admin opens a run's side-by-side review and creates blind battles; an annotator votes
on them in the compare screen, which never says which side is which model before (or after) the vote. The review
page leads with the run's validation figures and the settings of the matched outputs it compares."""
from __future__ import annotations

import re

import pytest

from labeling.models import PairVote
from tests.factories import PASSWORD, AdminFactory, UserFactory
from tests.review.conftest import add_output, review_setup
from training.models import TuningRun
from training.review.results import battle_results

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _log_in(page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")


def test_an_admin_reviews_side_by_side_and_an_annotator_votes_blind(browser, page, live_server):
    setup = review_setup(prompts=3, name="Blind review in browser")
    secrets = [setup.tuned.name, setup.base.name, "test-base", "tuned", "(base)"]
    admin = AdminFactory(username="review-admin")
    annotator = UserFactory(username="blind-voter")
    setup.project.members.add(annotator)

    _log_in(page, live_server, admin.username)
    page.goto(f"{live_server.url}/runs/{setup.run.pk}/review/")
    table = page.locator("[data-testid=side-by-side]")
    assert setup.tuned.name in table.text_content() and "Tuned answer 2, in more words." in table.text_content()
    assert page.locator("[data-testid=side-by-side] tr[data-prompt]").count() == 3
    page.fill("input[name=q]", "question 1")
    page.click("text=Filter")
    assert page.locator("[data-testid=side-by-side] tr[data-prompt]").count() == 1
    page.click("[data-testid=create-battles]")
    page.wait_for_url(re.compile(rf"{re.escape(live_server.url)}/runs/{setup.run.pk}/battles/\?settings=\w+$"))
    assert "Created 3 blind battles" in page.content()

    context = browser.new_context(viewport={"width": 1400, "height": 900})
    voter = context.new_page()
    voter.set_default_timeout(15_000)
    try:
        _log_in(voter, live_server, annotator.username)
        voter.goto(f"{live_server.url}/projects/{setup.project.pk}/")
        voter.wait_for_selector("body[data-keys-ready]")
        shown_left = {}
        for _ in range(3):
            card = voter.locator("#card").inner_html()
            page_html = voter.content()
            for secret in secrets:
                assert secret not in card and secret not in page_html, f"the compare screen revealed {secret!r}"
            task_id = voter.locator("#card form.vote-form").get_attribute("data-task")
            shown_left[int(task_id)] = voter.locator("[data-testid=left-text]").inner_text()
            voter.keyboard.press("a")
            voter.wait_for_function(
                "prev => { const f = document.querySelector('#card form.vote-form');"
                " return document.querySelector('[data-testid=done]') || (f && f.dataset.task !== prev); }",
                arg=task_id,
            )
        voter.wait_for_selector("[data-testid=done]")
        for secret in secrets:
            assert secret not in voter.locator("#card").inner_html()
    finally:
        context.close()

    votes = list(PairVote.objects.filter(annotator=annotator).select_related("task__completion_a", "task__completion_b"))
    assert len(votes) == 3 and all(v.picked_side == "left" for v in votes)
    tuned_wins = 0
    for vote in votes:
        left = vote.task.completion_a if vote.a_side == "left" else vote.task.completion_b
        assert left.text == shown_left[vote.task_id]
        tuned_wins += left.model_version_id == setup.tuned.pk
    results = battle_results(project=setup.project, tuned=setup.tuned, base=setup.base)
    assert (results.wins, results.losses) == (tuned_wins, 3 - tuned_wins)

    page.goto(f"{live_server.url}/runs/{setup.run.pk}/battles/")
    assert page.locator("[data-testid=win-tie-loss]").inner_text() == f"{tuned_wins} / 0 / {3 - tuned_wins}"


def test_the_review_headline_shows_validation_accuracy_and_the_matched_settings(page, live_server):
    setup = review_setup(prompts=2, with_outputs=False, name="Headline in browser")
    TuningRun.objects.filter(pk=setup.run.pk).update(outcome={
        "kept_step": 120, "best_metric": 0.93, "validation_rows": 20, "train_rows": 180,
        "validation": {"rewards/accuracies": 0.93, "rewards/margins": 0.41, "loss": 0.52},
        "final_train": {"rewards/accuracies": 1.0, "loss": 0.0123},
    })
    warm = {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 256, "seed": 0}
    for prompt in setup.heldout:
        for k in range(3):
            add_output(prompt, setup.base, f"Base says {k}.", {**warm, "sample": k})
            add_output(prompt, setup.tuned, f"Tuned says {k}, at more length.", {**warm, "sample": k})
    # an older comparison, made differently: not what the headline names
    add_output(setup.heldout[0], setup.tuned, "Greedy tuned.", {**warm, "temperature": 0.0, "sample": 0})
    _log_in(page, live_server, AdminFactory(username="headline-admin").username)
    page.goto(f"{live_server.url}/runs/{setup.run.pk}/review/")

    headline = page.locator("[data-testid=headline]")
    assert headline.is_visible()
    validation = page.locator("[data-testid=validation-headline]").inner_text()
    assert "validation implicit-reward accuracy 0.93 on 20 pairs (kept checkpoint, step 120)" in validation
    settings = page.locator("[data-testid=comparison-settings]").inner_text()
    assert "temperature 0.7, top-p 0.9, up to 256 tokens, seeds 0–2 (3 samples per prompt)" in settings
    assert "6 matched pairs on 2 held-out prompts" in settings
    # The headline comes first, the last training batch nowhere.
    box = headline.bounding_box()
    assert box["y"] < page.locator("[data-testid=side-by-side]").bounding_box()["y"]
    assert "0.0123" not in page.locator("main").inner_text()
    assert page.locator("[data-testid=side-by-side] tr[data-prompt]").count() == 6
