"""Untrusted text must render inert on every page that shows it.

Prompts, completions, model names, rationales, edited answers, usernames, project names and descriptions,
run names and errors, and base model names all hold script tags, event handlers and javascript: URLs here.
Each page is parsed as HTML and must contain no script but the app's own static files, no event-handler
attribute, no javascript:/data:/vbscript: URL, and no embedded-content element; the payloads must show up
as text (escaped), so the check is not passing on a page that simply omits them. Guidelines are markdown:
they are sanitised (nh3), not escaped, so they get their own cases.
"""
from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

from labeling.models import Completion, PairTask, Prompt
from labeling.templatetags.preftune_markdown import render_markdown
from tests.factories import PASSWORD, AdminFactory, ProjectFactory, make_pair_vote, make_run

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]

SCRIPT = '<script>alert("xss-script")</script>'
IMG = '<img src=x onerror=alert("xss-img")>'
JS_LINK = "<a href=\"javascript:alert('xss-link')\">click</a>"
BREAKOUT = '"><svg onload=alert("xss-svg")>'
TEXTAREA = '</textarea><script>alert("xss-textarea")</script>'
PAYLOADS = (SCRIPT, IMG, JS_LINK, BREAKOUT, TEXTAREA)
ALL = " ".join(PAYLOADS)

_URL_ATTRIBUTES = {"href", "src", "action", "formaction", "xlink:href", "poster", "background", "data"}
_EMBEDDING_TAGS = {"iframe", "object", "embed", "svg", "img", "frame", "frameset", "base", "meta-refresh"}
_BAD_SCHEMES = ("javascript:", "data:", "vbscript:")


class _ActiveContent(HTMLParser):
    """Collects every piece of markup that could run code."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "script" and not (values.get("src") or "").startswith("/static/"):
            self.problems.append(f"inline or foreign <script {values}>")
        if tag in _EMBEDDING_TAGS:
            self.problems.append(f"<{tag}> element")
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(f"event handler {name}={value!r} on <{tag}>")
            if name in _URL_ATTRIBUTES and value and "".join(value.split()).lower().startswith(_BAD_SCHEMES):
                self.problems.append(f"{name}={value!r} on <{tag}>")


def active_content(page: str) -> list[str]:
    parser = _ActiveContent()
    parser.feed(page)
    parser.close()
    return parser.problems


@pytest.fixture
def world(db):
    """A project whose every text field is hostile, with a disputed pair, an open pair and a failed run."""
    user_model = get_user_model()
    # Usernames are validated by forms; one synced from elsewhere (LDAP, SSO, the shell) is not.
    annotator = user_model.objects.create_user(username=IMG[:150], password=PASSWORD)
    voter = user_model.objects.create_user(username=SCRIPT, password=PASSWORD)
    admin = AdminFactory()
    project = ProjectFactory(name=BREAKOUT + " project", description=ALL, overlap=2, guidelines="Be fair.")
    project.members.add(annotator, voter)

    def hostile_pair(n: int) -> PairTask:
        prompt = Prompt.objects.create(
            project=project, external_id=f"x{n}",
            messages=[{"role": "system", "content": SCRIPT}, {"role": "user", "content": f"{n} {ALL}"}],
        )
        a = Completion.objects.create(prompt=prompt, text="A " + ALL, model_name=JS_LINK)
        b = Completion.objects.create(prompt=prompt, text="B " + TEXTAREA + IMG, model_name=BREAKOUT)
        return PairTask.objects.create(project=project, prompt=prompt, completion_a=a, completion_b=b, overlap=2)

    disputed = hostile_pair(1)
    make_pair_vote(disputed, voter, "a", rationale=ALL)
    make_pair_vote(disputed, annotator, "b", a_side="right", rationale=JS_LINK)
    disputed.votes.filter(annotator=voter).update(edited_text=TEXTAREA + SCRIPT)
    hostile_pair(2)  # open: the annotator's next card
    run = make_run(project, status="failed")
    type(run).objects.filter(pk=run.pk).update(name=SCRIPT + " run", error=ALL)
    run.base_model.name = IMG
    run.base_model.save()
    return {"project": project, "annotator": annotator, "admin": admin, "run": run}


def _client_for(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


PAGES = [
    pytest.param("annotator", "/", id="home"),
    pytest.param("annotator", "/projects/{project}/", id="annotate"),
    pytest.param("annotator", "/projects/{project}/card/", id="card"),
    pytest.param("admin", "/", id="home-admin"),
    pytest.param("admin", "/projects/{project}/dashboard/", id="dashboard"),
    pytest.param("admin", "/projects/{project}/disagreements/", id="disagreements"),
    pytest.param("admin", "/projects/{project}/export/", id="export"),
    pytest.param("admin", "/projects/{project}/import/", id="import"),
    pytest.param("admin", "/projects/{project}/settings/", id="project-settings"),
    pytest.param("admin", "/projects/{project}/runs/", id="runs"),
    pytest.param("admin", "/projects/{project}/runs/new/", id="run-new"),
    pytest.param("admin", "/runs/{run}/", id="run-detail"),
    pytest.param("admin", "/runs/{run}/status/", id="run-status"),
    pytest.param("admin", "/runs/{run}/review/", id="run-review"),
    pytest.param("admin", "/runs/{run}/battles/", id="run-battles"),
    pytest.param("admin", "/projects/{project}/leaderboard/", id="leaderboard"),
]


@pytest.mark.parametrize(("who", "path"), PAGES)
def test_hostile_text_renders_inert(world, who, path):
    client = _client_for(world[who])

    response = client.get(path.format(project=world["project"].pk, run=world["run"].pk))

    assert response.status_code == 200
    page = response.content.decode()
    assert active_content(page) == []
    for payload in PAYLOADS:
        assert payload not in page
    # The hostile text is there, as text: the page did not pass by leaving it out.
    assert "&lt;" in page and ("xss-" in page or "&quot;&gt;&lt;svg" in page)


def test_the_api_serves_hostile_text_as_json_not_html(world):
    from labeling.services import api_token_create

    token = api_token_create(user=world["annotator"])

    response = Client().get(f"/api/projects/{world['project'].pk}/next", HTTP_AUTHORIZATION=f"Token {token}")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert SCRIPT in response.json()["task"]["prompt"][0]["content"]  # data stays data: the client must escape it


def test_the_export_file_is_served_as_a_download(world):
    response = _client_for(world["admin"]).get(f"/projects/{world['project'].pk}/export/?format=dpo")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/jsonl")
    assert response["Content-Disposition"].startswith("attachment;")
    assert response["X-Content-Type-Options"] == "nosniff"


MARKDOWN = [
    pytest.param(SCRIPT, id="script-tag"),
    pytest.param(IMG, id="img-onerror"),
    pytest.param("[click](javascript:alert('xss'))", id="md-javascript-link"),
    pytest.param("[click](JaVaScRiPt:alert('xss'))", id="md-mixed-case-scheme"),
    pytest.param("[click](  javascript:alert('xss'))", id="md-leading-space-scheme"),
    pytest.param("[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)", id="md-data-url"),
    pytest.param("![x](x\" onerror=\"alert('xss'))", id="md-image-attribute-breakout"),
    pytest.param('<div onclick="alert(\'xss\')">click</div>', id="div-onclick"),
    pytest.param('<iframe src="https://evil.example/"></iframe>', id="iframe"),
    pytest.param('<a href="https://ok.example/" onmouseover="alert(1)">ok</a>', id="link-with-handler"),
    pytest.param("<svg><script>alert(1)</script></svg>", id="svg-script"),
    pytest.param("```\n</code></pre><script>alert(1)</script>\n```", id="fenced-code-breakout"),
    pytest.param('<form action="javascript:alert(1)"><button>go</button></form>', id="form-action"),
    pytest.param("<style>body{background:url(javascript:alert(1))}</style>", id="style-tag"),
]


@pytest.mark.parametrize("guidelines", MARKDOWN)
def test_hostile_guidelines_are_sanitised_on_the_annotate_page(world, guidelines):
    project = world["project"]
    project.guidelines = "# Rules\n\n" + guidelines
    project.save()

    page = _client_for(world["annotator"]).get(f"/projects/{project.pk}/").content.decode()

    assert active_content(page) == []
    assert "<style" not in page.split("</head>", 1)[1]
    assert active_content(render_markdown(guidelines)) == []


def test_safe_markdown_still_renders(world):
    html = render_markdown("**bold** [docs](https://example.com/)")

    assert "<strong>bold</strong>" in html
    assert 'href="https://example.com/"' in html and 'rel="noopener noreferrer"' in html


@pytest.mark.parametrize(
    "markup",
    [
        '<script>x()</script>',
        '<p onclick="x()">',
        '<a href=" JavaScript:x()">',
        '<img src="/static/a.png">',
        '<form action="data:text/html,x">',
    ],
)
def test_the_checker_itself_catches_active_content(markup):
    assert active_content(markup) != []


def test_generated_outputs_render_inert_on_the_review_and_battle_pages(world):
    from training.models import ModelVersion, TuningRun
    from training.review.battles import battles_create
    from training.review.versions import base_version_get_or_create

    run = world["run"]
    tuned = ModelVersion.objects.create(name=IMG + " tuned", base_model=run.base_model, adapter_path="/x/adapter")
    TuningRun.objects.filter(pk=run.pk).update(status="succeeded", model_version=tuned, error="")
    base = base_version_get_or_create(base_model=run.base_model)
    prompt = Prompt.objects.create(
        project=world["project"], external_id="held", split="heldout", messages=[{"role": "user", "content": ALL}]
    )
    # Settings are the worker's, but a stored value is still data: one here carries markup, and names the comparison.
    settings = {"seed": 0, "sample": 0, "note": SCRIPT}
    for version, text in ((base, "base " + ALL), (tuned, "tuned " + TEXTAREA + SCRIPT)):
        Completion.objects.create(
            prompt=prompt, text=text, source="generated", model_version=version, generation_settings=settings
        )
    run.refresh_from_db()
    battles_create(project=world["project"], version_a=tuned, version_b=base, run=run, prompt_ids=[prompt.pk], seed=1)
    admin, annotator = _client_for(world["admin"]), _client_for(world["annotator"])

    pages = [
        admin.get(f"/runs/{run.pk}/review/").content.decode(),
        admin.get(f"/runs/{run.pk}/battles/").content.decode(),
        admin.get(f"/projects/{world['project'].pk}/leaderboard/").content.decode(),
        annotator.get(f"/projects/{world['project'].pk}/card/").content.decode(),
        admin.get(f"/runs/{run.pk}/review/", {"q": BREAKOUT, "settings": BREAKOUT[:60]}).content.decode(),
    ]

    for page in pages:
        assert active_content(page) == []
        assert SCRIPT not in page and IMG not in page and BREAKOUT not in page
    assert "tuned &lt;/textarea&gt;&lt;script&gt;" in pages[0]
    assert "note &lt;script&gt;alert(" in pages[0] and "note &lt;script&gt;alert(" in pages[1], "the settings are shown, escaped"
    assert "&quot;&gt;&lt;svg onload=" in pages[4], "the search box shows what was typed, escaped"


RLO = "\u202e"  # RIGHT-TO-LEFT OVERRIDE: reverses the text after it, up to the end of its isolating element


class _TextHolders(HTMLParser):
    """For each piece of text containing ``needle``: the attributes of the element directly around it."""

    _VOID = {"br", "input", "img", "meta", "link", "hr", "source", "wbr"}

    def __init__(self, needle: str) -> None:
        super().__init__(convert_charrefs=True)
        self.needle = needle
        self.stack: list[tuple[str, dict[str, str | None]]] = []
        self.holders: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self._VOID:
            self.stack.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        while self.stack and self.stack.pop()[0] != tag:
            pass

    def handle_data(self, data: str) -> None:
        if self.needle in data:
            self.holders.append(self.stack[-1])


def _holders(page: str, needle: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _TextHolders(needle)
    parser.feed(page)
    parser.close()
    return parser.holders


def _isolating(holder: tuple[str, dict[str, str | None]]) -> bool:
    _tag, attrs = holder
    return attrs.get("dir") == "auto" and "untrusted" in (attrs.get("class") or "").split()


def _shown_not_applied(page: str, before: str, after: str) -> None:
    """The text ``before`` + RLO + ``after`` sits in an isolating element with the override replaced by a visible
    mark (issue 26: "gpj.exe" read as "exe.jpg" with nothing to say so); only an edit box keeps the raw text."""
    holders = _holders(page, before)
    assert holders and all(_isolating(h) for h in holders), (before, holders)
    assert f'(U+202E RLO) was here: shown, not applied, so the text reads as stored.">⇄RLO</span>{after}' in page, after
    outside_edit_boxes = re.sub(r"(?s)<textarea.*?</textarea>", "", page)
    assert RLO not in outside_edit_boxes


def test_direction_overrides_in_prompts_and_completions_stay_inside_their_own_element(annotator, project):
    # Given a pair whose prompt and both answers carry a right-to-left override, and markup
    from tests.factories import make_pair_task

    task = make_pair_task(project, 1)
    Prompt.objects.filter(pk=task.prompt_id).update(messages=[{"role": "user", "content": f"Total: {RLO}001$ <b>ok</b>"}])
    Completion.objects.filter(pk=task.completion_a_id).update(text=f"A says {RLO}gnp.exe <i>x</i>")
    Completion.objects.filter(pk=task.completion_b_id).update(text=f"B says {RLO}fdp.txt")

    page = _client_for(annotator).get(f"/projects/{project.pk}/").content.decode()

    # Then each text sits alone in an element with dir="auto" that the stylesheet isolates, the override shown as a
    # mark rather than applied, and is still escaped
    for before, after in (("Total: ", "001$"), ("A says ", "gnp.exe"), ("B says ", "fdp.txt")):
        _shown_not_applied(page, before, after)
    assert "&lt;b&gt;ok&lt;/b&gt;" in page and "&lt;i&gt;x&lt;/i&gt;" in page
    assert active_content(page) == []
    css = (settings.BASE_DIR / "static" / "css" / "preftune.css").read_text()
    assert ".untrusted { unicode-bidi: isolate; }" in css


def test_direction_overrides_stay_inside_their_element_on_the_thumbs_screen(annotator):
    from tests.factories import make_rate_task

    project = ProjectFactory(mode="rate")
    project.members.add(annotator)
    task = make_rate_task(project, 1)
    Completion.objects.filter(pk=task.completion_id).update(text=f"Fine {RLO}kcab")

    page = _client_for(annotator).get(f"/projects/{project.pk}/").content.decode()

    _shown_not_applied(page, "Fine ", "kcab")


def test_direction_overrides_stay_inside_their_element_on_the_side_by_side_review(world):
    from training.models import ModelVersion, TuningRun
    from training.review.versions import base_version_get_or_create

    run = world["run"]
    tuned = ModelVersion.objects.create(name="tuned", base_model=run.base_model, adapter_path="/x/adapter")
    TuningRun.objects.filter(pk=run.pk).update(status="succeeded", model_version=tuned, error="")
    base = base_version_get_or_create(base_model=run.base_model)
    prompt = Prompt.objects.create(
        project=world["project"], external_id="rlo", split="heldout", messages=[{"role": "user", "content": f"Asked {RLO}?sey"}]
    )
    for version, text in ((base, f"Base wrote {RLO}on"), (tuned, f"Tuned wrote {RLO}sey")):
        Completion.objects.create(
            prompt=prompt, text=text, source="generated", model_version=version, generation_settings={"seed": 0, "sample": 0}
        )

    page = _client_for(world["admin"]).get(f"/runs/{run.pk}/review/").content.decode()

    for before, after in (("Asked ", "?sey"), ("Base wrote ", "on"), ("Tuned wrote ", "sey")):
        _shown_not_applied(page, before, after)
