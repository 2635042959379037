"""What a review generation job does once its outputs are stored: measure whether the tuned model moved, and
create the review tasks annotators judge (blind battles in a compare project, held-out thumbs in a rate one).

Review generation never fails because of its review tasks: the outputs are in and worth looking at side by
side whatever happens next, so a battle that cannot be made is recorded in the job's notes instead.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

from django.db import transaction

from labeling.models import Completion, Project, Prompt, RateTask
from training.models import GenerationJob, ModelVersion
from training.review import matched_outputs as review_matched_outputs
from training.review.comparisons import comparison_key, matched_settings_of, sample_of
from training.review.versions import ReviewError, run_review_versions
from training.trainer.generation_settings import GenerationSettings
from training.trainer.movement import Movement, identical_counts

logger = logging.getLogger(__name__)


def review_outputs_finish(*, job: GenerationJob, versions: list[ModelVersion], settings: GenerationSettings) -> int:
    """Called by the worker after a review job stored its outputs; returns how many review tasks it created.

    First, when the job compares a base with a tuned version, how far the tuned one moved goes into
    ``job.movement`` (identical share of the matched pairs, per-token KL). Then, if the job asks for review
    tasks: blind battles of the matched, non-identical pairs in a compare project; held-out thumbs tasks on
    every output of both versions in a rate project."""
    pair = _base_and_tuned(job, versions)
    if pair is not None:
        pairs = _job_pairs(job, pair[0], pair[1], settings)
        movement = movement_measure(job=job, base=pair[0], tuned=pair[1], settings=settings, pairs=pairs)
        mixed = sum(1 for p in pairs if p.engines_differ)
        GenerationJob.objects.filter(pk=job.pk).update(movement={
            **movement.to_dict(), "engines": review_matched_outputs.engines_of_pairs(pairs), "mixed_engines": mixed,
        })
        if mixed:
            _note(
                job,
                f"{mixed} of {len(pairs)} matched pairs compare answers of different engines or precisions "
                f"({review_matched_outputs.engines_of_pairs(pairs)}), as asked: the identical share, KL and battles "
                "measure the engine as well as the adapter.",
            )
    if not job.create_review_tasks:
        return 0
    if job.project.mode == Project.Mode.RATE:
        return heldout_thumbs_create(project=job.project, versions=versions, prompt_ids=job.prompt_ids, settings=settings)
    return _battles_for_job(job, versions, pair, settings)


def _base_and_tuned(job: GenerationJob, versions: Sequence[ModelVersion]) -> tuple[ModelVersion, ModelVersion] | None:
    """(base, tuned) when the job compares a model with its own base: the run's pair, or one version without an
    adapter and one with; None otherwise (movement is measured against a base)."""
    if job.run is not None and job.run.model_version_id is not None:
        base, tuned = run_review_versions(run=job.run)
        if {base.pk, tuned.pk} == {v.pk for v in versions}:
            return base, tuned
    bases = [v for v in versions if not v.adapter_path]
    adapted = [v for v in versions if v.adapter_path]
    if len(versions) == 2 and len(bases) == 1 and len(adapted) == 1 and bases[0].base_model_id == adapted[0].base_model_id:
        return bases[0], adapted[0]
    return None


def _job_groups(settings: GenerationSettings) -> dict[str, tuple[dict, list[int]]]:
    """The job's samples by comparison: comparison key → (matched settings, sample indices). One group unless
    odd samples are drawn at a second temperature."""
    groups: dict[str, tuple[dict, list[int]]] = {}
    for k in range(settings.n):
        sample_settings = settings.for_sample(k)
        groups.setdefault(comparison_key(sample_settings), (matched_settings_of(sample_settings), []))[1].append(k)
    return groups


def _job_pairs(
    job: GenerationJob, base: ModelVersion, tuned: ModelVersion, settings: GenerationSettings
) -> list[review_matched_outputs.MatchedPair]:
    """The job's matched (tuned, base) outputs: its prompts, each of its samples, that sample's settings."""
    pairs: list[review_matched_outputs.MatchedPair] = []
    for matched, samples in _job_groups(settings).values():
        pairs += review_matched_outputs.matched_pairs(
            project=job.project, first=tuned, second=base, settings=matched, prompt_ids=job.prompt_ids, samples=samples,
            mixed_engines=job.reuse_other_engines,
        )
    return pairs


def movement_measure(
    *, job: GenerationJob, base: ModelVersion, tuned: ModelVersion, settings: GenerationSettings, batch_size: int = 4,
    pairs: list[review_matched_outputs.MatchedPair] | None = None,
) -> Movement:
    """Did ``tuned`` move away from ``base`` on this job's matched outputs? The identical share, and the mean
    per-token KL(tuned ‖ base) over the tuned outputs, measured with one loaded base and the adapter switched
    on and off. A KL that cannot be measured is logged and noted on the job, and left None: the outputs and
    their battles are still worth having."""
    pairs = _job_pairs(job, base, tuned, settings) if pairs is None else pairs
    identical, total = identical_counts((p.first.text, p.second.text) for p in pairs)
    if not pairs or not tuned.adapter_path:
        return Movement(pairs=total, identical=identical)
    prompts = dict(Prompt.objects.filter(pk__in={p.prompt_id for p in pairs}).values_list("pk", "messages"))
    items = [(prompts[p.prompt_id], p.first.text) for p in pairs]
    from training.trainer.movement import adapter_kl_per_token

    try:
        kl, tokens = adapter_kl_per_token(tuned.base_model.path, tuned.adapter_path, items, batch_size=batch_size)
    except Exception as exc:  # noqa: BLE001 - a measurement, not the job: record why and keep the outputs
        logger.exception("Generation job %s: the KL of %s against its base could not be measured", job.pk, tuned.name)
        _note(job, f"The KL of the tuned model against its base could not be measured: {exc}")
        return Movement(pairs=total, identical=identical)
    return Movement(pairs=total, identical=identical, kl_per_token=kl, tokens=tokens)


def _battles_for_job(
    job: GenerationJob,
    versions: Sequence[ModelVersion],
    pair: tuple[ModelVersion, ModelVersion] | None,
    settings: GenerationSettings,
) -> int:
    from training.review.battles import battles_create

    base, tuned = pair if pair is not None else (versions[0], versions[1])
    created = 0
    for matched, _ in _job_groups(settings).values():
        try:
            battle = battles_create(
                project=job.project, version_a=tuned, version_b=base, settings=matched, run=job.run,
                prompt_ids=job.prompt_ids, created_by=job.created_by, mixed_engines=job.reuse_other_engines,
            )
        except ReviewError as error:
            logger.warning("Generation job %s made no battles: %s", job.pk, error.message)
            _note(job, f"No blind battles were created: {error.message}")
            continue
        created += battle.tasks_created
        if battle.identical_skipped:
            _note(
                job,
                f"{battle.identical_skipped} matched pair{'s were' if battle.identical_skipped != 1 else ' was'} not "
                "battled: both versions wrote the same text.",
            )
    return created


def heldout_thumbs_create(
    *, project: Project, versions: Sequence[ModelVersion], prompt_ids: Sequence[int], settings: GenerationSettings
) -> int:
    """Held-out thumbs: one review RateTask on each of these versions' outputs (these settings, every sample)
    on the held-out prompts among ``prompt_ids``. Annotators rate them blind in the ordinary thumbs screen.
    Outputs that already have a rating task are skipped. Returns how many tasks were created."""
    keys = {comparison_key(settings.for_sample(k)) for k in range(settings.n)}
    samples = set(range(settings.n))
    outputs = Completion.objects.filter(
        prompt_id__in=list(prompt_ids), prompt__split=Prompt.Split.HELDOUT, model_version__in=list(versions),
        source=Completion.Source.GENERATED,
    ).values_list("pk", "generation_settings")
    wanted = [
        pk for pk, generation_settings in outputs
        if comparison_key(generation_settings) in keys and sample_of(generation_settings) in samples
    ]
    taken = set(RateTask.objects.filter(project=project, completion_id__in=wanted).values_list("completion_id", flat=True))
    with transaction.atomic():
        created = RateTask.objects.bulk_create(
            RateTask(project=project, completion_id=pk, purpose=RateTask.Purpose.REVIEW, overlap=project.overlap)
            for pk in wanted
            if pk not in taken
        )
    return len(created)


def _note(job: GenerationJob, note: str) -> None:
    """Add a line to the job's notes (the jobs table shows them)."""
    with transaction.atomic():
        current = GenerationJob.objects.select_for_update().filter(pk=job.pk).values_list("notes", flat=True).first() or []
        GenerationJob.objects.filter(pk=job.pk).update(notes=[*current, note])
