"""Review writes: generation jobs (validated, queued on commit, idempotent), candidates, and blind battles."""
from __future__ import annotations

from unittest import mock

import pytest
from django.conf import settings

from labeling.models import Completion, PairTask, Prompt
from tests.factories import ProjectFactory, UserFactory, make_pair_vote
from tests.review.conftest import review_setup
from training.models import BaseModel, GenerationJob, ModelVersion
from training.review import battles as review_battles
from training.review import generation as review_generation
from training.review import versions as review_versions
from training.review.versions import ReviewError
from training.trainer.generation_backends import generation_dtype, resolve_backend

pytestmark = pytest.mark.django_db
FAST = {"temperature": 0.0, "max_new_tokens": 4, "seed": 0}


def test_the_base_version_is_made_once_with_no_adapter(setup):
    again = review_versions.base_version_get_or_create(base_model=setup.run.base_model)
    assert again == setup.base and again.adapter_path == "" and again.name == "test-base (base)"
    assert ModelVersion.objects.filter(base_model=setup.run.base_model, adapter_path="").count() == 1


def test_a_job_is_queued_on_commit_with_the_held_out_prompts(setup, django_capture_on_commit_callbacks):
    with mock.patch("webapp.celery.app.send_task") as delay:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            job = review_generation.generation_job_create(project=setup.project, versions=[setup.base, setup.tuned], settings_data=FAST)
        delay.assert_not_called()
        for callback in callbacks:
            callback()
    delay.assert_called_once()
    assert delay.call_args.kwargs["args"] == [job.pk]
    assert job.status == "queued" and job.prompt_ids == [p.pk for p in setup.heldout] and job.prompt_count == 4
    assert job.settings == {"temperature": 0.0, "top_p": 0.9, "max_new_tokens": 4, "seed": 0, "n": 1}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"settings_data": {"temperature": 3}}, "temperature"),
        ({"settings_data": {**FAST, "n": 2}, "purpose": "review"}, "Greedy"),
        ({"purpose": "candidates", "versions": "base-only"}, "at least two completions"),
        ({"create_review_tasks": True, "versions": "base-only"}, "exactly two"),
        ({"versions": []}, "at least one model version"),
        ({"split": "train", "prompt_ids": [999999]}, "do not exist"),
    ],
)
def test_a_job_that_cannot_work_is_refused_and_nothing_is_written(setup, kwargs, message):
    arguments = {"project": setup.project, "versions": [setup.base, setup.tuned], "settings_data": FAST, **kwargs}
    if arguments["versions"] == "base-only":
        arguments["versions"] = [setup.base]
    with pytest.raises(ReviewError, match=message):
        review_generation.generation_job_create(**arguments)
    assert GenerationJob.objects.count() == 0


def test_versions_of_different_bases_need_separate_jobs(setup):
    other = BaseModel.objects.create(name="other", path="/x")
    stranger = ModelVersion.objects.create(name="stranger", base_model=other)
    with pytest.raises(ReviewError, match="share a base model"):
        review_generation.generation_job_create(project=setup.project, versions=[setup.base, stranger], settings_data=FAST)


def test_a_project_without_held_out_prompts_is_told_so(db):
    s = review_setup(prompts=0, with_outputs=False)
    with pytest.raises(ReviewError, match="no held-out prompts"):
        review_generation.generation_job_create(project=s.project, versions=[s.base], settings_data=FAST)


def _run_job(job: GenerationJob) -> GenerationJob:
    assert review_generation.generation_job_claim(job_id=job.pk, worker="test")
    assert not review_generation.generation_job_claim(job_id=job.pk, worker="late"), "a redelivered message claims nothing"
    return review_generation.generation_job_execute(job_id=job.pk)


def test_a_job_generates_base_and_tuned_outputs_once_and_battles_them(tiny_model_dir, tiny_adapter_dir):
    s = review_setup(prompts=3, base_path=str(tiny_model_dir), adapter_path=str(tiny_adapter_dir), with_outputs=False)
    job = review_generation.generation_job_create(
        project=s.project, versions=[s.base, s.tuned], settings_data=FAST, run=s.run, create_review_tasks=True, enqueue=False
    )
    job = _run_job(job)
    assert job.status == "succeeded", job.error
    assert (job.completions_created, job.completions_skipped, job.tasks_created) == (6, 0, 3)
    generated = Completion.objects.filter(source="generated")
    assert {c.model_version_id for c in generated} == {s.base.pk, s.tuned.pk}
    # The settings it was made with, and the engine that made it (transformers here, unless vLLM can run).
    engine = resolve_backend(settings.PREFTUNE_GENERATION_BACKEND)
    recorded = {**FAST, "top_p": 0.9, "sample": 0, "backend": engine, "dtype": generation_dtype(engine)}
    assert all(c.generation_settings == recorded for c in generated)
    assert {c.prompt.split for c in generated} == {"heldout"}
    assert PairTask.objects.filter(purpose="review").count() == 3

    second = review_generation.generation_job_create(project=s.project, versions=[s.base, s.tuned], settings_data=FAST, enqueue=False)
    second = _run_job(second)
    assert (second.status, second.completions_created, second.completions_skipped) == ("succeeded", 0, 6)
    assert Completion.objects.filter(source="generated").count() == 6


def test_the_worker_task_runs_a_job_and_ignores_a_redelivery(tiny_model_dir, tiny_adapter_dir):
    from workers.tasks import generate

    s = review_setup(prompts=2, base_path=str(tiny_model_dir), adapter_path=str(tiny_adapter_dir), with_outputs=False)
    job = review_generation.generation_job_create(project=s.project, versions=[s.base, s.tuned], settings_data=FAST, enqueue=False)
    assert generate.apply(args=[job.pk]).get() == "succeeded"
    assert generate.apply(args=[job.pk]).get().startswith("not claimed")
    assert Completion.objects.filter(source="generated").count() == 4


def test_a_failed_generation_records_the_reason(setup):
    job = review_generation.generation_job_create(project=setup.project, versions=[setup.base, setup.tuned], settings_data=FAST, enqueue=False)
    job = _run_job(job)  # the setup's base model path does not exist
    assert job.status == "failed" and "nonexistent" in job.error and job.finished_at is not None


def test_candidates_become_labeling_pairs(tiny_model_dir, tiny_adapter_dir):
    s = review_setup(prompts=2, base_path=str(tiny_model_dir), adapter_path=str(tiny_adapter_dir), with_outputs=False)
    settings = {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 6, "seed": 1, "n": 2}
    # The tiny random model never ends an answer on its own, so every candidate is cut off: keep them in pairs.
    job = review_generation.generation_job_create(
        project=s.project, versions=[s.base, s.tuned], settings_data=settings, purpose="candidates", split="heldout",
        cut_off="paired", enqueue=False,
    )
    job = _run_job(job)
    assert job.status == "succeeded", job.error
    assert job.completions_created == 8
    assert set(Completion.objects.filter(source="generated").values_list("finish_reason", flat=True)) == {"length"}
    tasks = PairTask.objects.filter(purpose="label")
    # 4 candidates per prompt make up to 6 pairs; identical texts are not paired.
    assert 0 < tasks.count() <= 12 and job.tasks_created == tasks.count()
    assert all(t.completion_a.prompt_id == t.prompt_id == t.completion_b.prompt_id for t in tasks)


def test_battles_pair_each_held_out_prompt_once_with_random_sides(setup):
    battle = review_battles.battles_create(project=setup.project, version_a=setup.tuned, version_b=setup.base, seed=1)
    tasks = list(PairTask.objects.filter(purpose="review"))
    assert battle.tasks_created == 4 == len(tasks)
    assert {t.prompt_id for t in tasks} == {p.pk for p in setup.heldout}
    assert {t.completion_a.model_version_id for t in tasks} == {setup.base.pk, setup.tuned.pk}, "stored order is mixed"
    again = review_battles.battles_create(project=setup.project, version_a=setup.base, version_b=setup.tuned)
    assert again.tasks_created == 0 and PairTask.objects.filter(purpose="review").count() == 4


def test_battles_need_outputs_from_both_and_a_compare_project(setup):
    other = ModelVersion.objects.create(name="no outputs", base_model=setup.run.base_model, adapter_path="/a")
    with pytest.raises(ReviewError, match="generate them first"):
        review_battles.battles_create(project=setup.project, version_a=setup.tuned, version_b=other)
    rate = ProjectFactory(mode="rate")
    Prompt.objects.create(project=rate, messages=[{"role": "user", "content": "x"}], split="heldout")
    with pytest.raises(ReviewError, match="compare screen"):
        review_battles.battles_create(project=rate, version_a=setup.tuned, version_b=setup.base)


def test_review_votes_feed_the_next_run_only_when_the_admin_opts_in_to_held_out_votes(setup, tiny_model_dir):
    from training.services import LaunchError, run_launch

    BaseModel.objects.filter(pk=setup.run.base_model_id).update(path=str(tiny_model_dir))
    review_battles.battles_create(project=setup.project, version_a=setup.tuned, version_b=setup.base, seed=3)
    annotator = UserFactory()
    for task in PairTask.objects.filter(purpose="review"):
        make_pair_vote(task, annotator, "a")
    launch = {
        "project": setup.project, "base_model_id": setup.run.base_model_id, "method": "dpo",
        "settings_data": {"max_steps": 1, "validation_fraction": 0.0}, "created_by": None, "include_review": True,
    }
    # Battles are on held-out prompts: evaluation, so left out of training by default.
    with pytest.raises(LaunchError, match="0 preference pair"):
        run_launch(**launch)
    run = run_launch(**launch, include_heldout=True)
    assert run.snapshot.row_count == 4
    assert run.snapshot.includes_heldout is True, "the version it trains is then flagged as contaminated"
    assert run.snapshot.lineage["includes_review_votes"] is True
    assert run.snapshot.lineage["review_tasks_used"] == 4
    chosen = {row["chosen"][0]["content"] for row in run.snapshot.rows}
    assert all(text.startswith(("Base answer", "Tuned answer")) for text in chosen)
