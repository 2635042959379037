"""A generation job's missing completions, made batch by batch: which (prompt, version, sample) outputs it still
lacks, each batch stored as the engine finishes it, a candidate job's prompts paired as soon as all their
candidates are in, and the job's counts and notes written after every batch. A job cancelled while it runs stops
after the batch it was writing (``GenerationCancelled``)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import transaction

from labeling.models import Completion, Prompt
from training.models import GenerationJob, ModelVersion
from training.review.candidate_pairs import CandidatePairs, candidate_pairs_create
from training.review.stored_outputs import existing_output_keys, sampling_settings_key
from training.trainer import candidates as pairing_core
from training.trainer import version_generation as generation_core
from training.trainer.generation_settings import GenerationSettings
from training.trainer.version_generation import BatchDone

# (prompt, version, sample index) of an output a job still has to make.
MissingOutput = tuple[int, ModelVersion, int]


class GenerationCancelled(Exception):
    """The job was cancelled while it ran: the worker stops after the batch it was writing."""


def _stop_if_cancelled(job_id: int) -> None:
    if GenerationJob.objects.filter(pk=job_id, status=GenerationJob.Status.CANCELLED).exists():
        raise GenerationCancelled


def _answers(count: int) -> str:
    return f"{count} answer was" if count == 1 else f"{count} answers were"


@dataclass
class GenerationProgress:
    """A running job's counts, written to its row after every batch."""

    job: GenerationJob
    settings: GenerationSettings
    created: int = 0
    skipped: int = 0
    truncated_created: int = 0
    pairs: CandidatePairs = field(default_factory=CandidatePairs)

    def notes(self) -> list[str]:
        """What the job left out and why, in words for the jobs table."""
        limit = self.settings.max_new_tokens
        notes = []
        if self.job.purpose != GenerationJob.Purpose.CANDIDATES:
            if self.truncated_created:
                notes.append(f"{self.truncated_created} of {self.created} new outputs were cut off at {limit} tokens.")
            return notes
        pairs = self.pairs
        if pairs.truncated_left_out:
            notes.append(f"{_answers(pairs.truncated_left_out)} cut off at {limit} tokens and left out of pairs.")
        if pairs.truncated > pairs.truncated_left_out:
            kept = pairs.truncated - pairs.truncated_left_out
            how = "only against finished answers" if self.job.cut_off == pairing_core.AGAINST_FINISHED else "anyway"
            notes.append(f"{_answers(kept)} cut off at {limit} tokens and paired {how}, marked as cut off for annotators.")
        if pairs.duplicates_left_out:
            notes.append(
                f"{_answers(pairs.duplicates_left_out)} identical to another answer to the same prompt and left out of pairs."
            )
        if pairs.prompts_without_pair:
            count = pairs.prompts_without_pair
            why = "fewer than two usable answers"
            if self.job.cut_off == pairing_core.AGAINST_FINISHED:
                why += ", or none that finished"
            notes.append(f"{count} prompt{'s' if count != 1 else ''} got no pair: {why}.")
        return notes

    def save(self) -> None:
        GenerationJob.objects.filter(pk=self.job.pk).update(
            completions_created=self.created, tasks_created=self.pairs.created, notes=self.notes()
        )


def generate_missing(
    job: GenerationJob, versions: list[ModelVersion], settings: GenerationSettings, batch_size: int, backend: str,
    dtype: str,
) -> GenerationProgress:
    """Make and store the job's missing completions batch by batch with ``backend`` (a resolved name) in ``dtype``,
    both recorded on each completion, updating the job's counts as they come; for a candidate job, pair each prompt
    as soon as all its candidates are stored. Missing means: no output of this engine and precision, or of any
    when the job reuses other engines' outputs. Raises ``GenerationCancelled`` after the batch during which the
    job was cancelled."""
    progress = GenerationProgress(job=job, settings=settings)
    missing, waiting = _missing_outputs(job, versions, settings, progress)
    pair_ready = _candidate_pairer(job, versions, settings, progress)
    with transaction.atomic():
        pair_ready([p for p in job.prompt_ids if not waiting[p]])
        progress.save()
    if not missing:
        return progress
    # Versions with nothing missing are not generated at all; the prompts are the union of what any version
    # lacks (usually all of them or none), and only the missing (prompt, version, sample) triples are stored.
    need_versions = [v for v in versions if any(mv.pk == v.pk for _, mv, _ in missing)]
    need_prompt_ids = sorted({p for p, _, _ in missing})
    need_samples = sorted({k for _, _, k in missing})
    prompts = {p.pk: p for p in Prompt.objects.filter(pk__in=need_prompt_ids)}
    by_name = {f"v{v.pk}": v for v in need_versions}
    store = _batch_store(
        job=job, settings=settings, progress=progress, by_name=by_name, prompt_ids=need_prompt_ids, waiting=waiting,
        pair_ready=pair_ready, backend=backend, dtype=dtype,
    )
    # Looked up on the module when called, not bound at import: a test stands in for the engine by patching
    # training.trainer.version_generation.generate_for_versions.
    generation_core.generate_for_versions(
        need_versions[0].base_model.path,
        {name: (v.adapter_path or None) for name, v in by_name.items()},
        [prompts[p].messages for p in need_prompt_ids],
        settings,
        batch_size=batch_size,
        samples=need_samples,
        on_batch_done=store,
        backend=backend,
    )
    return progress


def _missing_outputs(
    job: GenerationJob, versions: list[ModelVersion], settings: GenerationSettings, progress: GenerationProgress
) -> tuple[list[MissingOutput], dict[int, set[tuple[int, int]]]]:
    """The outputs the job still lacks, and per prompt the (version, sample) it waits for; records on the job how
    many it wants and how many it skips because they exist."""
    existing = existing_output_keys(job.prompt_ids, versions, None if job.reuse_other_engines else job.engine)
    wanted = [
        (prompt_id, version, k)
        for prompt_id in job.prompt_ids
        for version in versions
        for k in range(settings.n)
    ]
    missing = [
        (p, v, k) for p, v, k in wanted if (p, v.pk, sampling_settings_key(settings.for_sample(k))) not in existing
    ]
    progress.skipped = len(wanted) - len(missing)
    GenerationJob.objects.filter(pk=job.pk).update(completions_total=len(wanted), completions_skipped=progress.skipped)
    # A prompt is ready to pair when none of its completions is missing; those already complete pair now.
    waiting: dict[int, set[tuple[int, int]]] = {p: set() for p in job.prompt_ids}
    for p, v, k in missing:
        waiting[p].add((v.pk, k))
    return missing, waiting


def _candidate_pairer(
    job: GenerationJob, versions: list[ModelVersion], settings: GenerationSettings, progress: GenerationProgress
) -> Callable[[list[int]], None]:
    """What pairs a candidate job's prompts once all their candidates are stored, counting into ``progress`` (for
    any other job, nothing); loads the project's reward model now where the job's pairing ranks by it."""
    pair = job.purpose == GenerationJob.Purpose.CANDIDATES

    scorer = None
    if pair and job.pairing == pairing_core.REWARD_EXTREMES:
        from training.review.rewards import RewardScorer

        scorer = RewardScorer.for_project(job.project)

    def pair_ready(prompt_ids: list[int]) -> None:
        if pair and prompt_ids:
            progress.pairs.add(candidate_pairs_create(
                project=job.project, prompt_ids=prompt_ids, versions=versions, settings=settings,
                pairing=job.pairing, cut_off=job.cut_off, scorer=scorer,
            ))

    return pair_ready


def _batch_store(
    *, job: GenerationJob, settings: GenerationSettings, progress: GenerationProgress, by_name: dict[str, ModelVersion],
    prompt_ids: list[int], waiting: dict[int, set[tuple[int, int]]], pair_ready: Callable[[list[int]], None],
    backend: str, dtype: str,
) -> BatchDone:
    """What the engine calls after each batch: store the batch's missing completions (``prompt_ids`` are what its
    indices point into), pair the prompts it completed and save the counts in one transaction, then stop if the
    job was cancelled meanwhile."""

    def store(name: str, indices: list[int], k: int, texts: list[str], reasons: list[str]) -> None:
        version = by_name[name]
        rows = []
        ready = []
        for i, text, reason in zip(indices, texts, reasons, strict=True):
            prompt_id = prompt_ids[i]
            if (version.pk, k) not in waiting[prompt_id]:
                continue
            waiting[prompt_id].discard((version.pk, k))
            if not waiting[prompt_id]:
                ready.append(prompt_id)
            rows.append(Completion(
                prompt_id=prompt_id,
                text=text,
                source=Completion.Source.GENERATED,
                model_name=version.name,
                model_version=version,
                generation_settings=settings.for_sample(k, backend=backend, dtype=dtype),
                finish_reason=reason,
            ))
        with transaction.atomic():
            Completion.objects.bulk_create(rows)
            progress.created += len(rows)
            progress.truncated_created += sum(1 for row in rows if row.is_truncated)
            pair_ready(ready)
            progress.save()
        _stop_if_cancelled(job.pk)
        if backend == "transformers":
            # A playground question waits behind one batch, not the whole job. (Not beside vLLM, which holds most of
            # the GPU: a second model there would not fit.)
            from training.playground.services import playground_serve_waiting

            playground_serve_waiting(worker=job.worker or "generation job")

    return store
