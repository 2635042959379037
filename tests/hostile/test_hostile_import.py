"""Hostile files through the import page: each one is refused with a 4xx page naming the problem, never a
500, and nothing is written. (tests/test_import.py covers the service's refusals one by one; these go
through the whole HTTP stack, with the files a careless or hostile admin would upload.)"""
from __future__ import annotations

import gzip
import html
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from labeling.importing import MAX_ERRORS_SHOWN
from tests.factories import ProjectFactory

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]

GOOD = '{"prompt": "ok", "completions": ["a", "b"]}\n'


def _line(**record) -> str:
    return json.dumps(record) + "\n"


def _upload(admin_client, project, name: str, data: bytes):
    return admin_client.post(f"/projects/{project.pk}/import/", {"file": SimpleUploadedFile(name, data)})


def _page_text(response) -> str:
    return html.unescape(response.content.decode())


HOSTILE_FILES = [
    pytest.param("d.jsonl", (GOOD + GOOD).replace("\n", "\r").encode(), "not valid JSON (Extra data", id="cr-only-line-ends"),
    pytest.param("d.jsonl", b'{"id": ' + b"9" * 5000 + b', "prompt": "x", "completions": ["a", "b"]}\n',
                 "line 1: not valid JSON (a number with too many digits)", id="5000-digit-number"),
    pytest.param("d.jsonl", b'{"prompt": NaN, "completions": ["a", "b"]}\n', "line 1: 'prompt' must be a string", id="nan-prompt"),
    pytest.param("d.jsonl", b'{"id": Infinity, "prompt": "x", "completions": ["a", "b"]}\n', "'id' must be a non-empty string",
                 id="infinite-id"),
    pytest.param("d.jsonl", _line(id=1.5, prompt="x", completions=["a", "b"]).encode(), "'id' must be a non-empty string",
                 id="float-id"),
    pytest.param("d.jsonl", _line(id=True, prompt="x", completions=["a", "b"]).encode(), "'id' must be a non-empty string",
                 id="bool-id"),
    pytest.param("d.jsonl", _line(id="x" * 201, prompt="x", completions=["a", "b"]).encode(), "'id' is longer than 200",
                 id="long-id"),
    pytest.param("d.jsonl", _line(prompt="x", completions=["a", "b"], split=None).encode(),
                 "'split' must be 'train' or 'heldout'", id="null-split"),
    pytest.param("d.jsonl", _line(messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                                  completions=["a", "b"]).encode(), "'messages'[0]'s 'content' must be a string", id="multimodal-content"),
    pytest.param("d.jsonl", _line(messages=[{"role": "user", "content": "q", "name": "bob"}], completions=["a", "b"]).encode(),
                 "must be an object with only 'role' and 'content'", id="message-extra-key"),
    pytest.param("d.jsonl", _line(messages=[{"role": "user", "content": "q"}, {"role": "system", "content": "s"},
                                            {"role": "user", "content": "q2"}], completions=["a", "b"]).encode(),
                 "a system message may only come first", id="system-not-first"),
    pytest.param("d.jsonl", _line(messages="hi", completions=["a", "b"]).encode(), "'messages' must be a non-empty list",
                 id="messages-string"),
    pytest.param("d.jsonl", _line(prompt="x", completions=["a", "b"], model="m" * 201).encode(),
                 "'model' must be a string of at most 200", id="long-model"),
    pytest.param("d.jsonl", _line(prompt="x", completions=["a", "b"], completion_models="m").encode(),
                 "'completion_models' must be a list of strings", id="models-not-list"),
    pytest.param("d.jsonl", _line(prompt="x", completions=["a", "b"], model="m", completion_models=["m", "n"]).encode(),
                 "either 'model' or 'completion_models'", id="model-and-models"),
    pytest.param("d.jsonl", _line(prompt="x", completions=["a", "b"], completion="c").encode(),
                 "either 'completions' or 'completion'", id="completion-and-completions"),
    pytest.param("d.jsonl", ("{" + '"a": {' * 30 + "}" * 30 + "}\n").encode(), "line 1: JSON nested too deeply", id="deep-objects"),
    pytest.param("d.jsonl", b"\xef\xbb\xbf", "The file has no prompts in it", id="bom-only"),
    pytest.param("d.jsonl", '{"prompt": "\u201csmart quotes\u201d", "completions": ["a", "b"]}\n'.encode("cp1252"),
                 "line 1: not valid UTF-8 (byte 0x93", id="windows-1252"),
    pytest.param("d.jsonl", gzip.compress(GOOD.encode() * 50, mtime=0), "save", id="gzip-renamed"),
    pytest.param("d.jsonl", b"\x89PNG\r\n\x1a\n" + b"\x00" * 16, "NUL byte", id="png-renamed"),
    pytest.param("d.csv", b'prompt,completion_1,completion_2\n"unterminated,a,b\n', "line 2: a quote (\") opens a cell that is never closed",
                 id="csv-unterminated-quote"),
    pytest.param("d.csv", b"prompt;completion_1;completion_2\nx;a;b\n", "unknown column 'prompt;completion_1;completion_2'",
                 id="csv-semicolons"),
    pytest.param("d.csv", b"prompt,completion_1,completion_2\n" + b"x" * 1_000_001 + b",a,b\n", "line 2: CSV error: field larger than field limit",
                 id="csv-huge-cell"),
    pytest.param("d.csv", b"prompt,completion_1,completion_2\n=HYPERLINK(\"http://x\"),=1+1,\n",
                 "line 2: compare projects pair two or more completions per prompt, and this prompt has one",
                 id="csv-formula-one-completion"),
    pytest.param("d.jsonl", (_line(prompt="alone") + _line(prompt="x", completions=["only"])).encode(),
                 "line 2: compare projects pair two or more completions per prompt, and this prompt has one: add a second "
                 "completion, or import the prompt without completions and generate candidates from the dashboard.",
                 id="prompt-alone-then-one-completion"),
    pytest.param("d.jsonl", _line(prompt="x", completions=[], completion_models=["m"]).encode(),
                 "'completion_models' has 1 names for 0 completions", id="no-completions-but-a-model-name"),
    pytest.param("d.jsonl", _line(prompt="x", completion="").encode(), "line 1: 'completion' is empty", id="empty-completion"),
    pytest.param("d.csv", b"prompt\nfirst\n\"unterminated\nthird\nfourth\n",
                 'line 3: a quote (") opens a cell that is never closed, so the rest of the file ran into that cell',
                 id="csv-prompt-only-unterminated-quote"),
    pytest.param("d.csv", b"prompt,completion_1,completion_2\nx,a,\"b\ny,c,d\n", "line 2: a quote (\") opens a cell that is never closed",
                 id="csv-unterminated-quote-in-last-column"),
    pytest.param("d.csv", b"\xef\xbb\xbf\r\n\r\n", "The file has no prompts in it", id="csv-bom-and-blank-lines"),
    pytest.param("d.csv", b",,\n,,\n", "The file has no prompts in it", id="csv-empty-cells-only"),
    pytest.param("d.tsv", b"prompt\tcompletion_1\tcompletion_2\nx\ta\tb\n", "the header has no 'prompt' column", id="tsv"),
]


@pytest.mark.parametrize(("filename", "data", "message"), HOSTILE_FILES)
def test_a_hostile_file_is_refused_and_nothing_is_written(admin_client, rows, filename, data, message):
    project = ProjectFactory(overlap=2)
    rows.snapshot()

    response = _upload(admin_client, project, filename, data)

    assert response.status_code == 400, response.status_code
    text = _page_text(response)
    assert "nothing was imported" in text.lower() or "Nothing was imported" in text
    assert message in text
    rows.assert_unchanged()


def test_a_file_of_many_bad_lines_lists_a_capped_number_of_problems(admin_client, rows):
    project = ProjectFactory()
    data = b"not json\n" * 50_000
    rows.snapshot()

    response = _upload(admin_client, project, "d.jsonl", data)

    assert response.status_code == 400
    text = _page_text(response)
    assert "50000 problems" in text and "…and 49800 more problems not listed." in text
    assert text.count("not valid JSON") == MAX_ERRORS_SHOWN
    rows.assert_unchanged()


def test_a_file_over_the_limit_is_413_before_it_is_read(admin_client, rows, settings):
    settings.PREFTUNE_IMPORT_MAX_BYTES = 1024
    project = ProjectFactory()
    rows.snapshot()

    response = _upload(admin_client, project, "d.jsonl", GOOD.encode() * 2000)

    assert response.status_code == 413
    assert "over the 1,024-byte limit" in _page_text(response)
    rows.assert_unchanged()


def test_an_upload_with_no_file_is_400(admin_client, rows):
    project = ProjectFactory()
    rows.snapshot()

    response = admin_client.post(f"/projects/{project.pk}/import/", {"notfile": "x"})

    assert response.status_code == 400
    assert "This field is required" in _page_text(response)
    rows.assert_unchanged()


def test_one_bad_line_among_thousands_of_good_ones_writes_nothing(admin_client, rows):
    project = ProjectFactory()
    good = "".join(_line(prompt=f"q{n}", completions=[f"a{n}", f"b{n}"]) for n in range(3000))
    rows.snapshot()

    response = _upload(admin_client, project, "d.jsonl", (good + '{"prompt": "last", "completions": ["same", "same"]}\n').encode())

    assert response.status_code == 400
    assert "line 3001: completions 1 and 2 are the same text" in _page_text(response)
    rows.assert_unchanged()


def test_one_bad_line_among_thousands_of_prompts_alone_writes_nothing(admin_client, rows):
    project = ProjectFactory()
    alone = "".join(_line(id=f"q{n}", prompt=f"q{n}") for n in range(3000))
    rows.snapshot()

    response = _upload(admin_client, project, "d.jsonl", (alone + _line(id="q7", prompt="again")).encode())

    assert response.status_code == 400
    assert "line 3001: id 'q7' already appears on line 8" in _page_text(response)
    rows.assert_unchanged()
