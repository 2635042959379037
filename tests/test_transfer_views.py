"""The import and export pages: labeling/views/transfer.py."""
from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from labeling.models import Completion, PairTask, Project, Prompt, RateTask
from tests.factories import ProjectFactory, UserFactory, make_pair_task, make_pair_vote

GOOD_JSONL = b'{"id": "q1", "prompt": "What is 2+2?", "completions": ["4", "5", "22"]}\n'


def upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


def test_it_shows_the_import_form(admin_client, project):
    # when
    response = admin_client.get(f"/projects/{project.pk}/import/")

    # then
    assert response.status_code == 200
    html = response.content.decode()
    assert 'enctype="multipart/form-data"' in html
    assert 'type="file"' in html
    assert "completion_1" in html
    assert "10.0\xa0MB" in html
    assert "1,000,000 characters a line" in html, "the line limit is stated before the upload (issue 26)"


def test_it_imports_an_upload_and_goes_to_the_dashboard(admin_client, project):
    # when
    response = admin_client.post(f"/projects/{project.pk}/import/", {"file": upload("data.jsonl", GOOD_JSONL)}, follow=True)

    # then
    assert response.redirect_chain == [(f"/projects/{project.pk}/dashboard/", 302)]
    assert "Imported data.jsonl: 1 prompts (0 held out), 3 completions, 3 tasks." in response.content.decode()
    assert PairTask.objects.filter(project=project).count() == 3


def test_it_shows_every_line_error_and_writes_nothing(admin_client, project):
    # given a file with a good line and two bad ones, one of them carrying markup
    data = GOOD_JSONL + b'{"prompt": "<script>alert(1)</script>", "completion": "<b>one</b>"}\n{"prompt": "x", "completions": "nope"}\n'

    # when
    response = admin_client.post(f"/projects/{project.pk}/import/", {"file": upload("data.jsonl", data)})

    # then
    assert response.status_code == 400
    html = response.content.decode()
    assert "2 problems in &#x27;data.jsonl&#x27;; nothing was imported." in html
    assert (
        "line 2: compare projects pair two or more completions per prompt, and this prompt has one: add a second "
        "completion, or import the prompt without completions and generate candidates from the dashboard."
    ) in html
    assert "line 3: &#x27;completions&#x27; must be a list of strings." in html
    assert "<script>alert" not in html
    assert (Prompt.objects.count(), Completion.objects.count(), PairTask.objects.count()) == (0, 0, 0)


@pytest.mark.parametrize(
    ("mode", "name", "data"),
    [
        pytest.param(Project.Mode.COMPARE, "p.jsonl", b'{"id": "a", "prompt": "Haiku?"}\n{"id": "b", "prompt": "DNS?"}\n', id="compare-jsonl"),
        pytest.param(Project.Mode.COMPARE, "p.csv", b"id,prompt,split\na,Haiku?,train\nb,DNS?,\n", id="compare-csv"),
        pytest.param(Project.Mode.RATE, "p.jsonl", b'{"id": "a", "prompt": "Haiku?"}\n{"id": "b", "prompt": "DNS?"}\n', id="rate-jsonl"),
        pytest.param(Project.Mode.RATE, "p.csv", b"prompt,id\nHaiku?,a\nDNS?,b\n", id="rate-csv"),
    ],
)
def test_it_imports_prompts_alone_and_says_to_generate_candidates(admin_client, mode, name, data):
    # given
    project = ProjectFactory(mode=mode)

    # when
    response = admin_client.post(f"/projects/{project.pk}/import/", {"file": upload(name, data)}, follow=True)

    # then the dashboard says what was imported and what to do next
    assert response.redirect_chain == [(f"/projects/{project.pk}/dashboard/", 302)]
    html = response.content.decode()
    assert (
        f"Imported {name}: 2 prompts (0 held out), 0 completions, 0 tasks; "
        "2 prompts have no completions yet: generate candidates from the dashboard."
    ) in html
    assert "Generate candidates" in html
    assert sorted(Prompt.objects.filter(project=project, split="train").values_list("external_id", flat=True)) == ["a", "b"]
    assert (Completion.objects.count(), PairTask.objects.count(), RateTask.objects.count()) == (0, 0, 0)


@pytest.mark.parametrize("mode", [Project.Mode.COMPARE, Project.Mode.RATE])
def test_it_writes_no_prompt_alone_when_another_line_is_malformed(admin_client, mode):
    # given one good prompt-only line and one malformed line
    project = ProjectFactory(mode=mode)
    data = b'{"id": "a", "prompt": "Haiku?"}\n{"id": "b", "prompt": \n'

    # when
    response = admin_client.post(f"/projects/{project.pk}/import/", {"file": upload("p.jsonl", data)})

    # then
    assert response.status_code == 400
    assert "line 2: not valid JSON" in response.content.decode()
    assert (Prompt.objects.count(), Completion.objects.count(), PairTask.objects.count(), RateTask.objects.count()) == (0, 0, 0, 0)


@pytest.mark.parametrize("mode", [Project.Mode.COMPARE, Project.Mode.RATE])
def test_it_explains_prompts_alone_on_the_form(admin_client, mode):
    # when
    response = admin_client.get(f"/projects/{ProjectFactory(mode=mode).pk}/import/")

    # then
    html = response.content.decode()
    assert 'data-testid="import-prompts-only"' in html
    assert "<strong>Generate candidates</strong> on the dashboard" in html
    assert '<pre class="example" data-testid="csv-prompts-only-example"><span>id,prompt</span>' in html


def test_it_lays_out_the_examples_to_wrap_inside_their_box(admin_client, project):
    # given the examples' lines, some longer than a narrow window
    response = admin_client.get(f"/projects/{project.pk}/import/")
    html = response.content.decode()

    # then each example is a wrapping block inside the import page (the rules are in preftune.css)
    assert '<div class="import-page">' in html
    assert html.count('<pre class="example"') == 3
    assert "<pre>" not in html


def test_it_refuses_an_oversized_upload(admin_client, project, settings):
    # given
    settings.PREFTUNE_IMPORT_MAX_BYTES = 50

    # when
    response = admin_client.post(f"/projects/{project.pk}/import/", {"file": upload("big.jsonl", GOOD_JSONL * 2)})

    # then
    assert response.status_code == 413
    assert "over the 50-byte limit" in response.content.decode()
    assert Prompt.objects.count() == 0


def test_it_refuses_a_body_declared_too_large_before_reading_it(admin_client, project, settings):
    # given
    settings.PREFTUNE_IMPORT_MAX_BYTES = 50

    # when the declared length alone is far over the limit
    response = admin_client.generic(
        "POST",
        f"/projects/{project.pk}/import/",
        data=b"x" * 200_000,
        content_type="multipart/form-data; boundary=zzz",
    )

    # then
    assert response.status_code == 413
    assert "over the 50-byte limit" in response.content.decode()


def test_it_still_checks_csrf_on_upload(admin_user, project):
    # given a browser session without the form's CSRF token
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(admin_user)

    # when
    response = browser.post(f"/projects/{project.pk}/import/", {"file": upload("d.jsonl", GOOD_JSONL)})

    # then
    assert response.status_code == 403
    assert Prompt.objects.count() == 0

    # and with the token from the form, the same upload goes through
    page = browser.get(f"/projects/{project.pk}/import/")
    token = page.context["csrf_token"]
    response = browser.post(
        f"/projects/{project.pk}/import/", {"file": upload("d.jsonl", GOOD_JSONL), "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302
    assert Prompt.objects.count() == 1


def test_it_asks_for_a_file(admin_client, project):
    response = admin_client.post(f"/projects/{project.pk}/import/", {})
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()


def test_it_says_an_empty_upload_is_empty(admin_client, project):
    response = admin_client.post(f"/projects/{project.pk}/import/", {"file": upload("e.jsonl", b"")})
    assert response.status_code == 400
    assert "The file is empty." in response.content.decode()


@pytest.mark.parametrize("path", ["import/", "export/", "export/?format=dpo", "export/?format=kto"])
def test_it_forbids_annotators(annotator_client, project, path):
    response = annotator_client.get(f"/projects/{project.pk}/{path}")
    assert response.status_code == 403


def test_it_forbids_an_annotator_to_upload(annotator_client, project):
    response = annotator_client.post(f"/projects/{project.pk}/import/", {"file": upload("d.jsonl", GOOD_JSONL)})
    assert response.status_code == 403
    assert Prompt.objects.count() == 0


def test_it_sends_anonymous_users_to_log_in(client, project):
    response = client.get(f"/projects/{project.pk}/export/?format=dpo")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.fixture
def voted(project):
    """One pair won by a, one tie, one open pair (overlap 1 except the open one)."""
    voter = UserFactory()
    make_pair_vote(make_pair_task(project, 1), voter, "a")
    make_pair_vote(make_pair_task(project, 2), voter, "tie")
    make_pair_task(project, 3)
    return project


def test_it_downloads_dpo_with_the_summary_in_headers(admin_client, voted):
    # given a project name that is unsafe in a header
    voted.name = 'Ünïcode "quoted"; name\r\nX-Evil: 1'
    voted.save()

    # when
    response = admin_client.get(f"/projects/{voted.pk}/export/?format=dpo")

    # then
    assert response.status_code == 200
    assert response["Content-Type"] == "application/jsonl; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="unicode-quoted-name-x-evil-1-dpo-')
    assert response["Content-Disposition"].endswith('.jsonl"')
    assert response["X-Export-Format"] == "dpo"
    assert response["X-Export-Rows"] == "1"
    assert response["X-Export-Ties"] == "1"
    assert response["X-Export-Both-Bad"] == "0"
    assert response["X-Export-Disagreements"] == "0"
    assert response["X-Export-Incomplete"] == "1"
    assert response["X-Export-Considered"] == "2"
    rows = [json.loads(line) for line in response.content.decode().splitlines()]
    assert rows == [
        {
            "prompt": [{"role": "user", "content": "Prompt 1: what is 1+1?"}],
            "chosen": [{"role": "assistant", "content": "2"}],
            "rejected": [{"role": "assistant", "content": "3, I think"}],
        }
    ]


def test_it_downloads_kto(admin_client, voted):
    # when
    response = admin_client.get(f"/projects/{voted.pk}/export/?format=kto")

    # then
    assert response.status_code == 200
    assert response["X-Export-Rows"] == "2"
    assert response["X-Export-Conflicting"] == "0"
    labels = [json.loads(line)["label"] for line in response.content.decode().splitlines()]
    assert labels == [True, False]


def test_it_shows_the_export_page_with_both_summaries(admin_client, voted):
    # when
    response = admin_client.get(f"/projects/{voted.pk}/export/")

    # then
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-testid="export-dpo"' in html
    assert 'data-testid="export-kto"' in html
    assert 'name="format" value="dpo"' in html
    assert "Download DPO (1 row)" in html
    assert "Download KTO (2 rows)" in html


def test_it_refuses_an_unknown_export_format(admin_client, project):
    response = admin_client.get(f"/projects/{project.pk}/export/?format=sft")
    assert response.status_code == 400
    assert b"use ?format=dpo or ?format=kto" in response.content


def test_it_refuses_to_export_by_post(admin_client, project):
    response = admin_client.post(f"/projects/{project.pk}/export/?format=dpo")
    assert response.status_code == 405
