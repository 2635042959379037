"""Generation jobs and their engine (issue 11, fast generation): each output records which engine wrote it, a job
on an engine that cannot run fails with the reason, and outputs of the same settings from either engine are one
comparison: reused by later jobs and matched against each other."""
from __future__ import annotations

from io import StringIO

import pytest
import torch
from django.core.management import call_command
from django.core.management.base import CommandError

from labeling.models import Completion
from tests.review.conftest import MATCHED, SETTINGS, add_output, review_setup
from training.models import GenerationJob
from training.review import generation as review_generation
from training.review import selectors as review_selectors
from training.review.comparisons import comparison_key, describe_settings, matched_settings_of

pytestmark = pytest.mark.django_db
FAST = {"temperature": 0.0, "max_new_tokens": 4, "seed": 0}
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="on a CUDA machine vLLM may be able to run")


def _run(job: GenerationJob, **kwargs) -> GenerationJob:
    assert review_generation.generation_job_claim(job_id=job.pk, worker="test")
    return review_generation.generation_job_execute(job_id=job.pk, **kwargs)


def _review_job(s, **kwargs) -> GenerationJob:
    return review_generation.generation_job_create(
        project=s.project, versions=[s.base, s.tuned], settings_data=FAST, enqueue=False, **kwargs
    )


def test_each_output_records_the_engine_that_wrote_it(tiny_model_dir, tiny_adapter_dir, settings):
    settings.PREFTUNE_GENERATION_BACKEND = "transformers"
    s = review_setup(prompts=2, base_path=str(tiny_model_dir), adapter_path=str(tiny_adapter_dir), with_outputs=False)

    job = _run(_review_job(s))

    assert job.status == "succeeded", job.error
    recorded = list(Completion.objects.filter(source="generated").values_list("generation_settings", flat=True))
    assert len(recorded) == 4
    assert all(r == {**FAST, "top_p": 0.9, "sample": 0, "backend": "transformers"} for r in recorded)


@no_cuda
def test_auto_on_a_worker_without_cuda_generates_with_transformers(tiny_model_dir, tiny_adapter_dir, settings):
    settings.PREFTUNE_GENERATION_BACKEND = "auto"
    s = review_setup(prompts=1, base_path=str(tiny_model_dir), adapter_path=str(tiny_adapter_dir), with_outputs=False)

    job = _run(_review_job(s))

    assert job.status == "succeeded", job.error
    assert set(Completion.objects.values_list("generation_settings__backend", flat=True)) == {"transformers"}


@no_cuda
def test_vllm_asked_for_on_a_worker_without_cuda_fails_the_job_with_the_reason(tiny_model_dir, tiny_adapter_dir, settings):
    settings.PREFTUNE_GENERATION_BACKEND = "vllm"
    s = review_setup(prompts=2, base_path=str(tiny_model_dir), adapter_path=str(tiny_adapter_dir), with_outputs=False)

    job = _run(_review_job(s))

    assert job.status == "failed"
    assert "vLLM generation backend was asked for" in job.error and "no CUDA GPU is visible" in job.error
    assert not Completion.objects.filter(source="generated").exists()


def test_the_backend_argument_overrides_the_setting(tiny_model_dir, tiny_adapter_dir, settings):
    settings.PREFTUNE_GENERATION_BACKEND = "vllm"
    s = review_setup(prompts=1, base_path=str(tiny_model_dir), adapter_path=str(tiny_adapter_dir), with_outputs=False)

    job = _run(_review_job(s), backend="transformers")

    assert job.status == "succeeded", job.error
    assert set(Completion.objects.values_list("generation_settings__backend", flat=True)) == {"transformers"}


def test_outputs_from_either_engine_or_from_before_engines_were_recorded_are_reused_and_battled(
    tiny_model_dir, tiny_adapter_dir, settings
):
    settings.PREFTUNE_GENERATION_BACKEND = "transformers"
    # Base outputs stored without an engine (older data), tuned ones by vLLM: the job makes nothing new.
    s = review_setup(prompts=3, base_path=str(tiny_model_dir), adapter_path=str(tiny_adapter_dir), with_outputs=False)
    for n, prompt in enumerate(s.heldout):
        add_output(prompt, s.base, f"Base {n}.", SETTINGS)
        add_output(prompt, s.tuned, f"Tuned {n}, in more words.", {**SETTINGS, "backend": "vllm"})
    job = review_generation.generation_job_create(
        project=s.project, versions=[s.base, s.tuned], settings_data=MATCHED, run=s.run, create_review_tasks=True,
        enqueue=False,
    )

    job = _run(job)

    assert job.status == "succeeded", job.error
    assert (job.completions_created, job.completions_skipped) == (0, 6)
    assert job.movement["pairs"] == 3 and job.tasks_created == 3, "the two engines' outputs are matched and battled"


def test_outputs_of_the_same_settings_from_two_engines_are_one_matched_comparison(db):
    s = review_setup(prompts=3, with_outputs=False)
    for n, prompt in enumerate(s.heldout):
        add_output(prompt, s.base, f"Base {n}.", {**SETTINGS, "backend": "transformers"})
        add_output(prompt, s.tuned, f"Tuned {n}.", {**SETTINGS, "backend": "vllm"})

    pairs = review_selectors.matched_pairs(project=s.project, first=s.tuned, second=s.base, settings=MATCHED)

    assert len(pairs) == 3
    assert comparison_key({**SETTINGS, "backend": "vllm"}) == comparison_key(SETTINGS)
    assert matched_settings_of({**SETTINGS, "backend": "vllm"}) == MATCHED
    assert "backend" not in describe_settings({**SETTINGS, "backend": "vllm"})


@no_cuda
def test_the_inline_command_refuses_vllm_before_making_a_job(db):
    s = review_setup(prompts=1, with_outputs=False)

    with pytest.raises(CommandError, match="no CUDA GPU is visible"):
        call_command("generate_completions", "--run", str(s.run.pk), "--inline", "--backend", "vllm", stdout=StringIO())

    assert not GenerationJob.objects.exists()


def test_the_command_refuses_a_backend_for_a_queued_job(db):
    s = review_setup(prompts=1, with_outputs=False)

    with pytest.raises(CommandError, match="--backend picks the engine of an --inline job"):
        call_command("generate_completions", "--run", str(s.run.pk), "--backend", "transformers", stdout=StringIO())

    assert not GenerationJob.objects.exists()


def test_the_inline_command_generates_with_the_backend_it_is_given(tiny_model_dir, tiny_adapter_dir, settings):
    settings.PREFTUNE_GENERATION_BACKEND = "vllm"
    s = review_setup(prompts=1, base_path=str(tiny_model_dir), adapter_path=str(tiny_adapter_dir), with_outputs=False)
    out = StringIO()

    call_command(
        "generate_completions", "--run", str(s.run.pk), "--inline", "--backend", "transformers",
        "--temperature", "0", "--max-new-tokens", "4", stdout=out,
    )

    assert "succeeded: 2 completions created" in out.getvalue()
    assert set(Completion.objects.values_list("generation_settings__backend", flat=True)) == {"transformers"}
