"""The Django admin: prompt search by the words in the messages, untrusted text shown isolated, and read-mostly
screens for what tuning records."""
from __future__ import annotations

import re

import pytest

from labeling.models import Completion, Prompt
from tests.factories import ProjectFactory, make_run
from training.models import DatasetSnapshot, TuningRun

pytestmark = pytest.mark.django_db


def _prompt(project, n: int, content: str, *, system: str = "Be brief.") -> Prompt:
    return Prompt.objects.create(
        project=project, external_id=f"p{n}", messages=[{"role": "system", "content": system}, {"role": "user", "content": content}]
    )


def _found(response) -> set[str]:
    """The external ids on a prompt changelist page."""
    assert response.status_code == 200
    return set(re.findall(r'<td class="field-external_id">(p\d+)</td>', response.content.decode()))


@pytest.fixture
def prompts(db):
    # Given 72 prompts, a few of which mention coffee, one with an accent, one with markup
    project = ProjectFactory()
    for n in range(72):
        _prompt(project, n, f"Question {n}: how do tides work?")
    Prompt.objects.filter(external_id__in=["p3", "p40", "p41", "p70"]).delete()
    _prompt(project, 3, "Where can I get Espresso near the station?")
    _prompt(project, 40, "Is an espresso stronger than a latte?")
    _prompt(project, 41, "Je voudrais un café au lait, s'il vous plaît.")
    _prompt(project, 70, 'She said "espresso\\later" and left.', system="Answer in French: CAFÉ CRÈME.")
    return project


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        pytest.param("espresso", {"p3", "p40", "p70"}, id="a-word-in-several-prompts"),
        pytest.param("ESPRESSO near", {"p3"}, id="every-word-ignoring-case"),
        pytest.param("café", {"p41", "p70"}, id="an-accented-word-any-case"),
        pytest.param("plaît", {"p41"}, id="an-accent-inside-a-word"),
        pytest.param('"au lait"', {"p41"}, id="a-quoted-phrase"),
        pytest.param('"espresso\\later"', {"p70"}, id="a-quote-and-backslash-json-escapes"),
        pytest.param("crème", {"p70"}, id="the-system-message-counts-too"),
        pytest.param("p41", {"p41"}, id="the-external-id-still-works"),
    ],
)
def test_prompt_search_finds_the_words_in_the_messages(admin_client, prompts, term, expected):
    response = admin_client.get("/admin/labeling/prompt/", {"q": term})

    assert _found(response) == expected


def test_prompt_search_does_not_match_the_json_keys(admin_client, prompts):
    # "content" and "role" are in every prompt's JSON, and in none of their messages
    assert _found(admin_client.get("/admin/labeling/prompt/", {"q": "content"})) == set()
    assert _found(admin_client.get("/admin/labeling/prompt/", {"q": "role"})) == set()


def test_prompt_search_keeps_the_filters(admin_client, prompts):
    other = ProjectFactory()
    _prompt(other, 99, "A double espresso, please.")

    response = admin_client.get("/admin/labeling/prompt/", {"q": "espresso", "project__id__exact": other.pk})

    assert _found(response) == {"p99"}


def test_completion_search_finds_their_text(admin_client, prompts):
    prompt = Prompt.objects.get(external_id="p41")
    Completion.objects.create(prompt=prompt, text="Voilà votre café.")
    Completion.objects.create(prompt=prompt, text="Un thé, alors.")

    response = admin_client.get("/admin/labeling/completion/", {"q": "voilà"})

    assert response.status_code == 200
    shown = re.findall(r'<td class="field-text_start">(.*?)</td>', response.content.decode())
    assert len(shown) == 1 and "Voilà votre café." in shown[0]


RLO = "\u202e"


def test_direction_controls_in_prompts_and_completions_are_isolated_and_visible_in_the_admin(admin_client):
    # Given a prompt and a completion carrying a right-to-left override, and markup
    project = ProjectFactory()
    prompt = _prompt(project, 1, f"Pay {RLO}0001$ now <b>please</b>")
    completion = Completion.objects.create(prompt=prompt, text=f"Sure{RLO} <script>x()</script>")

    pages = {
        "prompt list": admin_client.get("/admin/labeling/prompt/").content.decode(),
        "prompt page": admin_client.get(f"/admin/labeling/prompt/{prompt.pk}/change/").content.decode(),
        "completion list": admin_client.get("/admin/labeling/completion/").content.decode(),
        "completion page": admin_client.get(f"/admin/labeling/completion/{completion.pk}/change/").content.decode(),
    }

    # Then the text is in an isolating element, with the override shown as a marker, and still escaped
    for name, html in pages.items():
        assert '<bdi dir="auto" style="unicode-bidi: isolate">' in html, name
    assert '<bdi dir="auto" style="unicode-bidi: isolate">Pay [U+202E RLO]0001$ now &lt;b&gt;please&lt;/b&gt;</bdi>' in pages["prompt list"]
    assert "Pay [U+202E RLO]0001$ now &lt;b&gt;please&lt;/b&gt;</bdi>" in pages["prompt page"]
    assert "Sure[U+202E RLO] &lt;script&gt;x()&lt;/script&gt;</bdi>" in pages["completion page"]
    assert "<script>x()" not in pages["completion page"] and "<b>please" not in pages["prompt page"]


def test_vote_and_rating_lists_show_the_prompt_and_completion_isolated(admin_client, annotator):
    from tests.factories import make_pair_task, make_pair_vote, make_rate_task, make_rating

    project = ProjectFactory()
    task = make_pair_task(project, 1)
    Prompt.objects.filter(pk=task.prompt_id).update(messages=[{"role": "user", "content": f"Why {RLO}<u>x</u>?"}])
    make_pair_vote(task, annotator, "a")
    rate_task = make_rate_task(ProjectFactory(mode="rate"), 1)
    Completion.objects.filter(pk=rate_task.completion_id).update(text=f"Yes {RLO}<i>y</i>")
    make_rating(rate_task, annotator, "up")

    votes = admin_client.get("/admin/labeling/pairvote/").content.decode()
    ratings = admin_client.get("/admin/labeling/rating/").content.decode()

    assert f'Pair {task.pk} (<bdi dir="auto" style="unicode-bidi: isolate">Why [U+202E RLO]&lt;u&gt;x&lt;/u&gt;?</bdi>)' in votes
    assert '<bdi dir="auto" style="unicode-bidi: isolate">Yes [U+202E RLO]&lt;i&gt;y&lt;/i&gt;</bdi>' in ratings
    assert RLO not in votes and RLO not in ratings

def test_tuning_records_are_listed_in_the_admin(admin_client):
    project = ProjectFactory(name="Coffee")
    run = make_run(project, status="failed")
    TuningRun.objects.filter(pk=run.pk).update(error="CUDA out of memory")

    for path in ("tuningrun", "generationjob", "versionexport", "battle", "datasetsnapshot", "runmetric"):
        assert admin_client.get(f"/admin/training/{path}/").status_code == 200, path
    runs = admin_client.get("/admin/training/tuningrun/", {"q": "out of memory", "status__exact": "failed"}).content.decode()
    assert "run of Coffee" in runs
    assert admin_client.get(f"/admin/training/tuningrun/{run.pk}/change/").status_code == 200
    assert admin_client.get(f"/admin/training/datasetsnapshot/{run.snapshot_id}/change/").status_code == 200


def test_a_snapshots_rows_and_hash_cannot_be_changed_in_the_admin(admin_client):
    run = make_run(ProjectFactory())
    snapshot = run.snapshot
    before = (snapshot.rows, snapshot.rows_hash, snapshot.row_count)

    page = admin_client.get(f"/admin/training/datasetsnapshot/{snapshot.pk}/change/")
    posted = admin_client.post(
        f"/admin/training/datasetsnapshot/{snapshot.pk}/change/",
        {"rows": "[]", "rows_hash": "f" * 64, "row_count": "0", "method": "kto"},
    )
    added = admin_client.post("/admin/training/datasetsnapshot/add/", {"rows": "[]", "rows_hash": "f" * 64})

    assert page.status_code == 200 and 'name="rows_hash"' not in page.content.decode()
    assert posted.status_code == 403 and added.status_code == 403
    snapshot.refresh_from_db()
    assert (snapshot.rows, snapshot.rows_hash, snapshot.row_count) == before
    assert DatasetSnapshot.objects.count() == 1


def test_a_run_can_be_renamed_in_the_admin_but_nothing_else(admin_client):
    run = make_run(ProjectFactory(), status="failed")

    response = admin_client.post(
        f"/admin/training/tuningrun/{run.pk}/change/", {"name": "Renamed", "status": "succeeded", "step": "99"}
    )

    assert response.status_code == 302
    run.refresh_from_db()
    assert (run.name, run.status, run.step) == ("Renamed", "failed", 0)



def test_a_change_list_prints_dates_short_enough_for_its_column(admin_client):
    project = ProjectFactory(name="Dates")
    prompt = _prompt(project, 1, "When?")
    Prompt.objects.filter(pk=prompt.pk).update(created_at="2026-12-07T04:51:00Z")

    html = admin_client.get("/admin/labeling/prompt/").content.decode()

    # Non-breaking hyphens: a narrow column breaks it at the space only, date over time.
    assert "<td class=\"field-created_at nowrap\">2026\u201112\u201107 04:51</td>" in html, re.findall(r"field-created_at[^<]*<", html)
