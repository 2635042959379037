"""Candidates with signal (issue 9): stored batch by batch with why each ended, paired while the job runs by the
job's pairing, cut-off and identical answers left out of pairs, and the job's notes saying so."""
from __future__ import annotations

import pytest

from labeling.models import Completion, PairTask
from tests.factories import UserFactory
from tests.review.conftest import review_setup
from training.models import GenerationJob
from training.review import candidate_pairs as review_candidate_pairs
from training.review import generation as review_generation
from training.review.versions import ReviewError
from training.trainer import version_generation as generation_core
from training.trainer.generation_settings import GenerationSettings

pytestmark = pytest.mark.django_db
# Sampled, so the tiny random model writes different texts for different samples; it never ends on its own.
SAMPLED = {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 6, "seed": 1, "n": 2}


def _candidates_job(s, **kwargs) -> GenerationJob:
    arguments = {"settings_data": SAMPLED, "versions": [s.base], **kwargs}
    return review_generation.generation_job_create(
        project=s.project, purpose="candidates", split="heldout", enqueue=False, **arguments
    )


def _execute(job: GenerationJob, batch_size: int = 8) -> GenerationJob:
    assert review_generation.generation_job_claim(job_id=job.pk, worker="test")
    return review_generation.generation_job_execute(job_id=job.pk, batch_size=batch_size)


def _observe_batches(monkeypatch, job: GenerationJob, *, fail_after: int | None = None) -> list[tuple]:
    """After each stored batch, what the database says about the job while it is still running."""
    real = generation_core.generate_for_versions
    seen: list[tuple] = []

    def spy(*args, on_batch_done, **kwargs):
        def observe(*batch):
            on_batch_done(*batch)
            row = GenerationJob.objects.get(pk=job.pk)
            stored = Completion.objects.filter(source="generated")
            seen.append((row.status, row.completions_created, stored.count(), PairTask.objects.count(), row.percent))
            if fail_after is not None and len(seen) == fail_after:
                raise RuntimeError("the gpu fell over")

        return real(*args, on_batch_done=observe, **kwargs)

    monkeypatch.setattr(generation_core, "generate_for_versions", spy)
    return seen


def test_candidates_are_stored_and_paired_batch_by_batch_while_the_job_runs(tiny_model_dir, monkeypatch):
    s = review_setup(prompts=3, base_path=str(tiny_model_dir), with_outputs=False)
    job = _candidates_job(s, cut_off="paired")
    assert job.completions_total == 6 and job.percent == 0
    seen = _observe_batches(monkeypatch, job)

    job = _execute(job, batch_size=2)

    assert job.status == "succeeded", job.error
    # Prompts 0 and 1 (one batch) get both samples, then prompt 2: four batches, each stored as it finished.
    assert [(status, created, stored) for status, created, stored, _, _ in seen] == [
        ("running", 2, 2), ("running", 4, 4), ("running", 5, 5), ("running", 6, 6)
    ]
    assert [percent for *_, percent in seen] == [33, 67, 83, 100]
    # The first two prompts were paired as soon as their candidates were in, before the job ended.
    assert seen[0][3] == 0 and seen[1][3] == 2 and seen[3][3] == 3 == job.tasks_created
    assert (job.completions_created, job.completions_total, job.percent) == (6, 6, 100)
    assert set(Completion.objects.values_list("finish_reason", flat=True)) == {"length"}
    assert job.notes == ["6 answers were cut off at 6 tokens and paired anyway, marked as cut off for annotators."]


def test_a_failed_job_keeps_and_counts_what_it_stored_and_a_new_job_reuses_it(tiny_model_dir, monkeypatch):
    s = review_setup(prompts=3, base_path=str(tiny_model_dir), with_outputs=False)
    first = _candidates_job(s, cut_off="paired")
    _observe_batches(monkeypatch, first, fail_after=1)

    first = _execute(first, batch_size=2)

    assert first.status == "failed" and "the gpu fell over" in first.error
    assert first.completions_created == 2 == Completion.objects.count()
    monkeypatch.undo()
    second = _execute(_candidates_job(s, cut_off="paired"), batch_size=2)
    assert (second.status, second.completions_created, second.completions_skipped) == ("succeeded", 4, 2)
    assert Completion.objects.count() == 6


def test_cut_off_candidates_are_left_out_of_pairs_on_request_and_the_notes_say_so(tiny_model_dir):
    s = review_setup(prompts=2, base_path=str(tiny_model_dir), with_outputs=False)

    job = _execute(_candidates_job(s, cut_off="left_out"))

    assert job.status == "succeeded", job.error
    assert job.cut_off == "left_out" and job.completions_created == 4 and job.tasks_created == 0
    assert not PairTask.objects.exists()
    assert job.notes == [
        "4 answers were cut off at 6 tokens and left out of pairs.",
        "2 prompts got no pair: fewer than two usable answers.",
    ]
    again = _execute(_candidates_job(s, cut_off="left_out"))
    assert (again.completions_created, again.completions_skipped, again.tasks_created) == (0, 4, 0)
    assert again.notes == job.notes


def test_by_default_cut_off_candidates_meet_only_finished_ones_and_the_notes_say_why_a_prompt_got_none(tiny_model_dir):
    s = review_setup(prompts=2, base_path=str(tiny_model_dir), with_outputs=False)

    job = _execute(_candidates_job(s))

    # The tiny model never ends inside 6 tokens: no finished answer, so no pair, and the notes say so.
    assert job.status == "succeeded", job.error
    assert job.cut_off == "against_finished" and job.completions_created == 4 and job.tasks_created == 0
    assert job.notes == [
        "4 answers were cut off at 6 tokens and paired only against finished answers, marked as cut off for annotators.",
        "2 prompts got no pair: fewer than two usable answers, or none that finished.",
    ]


def test_a_review_job_notes_how_many_outputs_were_cut_off(tiny_model_dir):
    s = review_setup(prompts=2, base_path=str(tiny_model_dir), with_outputs=False)
    job = review_generation.generation_job_create(
        project=s.project, versions=[s.base], settings_data={"temperature": 0.0, "max_new_tokens": 3}, enqueue=False
    )

    job = _execute(job)

    assert job.status == "succeeded", job.error
    assert job.notes == ["2 of 2 new outputs were cut off at 3 tokens."]
    assert set(Completion.objects.values_list("finish_reason", flat=True)) == {"length"}


def _stored(s, prompt, settings: GenerationSettings, texts_and_reasons: list[tuple[str, str]]) -> list[Completion]:
    return [
        Completion.objects.create(
            prompt=prompt, text=text, source="generated", model_version=s.base, model_name=s.base.name,
            generation_settings=settings.for_sample(k), finish_reason=reason,
        )
        for k, (text, reason) in enumerate(texts_and_reasons)
    ]


def test_shortest_against_longest_makes_one_pair_per_prompt_once(db):
    s = review_setup(prompts=1, with_outputs=False)
    settings = GenerationSettings(temperature=0.7, n=5)
    short, middle, cut, long_, twin = _stored(s, s.heldout[0], settings, [
        ("Yes.", "stop"), ("Yes, it is.", "stop"), ("Yes, and here is a very long answer that", "length"),
        ("Yes, it is, and here is why in a few more words.", "stop"), ("Yes, it is.", "stop"),
    ])
    arguments = {"project": s.project, "prompt_ids": [s.heldout[0].pk], "versions": [s.base], "settings": settings}

    made = review_candidate_pairs.candidate_pairs_create(**arguments, pairing="length_extremes")

    task = PairTask.objects.get()
    assert {task.completion_a_id, task.completion_b_id} == {short.pk, long_.pk}
    assert (made.created, made.truncated_left_out, made.duplicates_left_out) == (1, 1, 1)
    assert review_candidate_pairs.candidate_pairs_create(**arguments, pairing="length_extremes").created == 0
    assert PairTask.objects.count() == 1


def test_two_temperatures_are_paired_only_across(db):
    s = review_setup(prompts=1, with_outputs=False)
    settings = GenerationSettings(temperature=0.3, alt_temperature=1.1, n=4)
    cool, hot, cool2, hot2 = _stored(s, s.heldout[0], settings, [(f"Answer {k}", "stop") for k in range(4)])

    made = review_candidate_pairs.candidate_pairs_create(
        project=s.project, prompt_ids=[s.heldout[0].pk], versions=[s.base], settings=settings, pairing="mixed_temperatures"
    )

    pairs = {frozenset((t.completion_a_id, t.completion_b_id)) for t in PairTask.objects.all()}
    assert made.created == 4
    assert pairs == {frozenset(p) for p in ((cool.pk, hot.pk), (cool.pk, hot2.pk), (cool2.pk, hot.pk), (cool2.pk, hot2.pk))}
    assert hot.generation_settings["temperature"] == 1.1 and cool.generation_settings["temperature"] == 0.3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pairing": "best_of_n"}, "Unknown pairing"),
        ({"pairing": "mixed_temperatures"}, "needs a second temperature"),
    ],
)
def test_a_pairing_that_cannot_work_is_refused(db, kwargs, message):
    s = review_setup(prompts=1, with_outputs=False)
    with pytest.raises(ReviewError, match=message):
        _candidates_job(s, **kwargs)
    assert not GenerationJob.objects.exists()


def test_the_job_records_its_pairing_and_what_it_has_to_make(db):
    s = review_setup(prompts=3, with_outputs=False)

    job = _candidates_job(
        s, versions=[s.base, s.tuned], settings_data={**SAMPLED, "alt_temperature": 0.3}, pairing="mixed_temperatures",
        cut_off="paired",
    )

    assert (job.pairing, job.cut_off, job.completions_total) == ("mixed_temperatures", "paired", 12)
    assert job.settings["alt_temperature"] == 0.3


def test_acceptance_a_cut_off_candidate_is_marked_and_the_mark_reaches_the_compare_screen(tiny_model_dir, client):
    s = review_setup(prompts=1, base_path=str(tiny_model_dir), with_outputs=False)
    job = _execute(_candidates_job(s, cut_off="paired"))
    assert job.status == "succeeded", job.error
    task = PairTask.objects.get()
    assert task.completion_a.is_truncated and task.completion_b.is_truncated
    annotator = UserFactory(username="sees-the-mark")
    s.project.members.add(annotator)
    client.force_login(annotator)

    html = client.get(f"/projects/{s.project.pk}/").content.decode()

    assert f'data-task="{task.pk}"' in html
    assert 'data-testid="left-cut-off"' in html and 'data-testid="right-cut-off"' in html
    assert html.count("Cut off at the length limit") == 2


def test_style_varied_candidates_record_their_style_and_keep_the_plain_prompt(tiny_model_dir, monkeypatch):
    s = review_setup(prompts=2, base_path=str(tiny_model_dir), with_outputs=False)
    job = _candidates_job(s, settings_data={**SAMPLED, "n": 3, "style_hints": True}, cut_off="paired")
    seen_messages = []

    from training.trainer import generation as generation_module

    original = generation_module.generate_outputs

    def record(model, tokenizer, prompts, **kwargs):
        seen_messages.extend(prompts)
        return original(model, tokenizer, prompts, **kwargs)

    monkeypatch.setattr(generation_module, "generate_outputs", record)

    job = _execute(job)

    assert job.status == "succeeded", job.error
    styles = sorted(Completion.objects.values_list("generation_settings__style", flat=True))
    assert styles == ["brief", "brief", "list", "list", "plain", "plain"]
    assert {m[0]["content"] for m in seen_messages if m[0]["role"] == "system"} == {
        "Answer briefly, in one or two sentences.", "Answer as a short list of points."
    }
    # Stored against the project's own prompt: the hint is how the answer was made, not part of the question.
    assert all(c.prompt.messages[0]["role"] != "system" for c in Completion.objects.select_related("prompt"))
    assert PairTask.objects.count() == 6  # 3 samples a prompt: every two of them


def test_style_hints_are_refused_for_a_review(db):
    s = review_setup(prompts=1, with_outputs=False)
    with pytest.raises(ReviewError, match="Style hints are for candidates only"):
        review_generation.generation_job_create(
            project=s.project, purpose="review", split="heldout", enqueue=False, versions=[s.base, s.tuned],
            settings_data={**SAMPLED, "style_hints": True},
        )
