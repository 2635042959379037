"""Export: the pure aggregation rules in labeling.exporting, and the whole path from votes to TRL files."""
from __future__ import annotations

import json
from io import StringIO

import pytest
from datasets import load_dataset
from django.core.management import call_command

from labeling.exporting import ExportSummary, PairData, RateData, VoteData, dpo_rows, kto_rows, pair_outcome
from labeling.importing import project_import
from labeling.models import PairTask, PairVote, Project, RateTask
from labeling.selectors import export_jsonl, project_export
from tests.factories import ProjectFactory, UserFactory, make_pair_task, make_pair_vote, make_rating

Q1 = [{"role": "user", "content": "q1"}]
Q2 = [{"role": "user", "content": "q2"}]
Q3 = [{"role": "user", "content": "q3"}]


def assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def votes(*choices: str) -> list[VoteData]:
    return [VoteData(choice) for choice in choices]


# ---------------------------------------------------------------- pair_outcome


@pytest.mark.parametrize(
    ("choices", "adjudicated", "expected"),
    [
        (["a"], "", "a"),
        (["a", "a", "b"], "", "a"),
        (["b", "b", "tie"], "", "b"),
        (["tie", "tie", "a"], "", "tie"),
        (["both_bad", "both_bad", "b"], "", "both_bad"),
        (["a", "b"], "", "disagreement"),
        (["a", "a", "b", "b"], "", "disagreement"),
        (["a", "b", "tie"], "", "disagreement"),
        (["a", "b", "both_bad", "a"], "", "disagreement"),
        ([], "", "disagreement"),
        (["a", "b"], "b", "b"),
        (["a", "a", "a"], "both_bad", "both_bad"),
        (["a", "a", "a"], "tie", "tie"),
    ],
)
def test_it_decides_a_pair_by_adjudication_then_strict_majority(choices, adjudicated, expected):
    assert pair_outcome(choices, adjudicated) == expected


def test_it_refuses_an_unknown_adjudication():
    with pytest.raises(ValueError, match="Unknown adjudicated choice 'c'"):
        pair_outcome(["a"], "c")


# ---------------------------------------------------------------- dpo_rows and kto_rows on known votes

PAIRS = [
    # 1: majority a
    PairData(1, 1, Q1, "q1 good", "q1 bad", votes("a", "a", "b")),
    # 2: b wins; a losing vote's edit is ignored, the earliest winning edit is the chosen text
    PairData(
        2, 2, Q2, "q2 meh", "q2 fine",
        [VoteData("a", "q2 meh, edited"), VoteData("b"), VoteData("b", "q2 fine, edited first"), VoteData("b", "q2 later")],
    ),
    # 3: tie, 4: both bad, 5: disagreement, 6: disagreement settled by an admin, 7: still open
    PairData(3, 3, Q3, "t1", "t2", votes("tie", "tie", "a")),
    PairData(4, 3, Q3, "bb1", "bb2", votes("both_bad", "both_bad")),
    PairData(5, 3, Q3, "d1", "d2", votes("a", "b")),
    PairData(6, 3, Q3, "adj loser", "adj winner", votes("a", "b"), adjudicated="b"),
    PairData(7, 3, Q3, "open1", "open2", votes("a"), complete=False),
]


def test_it_builds_dpo_rows_from_known_votes():
    # when
    rows, summary = dpo_rows(PAIRS)

    # then
    assert rows == [
        {"prompt": Q1, "chosen": assistant("q1 good"), "rejected": assistant("q1 bad")},
        {"prompt": Q2, "chosen": assistant("q2 fine, edited first"), "rejected": assistant("q2 meh")},
        {"prompt": Q3, "chosen": assistant("adj winner"), "rejected": assistant("adj loser")},
    ]
    assert summary == ExportSummary(
        considered=6, rows=3, ties=1, both_bad=1, disagreements=1, conflicting=0, incomplete=1, edited=1
    )


def test_an_answer_written_on_a_tie_or_both_bad_is_preferred_to_both_shown_answers():
    # given: both answers missed the guideline; on the tie one voter wrote the answer it should have been, on the
    # both-bad pair the first rewrite counts, and a rewrite by the losing side of a decided pair is ignored
    pairs = [
        PairData(1, 1, Q1, "plain one", "plain two", [VoteData("tie"), VoteData("tie", "Hello! A polite answer."), VoteData("a")]),
        PairData(2, 2, Q2, "bad one", "bad two", [VoteData("both_bad", "A good answer."), VoteData("both_bad", "Later.")]),
        PairData(3, 3, Q3, "t1", "t2", [VoteData("tie"), VoteData("tie")]),
        PairData(4, 3, Q3, "won", "lost", [VoteData("a"), VoteData("a"), VoteData("tie", "ignored")]),
    ]

    # when
    rows, summary = dpo_rows(pairs)

    # then
    assert rows == [
        {"prompt": Q1, "chosen": assistant("Hello! A polite answer."), "rejected": assistant("plain one")},
        {"prompt": Q1, "chosen": assistant("Hello! A polite answer."), "rejected": assistant("plain two")},
        {"prompt": Q2, "chosen": assistant("A good answer."), "rejected": assistant("bad one")},
        {"prompt": Q2, "chosen": assistant("A good answer."), "rejected": assistant("bad two")},
        {"prompt": Q3, "chosen": assistant("won"), "rejected": assistant("lost")},
    ]
    assert (summary.rows, summary.edited, summary.ties, summary.both_bad, summary.considered) == (5, 4, 1, 0, 4)


def test_a_pair_whose_chosen_answer_was_cut_off_is_left_out_and_counted():
    # given: a cut-off answer beating a finished one, two cut-off answers, a finished winner over a cut-off
    # loser, and a cut-off winner an annotator edited (the edit is what would be trained on)
    pairs = [
        PairData(1, 1, Q1, "cut off and dense", "finished", votes("a"), cut_off_a=True),
        PairData(2, 2, Q2, "cut one", "cut two", votes("b"), cut_off_a=True, cut_off_b=True),
        PairData(3, 3, Q3, "finished winner", "cut loser", votes("a"), cut_off_b=True),
        PairData(4, 3, Q3, "cut winner", "other", [VoteData("a", "cut winner, finished by hand.")], cut_off_a=True),
    ]

    # when
    rows, summary = dpo_rows(pairs)
    kept, kept_summary = dpo_rows(pairs, keep_cut_off_chosen=True)

    # then
    assert [row["chosen"] for row in rows] == [assistant("finished winner"), assistant("cut winner, finished by hand.")]
    assert (summary.rows, summary.cut_off_chosen, summary.considered, summary.edited) == (2, 2, 4, 1)
    assert len(kept) == 4 and kept_summary.cut_off_chosen == 0


def test_the_export_reads_which_answers_were_cut_off_from_the_completions(db):
    # given: two decided pairs, one won by an answer that hit the token limit
    project = ProjectFactory(mode=Project.Mode.COMPARE, overlap=1)
    annotator = UserFactory()
    finished, cut = make_pair_task(project, 1), make_pair_task(project, 2)
    cut.completion_a.finish_reason = "length"
    cut.completion_a.save(update_fields=["finish_reason"])
    for task in (finished, cut):
        make_pair_vote(task, annotator, "a")

    # when
    rows, summary = project_export(project=project, fmt="dpo")

    # then
    assert [row["chosen"] for row in rows] == [assistant(finished.completion_a.text)]
    assert summary.cut_off_chosen == 1


@pytest.fixture
def cut_off_project(db):
    """Three decided pairs; the winner of the second hit the token limit."""
    project = ProjectFactory(mode=Project.Mode.COMPARE, overlap=1)
    annotator = UserFactory()
    tasks = [make_pair_task(project, n) for n in range(3)]
    tasks[1].completion_a.finish_reason = "length"
    tasks[1].completion_a.save(update_fields=["finish_reason"])
    for task in tasks:
        make_pair_vote(task, annotator, "a")
    return project


def test_the_export_page_counts_cut_off_winners_and_can_keep_them(admin_client, cut_off_project):
    url = f"/projects/{cut_off_project.pk}/export/"

    default = admin_client.get(url).content.decode()
    kept = admin_client.get(url + "?keep_cut_off_chosen=1").content.decode()

    assert 'data-testid="export-cut-off">1<' in default and "Download DPO (2 rows)" in default
    assert 'data-testid="export-cut-off"' not in kept and "Download DPO (3 rows)" in kept
    assert 'name="keep_cut_off_chosen" value="1" checked' in kept


def test_the_download_the_api_and_the_command_keep_cut_off_winners_only_when_asked(
    admin_client, admin_user, client, cut_off_project
):
    from labeling.services import api_token_create

    page = f"/projects/{cut_off_project.pk}/export/?format=dpo"
    api = f"/api/projects/{cut_off_project.pk}/export?format=dpo"
    auth = {"HTTP_AUTHORIZATION": f"Token {api_token_create(user=admin_user)}"}

    downloads = [admin_client.get(page), admin_client.get(page + "&keep_cut_off_chosen=1")]
    api_calls = [client.get(api, **auth), client.get(api + "&keep_cut_off_chosen=1", **auth)]
    printed = []
    for extra in ([], ["--keep-cut-off-chosen"]):
        out = StringIO()
        call_command(
            "export_preferences", "--project", cut_off_project.name, "--format", "dpo", *extra, stdout=out, stderr=StringIO()
        )
        printed.append(out.getvalue())

    assert [len(r.content.splitlines()) for r in downloads] == [2, 3]
    assert [len(r.content.splitlines()) for r in api_calls] == [2, 3]
    assert [len(text.splitlines()) for text in printed] == [2, 3]
    assert downloads[0]["X-Export-Cut-Off-Chosen"] == "1" and api_calls[1]["X-Export-Cut-Off-Chosen"] == "0"


def test_it_builds_kto_rows_from_known_votes_and_ratings():
    # given a ranking x > y > z decomposed into pairs, so y is both chosen and rejected
    ranking = [
        PairData(10, 4, Q1, "x", "y", votes("a")),
        PairData(11, 4, Q1, "z", "y", votes("b")),
        PairData(12, 4, Q1, "x", "z", votes("a")),
    ]
    rates = [
        RateData(20, 5, Q2, "thumbs up", ["up", "up", "down"]),
        RateData(21, 5, Q2, "thumbs down", ["down"]),
        RateData(22, 5, Q2, "split", ["up", "down"]),
        RateData(23, 5, Q2, "not yet", ["up"], complete=False),
        # the same text already labelled False by a pair on the same prompt: one row only
        RateData(24, 1, Q1, "q1 bad", ["down", "down"]),
    ]

    # when
    rows, summary = kto_rows(PAIRS + ranking, rates)

    # then
    assert rows == [
        {"prompt": Q1, "completion": assistant("q1 good"), "label": True},
        {"prompt": Q1, "completion": assistant("q1 bad"), "label": False},
        {"prompt": Q2, "completion": assistant("q2 fine, edited first"), "label": True},
        {"prompt": Q2, "completion": assistant("q2 meh"), "label": False},
        {"prompt": Q3, "completion": assistant("bb1"), "label": False},
        {"prompt": Q3, "completion": assistant("bb2"), "label": False},
        {"prompt": Q3, "completion": assistant("adj winner"), "label": True},
        {"prompt": Q3, "completion": assistant("adj loser"), "label": False},
        {"prompt": Q1, "completion": assistant("x"), "label": True},
        {"prompt": Q1, "completion": assistant("z"), "label": False},
        {"prompt": Q2, "completion": assistant("thumbs up"), "label": True},
        {"prompt": Q2, "completion": assistant("thumbs down"), "label": False},
    ]
    assert summary == ExportSummary(
        considered=13, rows=12, ties=1, both_bad=1, disagreements=2, conflicting=1, incomplete=2, edited=1
    )


def test_it_exports_nothing_from_nothing():
    assert dpo_rows([]) == ([], ExportSummary())
    assert kto_rows([], []) == ([], ExportSummary())


def test_it_writes_one_json_object_per_line():
    rows = [{"prompt": Q1, "label": True}, {"prompt": [{"role": "user", "content": "é\n"}], "label": False}]
    data = export_jsonl(rows)
    assert data.count(b"\n") == 2
    assert [json.loads(line) for line in data.decode().splitlines()] == rows
    assert "é".encode() in data


# ---------------------------------------------------------------- from the database to files TRL loads


def vote_for(task: PairTask, annotator, winner_text: str, *, edited_text: str = "") -> PairVote:  # noqa: ANN001
    choice = "a" if task.completion_a.text == winner_text else "b"
    assert winner_text in (task.completion_a.text, task.completion_b.text)
    vote = make_pair_vote(task, annotator, choice)
    if edited_text:
        PairVote.objects.filter(pk=vote.pk).update(edited_text=edited_text)
    return vote


def pair_of(project: Project, text_1: str, text_2: str) -> PairTask:
    return (
        PairTask.objects.select_related("completion_a", "completion_b")
        .filter(project=project, completion_a__text__in=[text_1, text_2], completion_b__text__in=[text_1, text_2])
        .get()
    )


@pytest.fixture
def voted_project(db):
    """A compare project (overlap 2) with a won pair (one vote edited), a tie, a 3-way ranking and an open pair."""
    project = ProjectFactory(mode=Project.Mode.COMPARE, overlap=2)
    lines = [
        {"id": "p1", "prompt": "Capital of France?", "completions": ["Paris.", "Lyon."]},
        {"id": "p2", "prompt": "Pick one", "completions": ["left-ish", "right-ish"]},
        {"id": "p3", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Rank"}],
         "completions": ["r1", "r2", "r3"]},
        {"id": "p4", "prompt": "Not done", "completions": ["o1", "o2"]},
        {"id": "p5", "prompt": "Held out", "split": "heldout"},
    ]
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    project_import(project=project, filename="voted.jsonl", data=data)
    ann1, ann2 = UserFactory(), UserFactory()

    france = pair_of(project, "Paris.", "Lyon.")
    vote_for(france, ann1, "Paris.", edited_text="Paris, since 508.")
    vote_for(france, ann2, "Paris.")
    tie = pair_of(project, "left-ish", "right-ish")
    make_pair_vote(tie, ann1, "tie")
    make_pair_vote(tie, ann2, "tie")
    for winner, loser in (("r1", "r2"), ("r2", "r3"), ("r1", "r3")):
        task = pair_of(project, winner, loser)
        vote_for(task, ann1, winner)
        vote_for(task, ann2, winner)
    vote_for(pair_of(project, "o1", "o2"), ann1, "o1")
    return project


def test_it_exports_dpo_from_the_database_for_trl(voted_project, tmp_path, django_assert_max_num_queries):
    # when
    with django_assert_max_num_queries(3):
        rows, summary = project_export(project=voted_project, fmt="dpo")
    path = tmp_path / "dpo.jsonl"
    path.write_bytes(export_jsonl(rows))
    dataset = load_dataset("json", data_files=str(path))["train"]

    # then
    assert dataset.column_names == ["prompt", "chosen", "rejected"]
    assert dataset.num_rows == 4
    assert (summary.considered, summary.rows, summary.ties, summary.incomplete, summary.edited) == (5, 4, 1, 1, 1)
    france = next(row for row in dataset if row["prompt"][-1]["content"] == "Capital of France?")
    assert france["chosen"] == assistant("Paris, since 508.")
    assert france["rejected"] == assistant("Lyon.")
    ranked = [row for row in dataset if row["prompt"][-1]["content"] == "Rank"]
    assert sorted((row["chosen"][0]["content"], row["rejected"][0]["content"]) for row in ranked) == [
        ("r1", "r2"),
        ("r1", "r3"),
        ("r2", "r3"),
    ]
    assert ranked[0]["prompt"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Rank"}]


def test_it_exports_kto_from_the_database_for_trl(voted_project, tmp_path, django_assert_max_num_queries):
    # when
    with django_assert_max_num_queries(6):
        rows, summary = project_export(project=voted_project, fmt="kto")
    path = tmp_path / "kto.jsonl"
    path.write_bytes(export_jsonl(rows))
    dataset = load_dataset("json", data_files=str(path))["train"]

    # then the edit is the good answer, r2 (chosen once, rejected once) is left out
    assert dataset.column_names == ["prompt", "completion", "label"]
    assert dataset.num_rows == 4
    labelled = sorted((row["completion"][0]["content"], row["label"]) for row in dataset)
    assert labelled == [("Lyon.", False), ("Paris, since 508.", True), ("r1", True), ("r3", False)]
    assert (summary.rows, summary.conflicting, summary.ties, summary.incomplete) == (4, 1, 1, 1)


def test_it_exports_kto_from_thumbs(db):
    # given a rate project with three rated completions and an unrated one
    project = ProjectFactory(mode=Project.Mode.RATE, overlap=2)
    data = b'{"prompt": "hi", "completions": ["good", "bad", "split", "unrated"]}\n'
    project_import(project=project, filename="r.jsonl", data=data)
    ann1, ann2 = UserFactory(), UserFactory()
    for text, values in (("good", ("up", "up")), ("bad", ("down", "down")), ("split", ("up", "down"))):
        task = RateTask.objects.get(project=project, completion__text=text)
        make_rating(task, ann1, values[0])
        make_rating(task, ann2, values[1])

    # when
    rows, summary = project_export(project=project, fmt="kto")

    # then
    assert [(row["completion"][0]["content"], row["label"]) for row in rows] == [("good", True), ("bad", False)]
    assert (summary.considered, summary.disagreements, summary.incomplete) == (3, 1, 1)


def test_it_leaves_review_battles_out_unless_asked(db):
    # given one labelling pair and one review battle, each won by a
    project = ProjectFactory(overlap=1)
    annotator = UserFactory()
    label_task = make_pair_task(project, 1)
    review_task = make_pair_task(project, 2)
    PairTask.objects.filter(pk=review_task.pk).update(purpose=PairTask.Purpose.REVIEW)
    review_task.refresh_from_db()
    make_pair_vote(label_task, annotator, "a")
    make_pair_vote(review_task, annotator, "a")

    # when / then
    assert project_export(project=project, fmt="dpo")[1].rows == 1
    assert project_export(project=project, fmt="dpo", include_review=True)[1].rows == 2
    assert project_export(project=project, fmt="dpo", purpose="review")[1].rows == 1
    assert project_export(project=project, fmt="dpo", purpose=None)[1].rows == 2


def test_it_refuses_an_unknown_format(db):
    with pytest.raises(ValueError, match="Unknown export format 'sft'"):
        project_export(project=ProjectFactory(), fmt="sft")


# ---------------------------------------------------------------- the export_preferences command


def test_it_exports_from_the_command_line(voted_project, tmp_path):
    # given
    out = tmp_path / "out.jsonl"
    err = StringIO()

    # when
    call_command("export_preferences", "--project", voted_project.name, "--format", "dpo", "--out", str(out), stderr=err)

    # then
    assert len(out.read_bytes().splitlines()) == 4
    assert "Exported 4 DPO rows" in err.getvalue()
    assert "ties 1" in err.getvalue()


def test_it_exports_to_standard_output(voted_project):
    # given
    out, err = StringIO(), StringIO()

    # when
    call_command("export_preferences", "--project", voted_project.name, "--format", "kto", stdout=out, stderr=err)

    # then
    assert [json.loads(line)["label"] for line in out.getvalue().splitlines()].count(True) == 2
    assert "Exported 4 KTO rows (" in err.getvalue()
