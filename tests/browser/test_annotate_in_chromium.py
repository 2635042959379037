"""An annotator works both queues in real Chromium with the keyboard; the votes land in the database."""
from __future__ import annotations

import pytest

from labeling.models import PairVote, Rating
from tests.factories import PASSWORD, ProjectFactory, UserFactory, make_pair_task, make_rate_task

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _log_in(page, live_server, username):
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")


def _open_queue(page, url: str | None = None) -> None:
    """Open a project's queue (or wait for the one just navigated to) until its shortcuts are bound."""
    if url:
        page.goto(url)
    page.wait_for_selector("body[data-keys-ready]")


def _wait_for_next_card(page, previous_task: str) -> None:
    page.wait_for_function(
        "prev => { const f = document.querySelector('#card form.vote-form');"
        " const done = document.querySelector('[data-testid=done]');"
        " return done || (f && f.dataset.task !== prev); }",
        arg=previous_task,
    )


def test_an_annotator_votes_with_the_keyboard_and_rates_with_thumbs(page, live_server):
    annotator = UserFactory(username="kb-annotator")
    compare = ProjectFactory(name="Compare in browser", overlap=1)
    rate = ProjectFactory(name="Rate in browser", mode="rate", overlap=1)
    compare.members.add(annotator)
    rate.members.add(annotator)
    tasks = [make_pair_task(compare, n) for n in range(4)]
    make_rate_task(rate, 1)
    make_rate_task(rate, 2)
    make_rate_task(rate, 3)

    _log_in(page, live_server, annotator.username)
    page.click("text=Compare in browser")
    _open_queue(page)
    pressed = {}
    for key, pick in (("a", "left"), ("ArrowRight", "right"), ("t", "tie"), ("x", "both_bad")):
        form = page.locator("#card form.vote-form")
        task_id = form.get_attribute("data-task")
        left_text = page.locator("[data-testid=left-text]").inner_text()
        if key == "a":
            page.keyboard.press("2")  # strength: clearly
        page.keyboard.press(key)
        _wait_for_next_card(page, task_id)
        pressed[int(task_id)] = (pick, left_text)
    page.wait_for_selector("[data-testid=done]")
    assert page.locator("[data-testid=my-votes]").inner_text() == "4"

    _open_queue(page, f"{live_server.url}/projects/{rate.pk}/")
    for action in ("u", "ArrowDown"):
        task_id = page.locator("#card form.vote-form").get_attribute("data-task")
        page.keyboard.press(action)
        _wait_for_next_card(page, task_id)
    page.click("button[data-key=up]")
    page.wait_for_selector("[data-testid=done]")

    votes = {v.task_id: v for v in PairVote.objects.filter(annotator=annotator)}
    assert set(votes) == {t.pk for t in tasks}
    for task in tasks:
        vote = votes[task.pk]
        pick, left_text = pressed[task.pk]
        shown_left = task.completion_a if vote.a_side == "left" else task.completion_b
        assert shown_left.text == left_text, "the recorded side matches what the browser showed"
        assert vote.a_side == task.a_side_for(annotator.pk)
        if pick in ("left", "right"):
            assert vote.picked_side == pick
        else:
            assert vote.choice == pick
        assert vote.time_spent_ms > 0
    assert [v.strength for v in votes.values() if v.picked_side == "left"] == [2]
    assert sorted(Rating.objects.filter(annotator=annotator).values_list("value", flat=True)) == ["down", "up", "up"]


def test_double_clicking_a_vote_button_stores_one_vote(page, live_server):
    annotator = UserFactory(username="double-clicker")
    project = ProjectFactory(name="Double click", overlap=1)
    project.members.add(annotator)
    make_pair_task(project, 1)
    make_pair_task(project, 2)

    _log_in(page, live_server, annotator.username)
    _open_queue(page, f"{live_server.url}/projects/{project.pk}/")
    task_id = page.locator("#card form.vote-form").get_attribute("data-task")
    page.dblclick("button[data-key=left]")
    _wait_for_next_card(page, task_id)

    assert PairVote.objects.filter(annotator=annotator).count() == 1


def test_an_edited_answer_is_stored_with_the_vote(page, live_server):
    annotator = UserFactory(username="editor")
    project = ProjectFactory(name="Edit in browser", overlap=1)
    project.members.add(annotator)
    task = make_pair_task(project, 1)

    _log_in(page, live_server, annotator.username)
    _open_queue(page, f"{live_server.url}/projects/{project.pk}/")
    right_text = page.locator("[data-testid=right-text]").inner_text()
    page.keyboard.press("e")
    page.click("button[data-fill=right]")
    page.locator("textarea[name=edited_text]").press("End")
    page.keyboard.type(" (checked and expanded)")
    page.keyboard.press("Escape")
    page.keyboard.press("b")
    page.wait_for_selector("[data-testid=done]")

    vote = PairVote.objects.get(task=task)
    assert vote.picked_side == "right"
    assert vote.edited_text == right_text + " (checked and expanded)"


def test_a_cut_off_answer_is_marked_and_the_thumbs_are_drawn_without_an_emoji_font(page, live_server):
    annotator = UserFactory(username="cut-off-reader")
    compare = ProjectFactory(name="Cut off in browser", overlap=1)
    rate = ProjectFactory(name="Thumbs in browser", mode="rate", overlap=1)
    compare.members.add(annotator)
    rate.members.add(annotator)
    task = make_pair_task(compare, 1)
    task.completion_b.finish_reason = "length"
    task.completion_b.save()
    rated = make_rate_task(rate, 1)
    rated.completion.finish_reason = "length"
    rated.completion.save()

    _log_in(page, live_server, annotator.username)
    _open_queue(page, f"{live_server.url}/projects/{compare.pk}/")
    side = "left" if task.a_side_for(annotator.pk) == "right" else "right"
    other = "right" if side == "left" else "left"
    mark = page.locator(f"article[data-side={side}] [data-testid={side}-cut-off]")
    assert mark.is_visible() and "Cut off at the length limit" in mark.inner_text()
    assert page.locator(f"[data-testid={other}-cut-off]").count() == 0
    assert page.locator(f"[data-testid={side}-text]").inner_text() == task.completion_b.text

    _open_queue(page, f"{live_server.url}/projects/{rate.pk}/")
    assert page.locator("[data-testid=cut-off]").is_visible()
    for key, label in (("up", "Thumbs up"), ("down", "Thumbs down")):
        button = page.locator(f"button[data-key={key}]")
        box = button.locator("svg").bounding_box()
        assert box and box["width"] >= 12 and box["height"] >= 12, "the thumb is drawn, not an empty box"
        assert label in button.inner_text()
    page.keyboard.press("u")
    page.wait_for_selector("[data-testid=done]")
    assert Rating.objects.get(annotator=annotator).value == "up"
