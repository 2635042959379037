"""labeling.importing.project_import: formats, task creation, and every way a file is refused."""
from __future__ import annotations

import json
from io import StringIO
from unittest import mock

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError

from labeling.importing import MAX_COMPLETIONS, ImportFailed, project_import
from labeling.models import Completion, PairTask, Project, Prompt, RateTask
from tests.factories import ProjectFactory


def jsonl(*records: dict) -> bytes:
    return "".join(json.dumps(record) + "\n" for record in records).encode()


def counts() -> tuple[int, int, int, int]:
    return Prompt.objects.count(), Completion.objects.count(), PairTask.objects.count(), RateTask.objects.count()


@pytest.fixture
def compare_project(db):
    return ProjectFactory(mode=Project.Mode.COMPARE, overlap=3)


@pytest.fixture
def rate_project(db):
    return ProjectFactory(mode=Project.Mode.RATE, overlap=2)


@pytest.fixture
def seeded(compare_project):
    """A project that already holds one imported prompt, so 'nothing written' means counts stay put."""
    project_import(
        project=compare_project, filename="first.jsonl", data=jsonl({"id": "old", "prompt": "Hi", "completions": ["a", "b"]})
    )
    return compare_project


# ---------------------------------------------------------------- what a good file creates


def test_it_imports_jsonl_into_a_compare_project(compare_project):
    # given
    data = jsonl(
        {"id": "q1", "prompt": "What is 2+2?", "completions": ["4", "5"]},
        {"id": "q2", "prompt": "Capital of France?", "completions": ["Paris", "Lyon", "Nice"], "split": "train"},
    )

    # when
    report = project_import(project=compare_project, filename="data.jsonl", data=data)

    # then
    assert (report.prompts, report.completions, report.tasks, report.heldout) == (2, 5, 4, 0)
    q1 = Prompt.objects.get(project=compare_project, external_id="q1")
    assert q1.messages == [{"role": "user", "content": "What is 2+2?"}]
    assert q1.split == "train"
    assert sorted(q1.completions.values_list("text", flat=True)) == ["4", "5"]
    assert set(Completion.objects.values_list("source", flat=True)) == {"imported"}
    assert set(PairTask.objects.values_list("overlap", "purpose", "status")) == {(3, "label", "open")}


def test_it_forms_every_pair_of_a_ranking(compare_project):
    # given a prompt ranked over four completions
    data = jsonl({"prompt": "Rank these", "completions": ["w", "x", "y", "z"]})

    # when
    report = project_import(project=compare_project, filename="rank.jsonl", data=data)

    # then six pairs, each two distinct completions of the prompt, no pair twice
    assert report.tasks == 6
    pairs = {
        frozenset((task.completion_a.text, task.completion_b.text))
        for task in PairTask.objects.select_related("completion_a", "completion_b")
    }
    assert len(pairs) == 6
    assert all(len(pair) == 2 for pair in pairs)


def test_it_shuffles_sides_reproducibly(compare_project):
    # given forty prompts whose "good" answer always comes first in the file
    data = jsonl(*({"id": f"q{n}", "prompt": f"Q{n}", "completions": [f"good {n}", f"bad {n}"]} for n in range(40)))
    other = ProjectFactory(mode=Project.Mode.COMPARE)

    # when the same file goes into two projects
    project_import(project=compare_project, filename="d.jsonl", data=data)
    project_import(project=other, filename="d.jsonl", data=data)

    # then the good answer is on side A only some of the time, and the same way both times
    def a_is_good(project: Project) -> list[bool]:
        tasks = PairTask.objects.filter(project=project).select_related("completion_a").order_by("prompt__external_id")
        return [task.completion_a.text.startswith("good") for task in tasks]

    first = a_is_good(compare_project)
    assert 5 < sum(first) < 35
    assert a_is_good(other) == first


def test_it_gives_heldout_prompts_no_tasks(compare_project):
    # given
    data = jsonl(
        {"id": "t", "prompt": "train me", "completions": ["a", "b"]},
        {"id": "h1", "prompt": "hold me out", "completions": ["c", "d"], "split": "heldout"},
        {"id": "h2", "prompt": "no answers yet", "split": "heldout"},
    )

    # when
    report = project_import(project=compare_project, filename="d.jsonl", data=data)

    # then
    assert (report.prompts, report.completions, report.tasks, report.heldout) == (3, 4, 1, 2)
    assert not PairTask.objects.filter(prompt__split="heldout").exists()
    assert Prompt.objects.get(external_id="h2").completions.count() == 0


def test_it_imports_chat_messages_and_model_names(compare_project):
    # given
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Name a prime."},
    ]
    data = jsonl(
        {"id": "chat", "messages": messages, "completions": ["7", "9"], "completion_models": ["m1", "m2"]},
        {"id": "one-model", "prompt": "x", "completions": ["p", "q"], "model": "m3"},
    )

    # when
    project_import(project=compare_project, filename="d.jsonl", data=data)

    # then
    chat = Prompt.objects.get(external_id="chat")
    assert chat.messages == messages
    assert dict(chat.completions.values_list("text", "model_name")) == {"7": "m1", "9": "m2"}
    assert set(Prompt.objects.get(external_id="one-model").completions.values_list("model_name", flat=True)) == {"m3"}


def test_it_imports_csv_with_numbered_completion_columns(compare_project):
    # given a spreadsheet export: byte order mark, CRLF, a quoted multi-line cell, an empty cell
    data = (
        "\ufeffid,prompt,completion_1,completion_2,completion_3,split\r\n"
        'q1,"Two lines:\nwhat is 2+2?",4,"five,\nI think",,train\r\n'
        "q2,Capital?,Paris,Lyon,Nice,\r\n"
        "q3,Later,,,,heldout\r\n"
    ).encode()

    # when
    report = project_import(project=compare_project, filename="data.csv", data=data)

    # then
    assert (report.prompts, report.completions, report.tasks, report.heldout) == (3, 5, 4, 1)
    q1 = Prompt.objects.get(external_id="q1")
    assert q1.messages == [{"role": "user", "content": "Two lines:\nwhat is 2+2?"}]
    assert sorted(q1.completions.values_list("text", flat=True)) == ["4", "five,\nI think"]
    assert Prompt.objects.get(external_id="q2").split == "train"


def test_it_imports_csv_with_lettered_completion_columns_into_a_rate_project(rate_project):
    # given
    data = b"prompt,completion_a,completion_b\nSay hi,Hi!,Hello.\nSay bye,Bye,\n"

    # when
    report = project_import(project=rate_project, filename="d.csv", data=data)

    # then one thumbs task per completion, overlap copied
    assert (report.prompts, report.completions, report.tasks) == (2, 3, 3)
    assert set(RateTask.objects.values_list("overlap", flat=True)) == {2}
    assert PairTask.objects.count() == 0


def test_it_creates_one_rate_task_per_train_completion(rate_project):
    # given
    data = jsonl(
        {"prompt": "a", "completion": "one"},
        {"prompt": "b", "completions": ["two", "three"]},
        {"prompt": "c", "completion": "held", "split": "heldout"},
    )

    # when
    report = project_import(project=rate_project, filename="d.jsonl", data=data)

    # then
    assert (report.prompts, report.completions, report.tasks, report.heldout) == (3, 4, 3, 1)
    assert sorted(RateTask.objects.values_list("completion__text", flat=True)) == ["one", "three", "two"]


def test_it_sniffs_the_format_when_the_extension_says_nothing(compare_project):
    # given
    data = jsonl({"prompt": "x", "completions": ["a", "b"]})

    # when
    report = project_import(project=compare_project, filename="pasted.txt", data=data)

    # then
    assert report.tasks == 1


# ---------------------------------------------------------------- prompts alone, waiting for generated candidates


def test_it_imports_compare_prompts_without_completions_to_wait_for_candidates(compare_project):
    # given prompts alone, a ranked prompt, and a held-out prompt alone
    data = jsonl(
        {"id": "p1", "prompt": "Write a haiku about autumn."},
        {"id": "p2", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a prime."}]},
        {"id": "ranked", "prompt": "2+2?", "completions": ["4", "5"]},
        {"id": "h", "prompt": "Explain DNS.", "split": "heldout"},
    )

    # when
    report = project_import(project=compare_project, filename="d.jsonl", data=data)

    # then the prompts alone are stored as train prompts with no completions and no tasks, and counted
    assert (report.prompts, report.completions, report.tasks, report.heldout) == (4, 2, 1, 1)
    assert report.awaiting_candidates == 2
    waiting = Prompt.objects.filter(project=compare_project, external_id__in=["p1", "p2"])
    assert {(p.split, p.completions.count()) for p in waiting} == {("train", 0)}
    assert not PairTask.objects.filter(prompt__in=waiting).exists()
    assert str(report) == (
        "4 prompts (1 held out), 2 completions, 1 tasks; "
        "2 prompts have no completions yet: generate candidates from the dashboard"
    )


def test_it_imports_rate_prompts_without_completions_to_wait_for_candidates(rate_project):
    # given
    data = jsonl({"prompt": "alone"}, {"prompt": "answered", "completion": "yes"})

    # when
    report = project_import(project=rate_project, filename="d.jsonl", data=data)

    # then
    assert (report.prompts, report.completions, report.tasks, report.awaiting_candidates) == (2, 1, 1, 1)
    assert report.next_step == "1 prompt has no completions yet: generate candidates from the dashboard"
    assert Prompt.objects.get(messages=[{"role": "user", "content": "alone"}]).completions.count() == 0
    assert list(RateTask.objects.values_list("completion__text", flat=True)) == ["yes"]


@pytest.mark.parametrize("mode", [Project.Mode.COMPARE, Project.Mode.RATE])
def test_it_imports_a_csv_of_prompts_alone(db, mode):
    # given a spreadsheet with only prompt, id and split columns
    project = ProjectFactory(mode=mode)
    data = b"id,prompt,split\r\nq1,Write a haiku about autumn.,train\r\nq2,\"Two lines:\nwhat is DNS?\",\r\nq3,Later,heldout\r\n"

    # when
    report = project_import(project=project, filename="prompts.csv", data=data)

    # then
    assert (report.prompts, report.completions, report.tasks, report.heldout, report.awaiting_candidates) == (3, 0, 0, 1, 2)
    assert Prompt.objects.get(external_id="q2").messages == [{"role": "user", "content": "Two lines:\nwhat is DNS?"}]
    assert sorted(Prompt.objects.filter(project=project).values_list("external_id", "split")) == [
        ("q1", "train"), ("q2", "train"), ("q3", "heldout"),
    ]
    assert (Completion.objects.count(), PairTask.objects.count(), RateTask.objects.count()) == (0, 0, 0)


def test_it_imports_a_csv_with_only_a_prompt_column(compare_project):
    # when
    report = project_import(project=compare_project, filename="p.csv", data=b"prompt\nfirst\nsecond\n")

    # then
    assert (report.prompts, report.completions, report.tasks, report.awaiting_candidates) == (2, 0, 0, 2)


def test_it_says_nothing_about_candidates_when_every_prompt_has_completions(compare_project):
    # when
    report = project_import(project=compare_project, filename="d.jsonl", data=GOOD.encode())

    # then
    assert report.awaiting_candidates == 0
    assert report.next_step == ""
    assert str(report) == "1 prompts (0 held out), 2 completions, 1 tasks"


def test_it_keeps_one_completion_on_a_heldout_compare_prompt(compare_project):
    # when
    report = project_import(
        project=compare_project, filename="d.jsonl", data=jsonl({"prompt": "x", "completion": "ref", "split": "heldout"})
    )

    # then held-out prompts are not paired, so one completion is fine and nothing waits for candidates
    assert (report.prompts, report.completions, report.tasks, report.awaiting_candidates) == (1, 1, 0, 0)


# ---------------------------------------------------------------- every way a file is refused

GOOD = '{"prompt": "ok", "completions": ["a", "b"]}\n'
DEEP = GOOD + '{"completions": ' + "[" * 100_000 + "]" * 100_000 + "}\n"
MANY = [f"answer {n}" for n in range(MAX_COMPLETIONS + 1)]

REFUSED = [
    pytest.param("d.jsonl", b"", "The file is empty", id="empty"),
    pytest.param("d.jsonl", b"\n  \n", "The file is empty", id="blank"),
    pytest.param("d.jsonl", (GOOD + '{"prompt": "caf\xe9"}\n').encode("latin-1"), "line 2: not valid UTF-8", id="latin-1"),
    pytest.param("d.jsonl", GOOD.encode("utf-16"), "UTF-16", id="utf-16-bom"),
    pytest.param("d.jsonl", GOOD.encode("utf-16-le"), "line 1: NUL byte", id="utf-16-no-bom"),
    pytest.param("d.jsonl", (GOOD * 2).encode() + b'{"prompt": "a\x00"}', "line 3: NUL byte", id="nul-byte"),
    pytest.param("d.jsonl", b'{"prompt": "a\\u0000b", "completions": ["a", "b"]}', "line 1: 'prompt' holds a NUL", id="nul-escape"),
    pytest.param("d.jsonl", b'{"prompt": "x", "completions": ["\\ud800", "b"]}', "invalid \\u escape", id="lone-surrogate"),
    pytest.param("d.jsonl", (GOOD + '{"prompt": "x",\n').encode(), "line 2: not valid JSON", id="bad-json"),
    pytest.param("d.jsonl", DEEP.encode(), "line 2: JSON nested too deeply", id="deep-json-recursion"),
    pytest.param(
        "d.jsonl", jsonl({"prompt": "x", "completions": ["a", "b"], "model": [[[[[[[[[[[[[[[[[[[[[["x"]]]]]]]]]]]]]]]]]]]]]]}),
        "line 1: JSON nested too deeply", id="deep-json",
    ),
    pytest.param("d.jsonl", jsonl({"prompt": "x" * 1_000_001, "completions": ["a", "b"]}), "line 1: longer than", id="long-line"),
    pytest.param("d.jsonl", b'["x", "y"]\n', "one JSON array", id="json-array"),
    pytest.param("d.jsonl", GOOD.encode() + b'"just text"\n', "line 2: expected a JSON object, got a string", id="not-object"),
    pytest.param("d.jsonl", jsonl({"completions": ["a", "b"]}), "line 1: missing 'prompt'", id="no-prompt"),
    pytest.param(
        "d.jsonl", jsonl({"prompt": "x", "completion": "only one"}),
        "line 1: compare projects pair two or more completions per prompt, and this prompt has one: add a second "
        "completion, or import the prompt without completions and generate candidates from the dashboard.",
        id="one-completion",
    ),
    pytest.param(
        "d.jsonl", jsonl({"prompt": "waits for candidates"}, {"prompt": "x", "completions": ["only one"]}),
        "line 2: compare projects pair two or more completions per prompt", id="prompt-only-then-one-completion",
    ),
    pytest.param("d.jsonl", b'{"prompt": "waits for candidates"}\n{oops\n', "line 2: not valid JSON", id="prompt-only-then-bad-json"),
    pytest.param("d.jsonl", jsonl({"prompt": "alone"}, {"prompt": 7}), "line 2: 'prompt' must be a string", id="prompt-only-then-bad-prompt"),
    pytest.param("d.jsonl", jsonl({"prompt": "x", "completions": "a"}), "line 1: 'completions' must be a list of strings", id="completions-str"),
    pytest.param("d.jsonl", jsonl({"prompt": "x", "completions": [1, 2]}), "line 1: 'completions' must be a list of strings", id="completions-int"),
    pytest.param("d.jsonl", jsonl({"prompt": 5, "completions": ["a", "b"]}), "line 1: 'prompt' must be a string, not a number", id="prompt-int"),
    pytest.param("d.jsonl", jsonl({"prompt": "  ", "completions": ["a", "b"]}), "line 1: 'prompt' is empty", id="prompt-empty"),
    pytest.param("d.jsonl", jsonl({"prompt": "x", "completions": ["a", " "]}), "line 1: 'completions'[1] is empty", id="completion-empty"),
    pytest.param("d.jsonl", jsonl({"prompt": "x", "completions": MANY}), "line 1: 11 completions; at most 10", id="too-many"),
    pytest.param("d.jsonl", jsonl({"prompt": "x", "completions": ["a", "b", "a "]}), "line 1: completions 1 and 3 are the same text", id="dup-completion"),
    pytest.param(
        "d.jsonl", jsonl({"id": "q", "prompt": "x", "completions": ["a", "b"]}, {"id": "q", "prompt": "y", "completions": ["a", "b"]}),
        "line 2: id 'q' already appears on line 1", id="dup-id-in-file",
    ),
    pytest.param("d.jsonl", jsonl({"id": "old", "prompt": "x", "completions": ["a", "b"]}), "line 1: id 'old' is already in this project", id="dup-id-in-project"),
    pytest.param("d.jsonl", jsonl({"id": "", "prompt": "x", "completions": ["a", "b"]}), "'id' must be a non-empty string", id="empty-id"),
    pytest.param("d.jsonl", jsonl({"prompt": "x", "completions": ["a", "b"], "split": "test"}), "'split' must be 'train' or 'heldout'", id="bad-split"),
    pytest.param("d.jsonl", jsonl({"prompt": "x", "completions": ["a", "b"], "chosen": "a"}), "line 1: unknown field 'chosen'", id="unknown-field"),
    pytest.param("d.jsonl", jsonl({"prompt": "x", "messages": [], "completions": ["a", "b"]}), "either 'prompt' or 'messages'", id="prompt-and-messages"),
    pytest.param(
        "d.jsonl", jsonl({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "completions": ["a", "b"]}),
        "the last of 'messages' must be a user message", id="last-not-user",
    ),
    pytest.param("d.jsonl", jsonl({"messages": [{"role": "bot", "content": "q"}], "completions": ["a", "b"]}), "has role 'bot'", id="bad-role"),
    pytest.param(
        "d.jsonl", jsonl({"prompt": "x", "completions": ["a", "b"], "completion_models": ["m"]}),
        "'completion_models' has 1 names for 2 completions", id="models-mismatch",
    ),
    pytest.param("d.txt", b"hello there\n", "Cannot tell the format", id="unknown-format"),
    pytest.param("d.csv", b"question,completion_1\nx,a\n", "line 1: unknown column 'question'", id="csv-unknown-column"),
    pytest.param("d.csv", b"id,completion_1\nx,a\n", "the header has no 'prompt' column", id="csv-no-prompt"),
    pytest.param("d.csv", b"prompt,completion_1,completion_2\nx,a,b,c\n", "line 2: 4 values where the header has 3 columns (prompt, completion_1, completion_2). A text with a comma in it needs double quotes", id="csv-cells"),
    pytest.param("d.csv", b"prompt,completion_1,completion_2\nx,a\n",
                 "line 2: 2 values where the header has 3 columns (prompt, completion_1, completion_2), so completion_2 is missing",
                 id="csv-cells-missing"),
    pytest.param(
        "d.csv", b"prompt,completion_1,completion_2\nx,a,\n", "line 2: compare projects pair two or more completions per prompt",
        id="csv-one-completion",
    ),
    pytest.param("d.csv", b"id,prompt,split\nq1,alone,train\nq2,,train\n", "line 3: 'prompt' is empty", id="csv-prompt-only-then-empty"),
    pytest.param("d.csv", b'prompt\nalone\n"never closed\nswallowed\n', "line 3: a quote (\") opens a cell that is never closed",
                 id="csv-prompt-only-unclosed-quote"),
    pytest.param("d.csv", b"id,prompt,split\nq1,alone,train\nq2,x,test\n", "line 3: 'split' must be", id="csv-prompt-only-then-bad-split"),
    pytest.param("d.csv", b"prompt,completion,completion\nx,a,b\n", "column 'completion' appears more than once", id="csv-dup-column"),
    pytest.param("d.csv", b"prompt\n", "no prompts in it", id="csv-header-only"),
]


@pytest.mark.parametrize(("filename", "data", "message"), REFUSED)
def test_it_refuses_a_bad_file_and_writes_nothing(seeded, filename, data, message):
    # given a project that already holds data
    before = counts()

    # when
    with pytest.raises(ImportFailed) as caught:
        project_import(project=seeded, filename=filename, data=data)

    # then the problem is named and nothing changed
    assert any(message in error for error in caught.value.errors), caught.value.errors
    assert counts() == before


def test_it_refuses_a_file_over_the_size_limit_before_parsing(seeded, settings):
    # given
    settings.PREFTUNE_IMPORT_MAX_BYTES = 100
    before = counts()

    # when
    with pytest.raises(ImportFailed) as caught:
        project_import(project=seeded, filename="d.jsonl", data=b"not even json " * 10)

    # then
    assert caught.value.errors == ["The file is 140 bytes, over the 100 bytes limit; split it into smaller files."]
    assert counts() == before


def test_it_refuses_a_one_completion_compare_prompt_with_what_to_do(compare_project):
    # when
    with pytest.raises(ImportFailed) as caught:
        project_import(project=compare_project, filename="d.jsonl", data=jsonl({"prompt": "x", "completion": "only"}))

    # then the message says both ways out, and nothing is written
    assert caught.value.errors == [
        "line 1: compare projects pair two or more completions per prompt, and this prompt has one: add a second "
        "completion, or import the prompt without completions and generate candidates from the dashboard."
    ]
    assert str(caught.value).endswith("Nothing was imported.")
    assert counts() == (0, 0, 0, 0)


def test_it_lists_every_problem_in_line_order_and_imports_no_good_line(seeded):
    # given good lines 1 and 3, problems on lines 2, 4 and 5
    data = (
        GOOD
        + '{"prompt": "x", "completion": "one"}\n'
        + GOOD
        + "{oops\n"
        + '{"prompt": "", "completions": ["a", "a"]}\n'
    ).encode()
    before = counts()

    # when
    with pytest.raises(ImportFailed) as caught:
        project_import(project=seeded, filename="d.jsonl", data=data)

    # then
    assert [error.split(":")[0] for error in caught.value.errors] == ["line 2", "line 4", "line 5"]
    assert str(caught.value) == "3 problems in 'd.jsonl'; nothing was imported."
    assert counts() == before


def test_it_caps_the_list_of_problems(compare_project):
    # given 250 bad lines
    data = b'{"prompt": 1}\n' * 250

    # when
    with pytest.raises(ImportFailed) as caught:
        project_import(project=compare_project, filename="d.jsonl", data=data)

    # then
    assert caught.value.error_count == 250
    assert len(caught.value.errors) == 201
    assert caught.value.errors[-1] == "…and 50 more problems not listed."


def test_it_writes_nothing_when_the_database_refuses_part_way(seeded):
    # given a write that fails after the prompts and completions went in
    before = counts()
    data = jsonl({"id": "new", "prompt": "x", "completions": ["a", "b"]})

    # when
    with (
        mock.patch.object(PairTask.objects, "bulk_create", side_effect=IntegrityError("duplicate key")),
        pytest.raises(ImportFailed) as caught,
    ):
        project_import(project=seeded, filename="d.jsonl", data=data)

    # then
    assert "at the same time" in caught.value.errors[0]
    assert counts() == before


# ---------------------------------------------------------------- the import_prompts command


def test_it_imports_from_the_command_line(compare_project, tmp_path):
    # given
    path = tmp_path / "prompts.jsonl"
    path.write_bytes(jsonl({"prompt": "x", "completions": ["a", "b", "c"]}))
    out = StringIO()

    # when
    call_command("import_prompts", "--project", compare_project.name, str(path), stdout=out)

    # then
    assert "1 prompts (0 held out), 3 completions, 3 tasks" in out.getvalue()
    assert PairTask.objects.filter(project=compare_project).count() == 3


@pytest.mark.parametrize("mode", [Project.Mode.COMPARE, Project.Mode.RATE])
def test_it_imports_prompts_alone_from_the_command_line(db, tmp_path, mode):
    # given
    project = ProjectFactory(mode=mode)
    path = tmp_path / "prompts.jsonl"
    path.write_bytes(jsonl({"id": "a", "prompt": "x"}, {"id": "b", "prompt": "y"}))
    out = StringIO()

    # when
    call_command("import_prompts", "--project", project.name, str(path), stdout=out)

    # then
    assert out.getvalue().strip() == (
        f"Imported prompts.jsonl into {project.name!r}: 2 prompts (0 held out), 0 completions, 0 tasks; "
        "2 prompts have no completions yet: generate candidates from the dashboard."
    )
    assert sorted(Prompt.objects.filter(project=project).values_list("external_id", flat=True)) == ["a", "b"]
    assert (Completion.objects.count(), PairTask.objects.count(), RateTask.objects.count()) == (0, 0, 0)


def test_the_command_writes_nothing_when_a_prompt_alone_shares_the_file_with_a_bad_line(compare_project, tmp_path):
    # given
    path = tmp_path / "prompts.csv"
    path.write_bytes(b"id,prompt\nq1,alone\nq1,again\n")
    err = StringIO()

    # when
    with pytest.raises(CommandError, match="id 'q1' already appears on line 2"):
        call_command("import_prompts", "--project", compare_project.name, str(path), stderr=err)

    # then
    assert counts() == (0, 0, 0, 0)


def test_it_prints_every_problem_and_fails_on_the_command_line(compare_project, tmp_path):
    # given
    path = tmp_path / "prompts.jsonl"
    path.write_bytes(b'{"prompt": "x", "completion": "one"}\n{bad\n')
    err = StringIO()

    # when
    with pytest.raises(CommandError, match="2 problems"):
        call_command("import_prompts", "--project", compare_project.name, str(path), stderr=err)

    # then
    assert "line 1: compare projects pair two or more completions per prompt, and this prompt has one" in err.getvalue()
    assert "line 2: not valid JSON" in err.getvalue()
    assert counts() == (0, 0, 0, 0)


def test_it_names_a_missing_project_on_the_command_line(db, tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(GOOD.encode())
    with pytest.raises(CommandError, match="No project named 'nope'"):
        call_command("import_prompts", "--project", "nope", str(path))
