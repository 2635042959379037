"""Generation jobs and their engine (issue 11, fast generation; issue 22, matching on engine and precision): each
output records which engine wrote it and in which precision, a job on an engine that cannot run fails with the
reason, and outputs of the same settings from two engines are one comparison but are reused and matched only
within one engine and precision, unless an admin asks for it, and then the figures say the engines were mixed."""
from __future__ import annotations

from io import StringIO

import pytest
import torch
from django.core.management import call_command
from django.core.management.base import CommandError

from labeling.models import Completion
from tests.review.conftest import MATCHED, SETTINGS, add_output, review_setup
from training.models import Battle, GenerationJob
from training.review import generation as review_generation
from training.review import matched_outputs as review_matched_outputs
from training.review import side_by_side as review_side_by_side
from training.review.comparisons import comparison_key, describe_settings, matched_settings_of
from training.trainer.generation_backends import TRANSFORMERS, generation_dtype

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
    dtype = generation_dtype(TRANSFORMERS)
    assert dtype == ("bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32")
    assert all(r == {**FAST, "top_p": 0.9, "sample": 0, "backend": "transformers", "dtype": dtype} for r in recorded)
    assert job.engine == f"transformers {dtype}"


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


def _other_engine_outputs(s) -> None:
    """Base outputs stored before engines were recorded, tuned ones by vLLM in bf16: neither is what a
    transformers job on this machine writes."""
    for n, prompt in enumerate(s.heldout):
        add_output(prompt, s.base, f"Base {n}.", SETTINGS)
        add_output(prompt, s.tuned, f"Tuned {n}, in more words.", {**SETTINGS, "backend": "vllm", "dtype": "bfloat16"})


def _matched_job(s, **kwargs) -> GenerationJob:
    return review_generation.generation_job_create(
        project=s.project, versions=[s.base, s.tuned], settings_data=MATCHED, run=s.run, create_review_tasks=True,
        enqueue=False, **kwargs,
    )


def test_outputs_of_another_engine_or_precision_are_not_reused_or_matched_by_default(
    tiny_model_dir, tiny_adapter_dir, settings
):
    settings.PREFTUNE_GENERATION_BACKEND = "transformers"
    s = review_setup(prompts=3, base_path=str(tiny_model_dir), adapter_path=str(tiny_adapter_dir), with_outputs=False)
    _other_engine_outputs(s)

    job = _run(_matched_job(s))

    engine = f"transformers {generation_dtype(TRANSFORMERS)}"
    assert job.status == "succeeded", job.error
    assert (job.completions_created, job.completions_skipped) == (6, 0), "both sides written again on this engine"
    assert job.movement["pairs"] == 3 and job.movement["mixed_engines"] == 0
    assert job.movement["engines"] == engine
    battled = review_matched_outputs.matched_pairs(project=s.project, first=s.tuned, second=s.base, settings=MATCHED)
    assert {(p.first.generation_settings["backend"], p.second.generation_settings["backend"]) for p in battled} == {
        ("transformers", "transformers")
    }
    battle = Battle.objects.get()
    assert (battle.engines, battle.mixed_engines) == (engine, 0)
    assert not any("different engines" in note for note in job.notes)


def test_asked_to_reuse_other_engines_a_job_writes_nothing_new_and_labels_its_figures_mixed(
    tiny_model_dir, tiny_adapter_dir, settings
):
    settings.PREFTUNE_GENERATION_BACKEND = "transformers"
    s = review_setup(prompts=3, base_path=str(tiny_model_dir), adapter_path=str(tiny_adapter_dir), with_outputs=False)
    _other_engine_outputs(s)

    job = _run(_matched_job(s, reuse_other_engines=True))

    assert job.status == "succeeded", job.error
    assert (job.completions_created, job.completions_skipped) == (0, 6)
    assert job.movement["pairs"] == 3 and job.movement["mixed_engines"] == 3 and job.tasks_created == 3
    assert job.movement["engines"] == "vllm bfloat16 against transformers"
    assert any("3 of 3 matched pairs compare answers of different engines" in note for note in job.notes)
    battle = Battle.objects.get()
    assert (battle.engines, battle.mixed_engines) == ("vllm bfloat16 against transformers", 3)


def test_outputs_of_one_settings_from_two_engines_are_one_comparison_matched_only_within_an_engine(db):
    s = review_setup(prompts=3, with_outputs=False)
    vllm = {**SETTINGS, "backend": "vllm", "dtype": "bfloat16"}
    fp32 = {**SETTINGS, "backend": "transformers", "dtype": "float32"}
    for n, prompt in enumerate(s.heldout):
        add_output(prompt, s.base, f"Base {n}.", fp32)
        add_output(prompt, s.tuned, f"Tuned {n}.", vllm)

    def pairs(**kwargs):
        return review_matched_outputs.matched_pairs(project=s.project, first=s.tuned, second=s.base, settings=MATCHED, **kwargs)

    assert comparison_key(vllm) == comparison_key(SETTINGS) and matched_settings_of(vllm) == MATCHED
    assert "backend" not in describe_settings(vllm) and "dtype" not in describe_settings(vllm)
    assert pairs() == [], "fp32 against bf16 measures the precision as well as the adapter"
    [comparison] = review_matched_outputs.comparisons(project=s.project, first=s.tuned, second=s.base)
    assert comparison.pairs == 0 and (comparison.first_outputs, comparison.second_outputs) == (3, 3)
    mixed = pairs(mixed_engines=True)
    assert len(mixed) == 3 and all(p.engines_differ for p in mixed)
    assert review_matched_outputs.engines_of_pairs(mixed) == "vllm bfloat16 against transformers float32"
    # The side by side still shows both answers, and says they are not a matched pair.
    rows = review_side_by_side.side_by_side(project=s.project, base=s.base, tuned=s.tuned, settings=MATCHED)
    assert [row.engines for row in rows] == ["vllm bfloat16 against transformers float32"] * 3

    # Once the base has answers from vLLM in bf16 too, those are the ones matched, with or without mixing.
    for n, prompt in enumerate(s.heldout):
        add_output(prompt, s.base, f"Base {n} on vLLM.", vllm)
    for found in (pairs(), pairs(mixed_engines=True)):
        assert [p.second.text for p in found] == ["Base 0 on vLLM.", "Base 1 on vLLM.", "Base 2 on vLLM."]
        assert not any(p.engines_differ for p in found)
    assert review_matched_outputs.comparisons(project=s.project, first=s.tuned, second=s.base)[0].pairs == 3


def test_outputs_stored_before_engines_or_precisions_were_recorded_match_only_their_like(db):
    s = review_setup(prompts=2, with_outputs=False)
    for n, prompt in enumerate(s.heldout):
        add_output(prompt, s.base, f"Base {n}.", SETTINGS)
        add_output(prompt, s.tuned, f"Tuned {n}.", {**SETTINGS, "backend": "transformers"})

    assert len(review_matched_outputs.matched_pairs(project=s.project, first=s.tuned, second=s.base, settings=MATCHED)) == 2, (
        "before engines were recorded every output came from transformers"
    )
    for n, prompt in enumerate(s.heldout):
        add_output(prompt, s.tuned, f"Tuned {n} in fp32.", {**SETTINGS, "backend": "transformers", "dtype": "float32"})
    found = review_matched_outputs.matched_pairs(project=s.project, first=s.tuned, second=s.base, settings=MATCHED)
    assert [p.first.text for p in found] == ["Tuned 0.", "Tuned 1."], "an unknown precision is not assumed to be fp32"


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
