"""The annotator's screens through the test client: plain forms and htmx partials."""
from __future__ import annotations

import re

import pytest

from labeling.models import PairVote, Rating
from tests.factories import ProjectFactory, make_pair_task, make_rate_task

pytestmark = pytest.mark.django_db


def _client_key(html: str) -> str:
    match = re.search(r'name="client_key" value="([0-9a-f]+)"', html)
    assert match, "the card carries an idempotency key"
    return match.group(1)


def test_it_shows_the_prompt_and_both_completions(annotator_client, project):
    task = make_pair_task(project, 3)

    response = annotator_client.get(f"/projects/{project.pk}/")

    html = response.content.decode()
    assert response.status_code == 200
    assert task.prompt.text in html
    assert task.completion_a.text in html and task.completion_b.text in html
    assert "Pick the <strong>more helpful</strong> answer." in html  # guidelines rendered from markdown


def test_it_records_a_vote_from_the_plain_form_and_redirects(annotator_client, project, annotator):
    task = make_pair_task(project, 1)
    key = _client_key(annotator_client.get(f"/projects/{project.pk}/").content.decode())

    response = annotator_client.post(
        f"/projects/{project.pk}/pairs/{task.pk}/vote/", {"pick": "left", "client_key": key, "strength": "2"}
    )

    assert response.status_code == 302
    vote = PairVote.objects.get()
    assert (vote.annotator, vote.strength, vote.picked_side) == (annotator, 2, "left")


def test_htmx_vote_returns_the_next_card(annotator_client, project):
    first = make_pair_task(project, 1)
    second = make_pair_task(project, 2)
    key = _client_key(annotator_client.get(f"/projects/{project.pk}/").content.decode())

    response = annotator_client.post(
        f"/projects/{project.pk}/pairs/{first.pk}/vote/", {"pick": "tie", "client_key": key}, HTTP_HX_REQUEST="true"
    )

    html = response.content.decode()
    assert response.status_code == 200
    assert '<div id="card"' in html and "<html" not in html
    assert f"/pairs/{second.pk}/vote/" in html


def test_a_double_submitted_form_counts_once(annotator_client, project):
    task = make_pair_task(project, 1)
    key = _client_key(annotator_client.get(f"/projects/{project.pk}/").content.decode())
    data = {"pick": "right", "client_key": key}

    first = annotator_client.post(f"/projects/{project.pk}/pairs/{task.pk}/vote/", data, HTTP_HX_REQUEST="true")
    second = annotator_client.post(f"/projects/{project.pk}/pairs/{task.pk}/vote/", data, HTTP_HX_REQUEST="true")

    assert (first.status_code, second.status_code) == (200, 200)
    assert PairVote.objects.count() == 1


def test_bad_input_shows_the_same_card_with_the_message(annotator_client, project):
    task = make_pair_task(project, 1)
    key = _client_key(annotator_client.get(f"/projects/{project.pk}/").content.decode())

    response = annotator_client.post(
        f"/projects/{project.pk}/pairs/{task.pk}/vote/",
        {"pick": "tie", "client_key": key, "edited_text": "my rewrite " * 5000},
        HTTP_HX_REQUEST="true",
    )

    assert response.status_code == 400
    assert "The edited answer is too long (at most 50000 characters)." in response.content.decode()
    assert f"/pairs/{task.pk}/vote/" in response.content.decode()
    assert not PairVote.objects.exists()


def test_a_stale_vote_moves_on_with_a_message(annotator_client, project, annotator):
    task = make_pair_task(project, 1)
    PairVote.objects.create(task=task, annotator=annotator, choice="a", a_side="left", client_key="earlier")

    response = annotator_client.post(
        f"/projects/{project.pk}/pairs/{task.pk}/vote/", {"pick": "left", "client_key": "later"}, HTTP_HX_REQUEST="true"
    )

    assert response.status_code == 409
    assert "already voted" in response.content.decode()
    assert PairVote.objects.count() == 1


def test_skip_hides_the_task(annotator_client, project):
    task = make_pair_task(project, 1)
    annotator_client.get(f"/projects/{project.pk}/")

    response = annotator_client.post(f"/projects/{project.pk}/pair/{task.pk}/skip/", HTTP_HX_REQUEST="true")

    assert 'data-testid="done"' in response.content.decode()


def test_the_rate_screen_records_thumbs(client, annotator):
    project = ProjectFactory(mode="rate")
    project.members.add(annotator)
    task = make_rate_task(project, 1)
    client.force_login(annotator)
    key = _client_key(client.get(f"/projects/{project.pk}/").content.decode())

    response = client.post(f"/projects/{project.pk}/rate/{task.pk}/vote/", {"value": "down", "client_key": key})

    assert response.status_code == 302
    assert Rating.objects.get().value == "down"


def test_completion_text_is_rendered_inert(annotator_client, project):
    task = make_pair_task(project, 1)
    task.completion_a.text = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    task.completion_a.save()

    html = annotator_client.get(f"/projects/{project.pk}/").content.decode()

    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html


def test_guideline_markdown_is_sanitised(annotator_client, project):
    project.guidelines = "Be **nice** <script>alert(1)</script> [x](javascript:alert(1)) <a onclick=\"x()\">y</a>"
    project.save()

    html = annotator_client.get(f"/projects/{project.pk}/").content.decode()

    assert "<strong>nice</strong>" in html
    assert "<script>alert(1)" not in html and "javascript:" not in html and "onclick" not in html


def test_a_cut_off_completion_is_marked_on_the_compare_screen(annotator_client, project, annotator):
    task = make_pair_task(project, 1)
    task.completion_b.finish_reason = "length"
    task.completion_b.save()
    task.completion_a.finish_reason = "stop"
    task.completion_a.save()

    html = annotator_client.get(f"/projects/{project.pk}/").content.decode()

    cut_side = "left" if task.a_side_for(annotator.pk) == "right" else "right"
    whole_side = "right" if cut_side == "left" else "left"
    assert html.count("Cut off at the length limit") == 1
    assert f'data-testid="{cut_side}-cut-off"' in html and f'data-testid="{whole_side}-cut-off"' not in html
    # The mark sits in the article of the cut-off completion, after its text.
    article = html[html.index(f'data-side="{cut_side}"'):]
    article = article[: article.index("</article>")]
    assert task.completion_b.text in article and "Cut off at the length limit" in article


def test_completions_that_ended_or_are_of_unknown_ending_carry_no_mark(annotator_client, project):
    task = make_pair_task(project, 1)
    task.completion_a.finish_reason = "stop"
    task.completion_a.save()

    html = annotator_client.get(f"/projects/{project.pk}/").content.decode()

    assert "Cut off" not in html


def test_the_rate_screen_marks_a_cut_off_completion_and_draws_thumbs_without_emoji(client, annotator):
    project = ProjectFactory(mode="rate")
    project.members.add(annotator)
    task = make_rate_task(project, 1)
    task.completion.finish_reason = "length"
    task.completion.save()
    client.force_login(annotator)

    html = client.get(f"/projects/{project.pk}/").content.decode()

    assert 'data-testid="cut-off"' in html and "Cut off at the length limit" in html
    assert "👍" not in html and "👎" not in html
    # The words say what the keys say (issue 26: "Good" and "Bad" on keys U and D).
    for key, label, shortcut in (("up", "Thumbs up", "U"), ("down", "Thumbs down", "D")):
        button = re.search(rf'<button[^>]*data-key="{key}"[^>]*>(.*?)</button>', html, re.S).group(1)
        assert "<svg" in button and f"{label} <kbd>{shortcut}</kbd>" in button


def _textarea(html: str, name: str) -> str:
    match = re.search(rf'<textarea name="{name}"[^>]*>\n?(.*?)</textarea>', html, re.S)
    assert match, f"the card has a {name} box"
    return match.group(1)


def test_a_refused_vote_keeps_the_rationale_and_edit_that_were_typed(annotator_client, project):
    # Given a card, and a rationale one character over the limit, with an edited answer and a strength
    task = make_pair_task(project, 1)
    key = _client_key(annotator_client.get(f"/projects/{project.pk}/").content.decode())
    rationale = "Because <b>A</b> & B " + "r" * 4980
    assert len(rationale) == 5001

    # When the vote is refused
    response = annotator_client.post(
        f"/projects/{project.pk}/pairs/{task.pk}/vote/",
        {"pick": "left", "client_key": key, "strength": "3", "rationale": rationale, "edited_text": "My <better> answer"},
        HTTP_HX_REQUEST="true",
    )

    # Then the same card comes back with the message and everything typed still there (escaped), its boxes open
    html = response.content.decode()
    assert response.status_code == 400 and not PairVote.objects.exists()
    assert "The rationale is too long (at most 5000 characters)." in html
    assert f"/pairs/{task.pk}/vote/" in html
    assert _textarea(html, "rationale") == "Because &lt;b&gt;A&lt;/b&gt; &amp; B " + "r" * 4980
    assert _textarea(html, "edited_text") == "My &lt;better&gt; answer"
    assert '<input type="radio" name="strength" value="3" checked>' in html
    assert '<details class="extra" open><summary>Rationale' in html
    assert '<details class="extra edit" open><summary>' in html


def test_a_refused_plain_form_vote_keeps_the_rationale_after_the_redirect(annotator_client, project):
    # Given a card submitted without htmx, with a rationale over the limit
    task = make_pair_task(project, 1)
    key = _client_key(annotator_client.get(f"/projects/{project.pk}/").content.decode())

    response = annotator_client.post(
        f"/projects/{project.pk}/pairs/{task.pk}/vote/",
        {"pick": "left", "client_key": key, "rationale": "x" * 5001},
        follow=True,
    )

    # Then the page it is sent back to shows the same task with the message and the rationale
    html = response.content.decode()
    assert response.redirect_chain[0][1] == 302
    assert "The rationale is too long" in html
    assert f"/pairs/{task.pk}/vote/" in html
    assert _textarea(html, "rationale") == "x" * 5001
    # ...once: a reload starts from an empty box
    assert _textarea(annotator_client.get(f"/projects/{project.pk}/").content.decode(), "rationale") == ""


def test_a_refused_thumbs_vote_keeps_the_rationale(client, annotator):
    project = ProjectFactory(mode="rate")
    project.members.add(annotator)
    task = make_rate_task(project, 1)
    client.force_login(annotator)
    key = _client_key(client.get(f"/projects/{project.pk}/").content.decode())

    response = client.post(
        f"/projects/{project.pk}/rate/{task.pk}/vote/",
        {"value": "up", "client_key": key, "rationale": "why " * 1300},
        HTTP_HX_REQUEST="true",
    )

    html = response.content.decode()
    assert response.status_code == 400 and not Rating.objects.exists()
    assert "The rationale is too long" in html
    assert _textarea(html, "rationale") == "why " * 1300


def test_progress_counts_every_task_the_queue_hands_out_and_the_votes_on_them(annotator_client, project, annotator):
    # Given a compare project with two pairs to label and a blind review battle; the annotator judged one of each,
    # and the second pair to label is still open
    from labeling.models import PairTask
    from labeling.selectors import annotator_progress
    from tests.factories import make_pair_vote

    label_done, _label_open = make_pair_task(project, 1, overlap=1), make_pair_task(project, 2, overlap=1)
    battle = make_pair_task(project, 3, overlap=1)
    PairTask.objects.filter(pk=battle.pk).update(purpose="review")
    make_pair_vote(label_done, annotator, "a")
    make_pair_vote(PairTask.objects.get(pk=battle.pk), annotator, "b")

    # Then "complete of total" and "mine" count the same tasks: both purposes
    assert annotator_progress(project=project, annotator=annotator) == {"total": 3, "complete": 2, "mine": 2, "percent": 67}
    html = annotator_client.get(f"/projects/{project.pk}/").content.decode()
    assert "pairs to label and blind review battles): <b>2</b> of 3 tasks complete" in html
    assert '<b data-testid="my-votes">2</b> judged' in html


def test_progress_on_a_thumbs_project_counts_held_out_thumbs_too(client, annotator):
    from labeling.models import RateTask
    from labeling.selectors import annotator_progress
    from tests.factories import make_rating

    project = ProjectFactory(mode="rate", overlap=1)
    project.members.add(annotator)
    _candidate, heldout = make_rate_task(project, 1), make_rate_task(project, 2)
    RateTask.objects.filter(pk=heldout.pk).update(purpose="review")
    make_rating(RateTask.objects.get(pk=heldout.pk), annotator, "up")

    assert annotator_progress(project=project, annotator=annotator) == {"total": 2, "complete": 1, "mine": 1, "percent": 50}
