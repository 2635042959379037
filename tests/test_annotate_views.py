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
        {"pick": "tie", "client_key": key, "edited_text": "my rewrite"},
        HTTP_HX_REQUEST="true",
    )

    assert response.status_code == 400
    assert "Pick the better answer before editing it" in response.content.decode()
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
    for key, label, shortcut in (("up", "Good", "U"), ("down", "Bad", "D")):
        button = re.search(rf'<button[^>]*data-key="{key}"[^>]*>(.*?)</button>', html, re.S).group(1)
        assert "<svg" in button and f"{label} <kbd>{shortcut}</kbd>" in button
