"""Generation jobs: candidates for labeling, or base and tuned review outputs, made by a gpu worker.

A job's life: ``generation_job_create`` fixes the prompts and settings and queues it (enqueued on commit) → the
gpu worker claims it (queued → running) and calls ``generation_job_execute``, which loads the base model once
with every version's adapter (on the engine the worker's PREFTUNE_GENERATION_BACKEND picks: vLLM on CUDA where it
is installed, else transformers), and stores only the completions that do not exist yet → succeeded or failed,
with the reason. Completions are stored batch by batch as they are made, with why each ended (``finish_reason``)
and which engine wrote them, and the job's counts move as they are. A candidate job pairs a prompt's candidates
as labeling tasks as soon as all of them are in (by the job's ``pairing``, see ``training.trainer.candidates``),
so annotators can start while it runs, and writes into ``notes`` what it left out of pairs and why. Review jobs
hand over to ``training.review.evaluation`` (battles, or held-out thumbs in a rate project) when all is stored.

This module is the job's life; making the missing completions batch by batch is ``generation_batches``, and
pairing a prompt's candidates is ``candidate_pairs``.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings as django_settings
from django.db import transaction
from django.utils import timezone

from labeling.models import Project, Prompt
from training.access import describe_failure
from training.heartbeat import Heartbeat, stale_condition
from training.models import GenerationJob, ModelVersion, TuningRun
from training.review.candidate_pairs import MAX_CANDIDATE_PAIRS_PER_PROMPT
from training.review.generation_batches import GenerationCancelled, generate_missing
from training.review.queueing import generation_job_enqueue_on_commit
from training.review.versions import ReviewError
from training.trainer import candidates as pairing_core
from training.trainer.generation_backends import generation_dtype, resolve_backend
from training.trainer.generation_settings import GenerationSettings, GenerationSettingsError

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)
JobStatus = GenerationJob.Status

MAX_PROMPTS_PER_JOB = 5000
# How a candidate job pairs each prompt's candidates: (GenerationJob.pairing value, label, what it does).
PAIRINGS = [
    (pairing_core.ALL, "All against all",
     f"every answer against every other, up to {MAX_CANDIDATE_PAIRS_PER_PROMPT} pairs per prompt."),
    (pairing_core.LENGTH_EXTREMES, "Shortest against longest",
     "one pair per prompt, the shortest complete answer against the longest, counted in words."),
    (pairing_core.MIXED_TEMPERATURES, "Two temperatures",
     "every other sample is drawn at the second temperature, and only a cool answer and a hot one are paired."),
    (pairing_core.REWARD_EXTREMES, "Best against worst (reward model)",
     "one pair per prompt: the answer the project's reward model scores highest against the one it scores lowest "
     "(best-of-N and worst-of-N). Needs a reward model trained in this project."),
]
PAIRING_CHOICES = [(value, label) for value, label, _ in PAIRINGS]


def _parse_settings(settings_data: dict[str, Any]) -> GenerationSettings:
    try:
        return GenerationSettings.from_dict(settings_data)
    except (GenerationSettingsError, TypeError) as exc:
        raise ReviewError(str(exc)) from exc


def _resolve_prompts(project: Project, prompt_ids: Sequence[int] | None, split: str | None) -> list[int]:
    prompts = Prompt.objects.filter(project=project)
    if prompt_ids is not None:
        wanted = set(prompt_ids)
        found = set(prompts.filter(pk__in=wanted).values_list("pk", flat=True))
        if wanted - found:
            raise ReviewError(f"Prompt(s) {sorted(wanted - found)[:10]} do not exist in this project.")
        ids = sorted(found)
    else:
        split = split or Prompt.Split.HELDOUT
        if split not in Prompt.Split.values:
            raise ReviewError(f"Unknown split {split!r}: use train or heldout.")
        ids = list(prompts.filter(split=split).order_by("id").values_list("pk", flat=True))
    if not ids:
        where = "held-out" if (split or "heldout") == "heldout" and prompt_ids is None else "selected"
        raise ReviewError(f"There are no {where} prompts to generate for in {project.name!r}.")
    if len(ids) > MAX_PROMPTS_PER_JOB:
        raise ReviewError(f"{len(ids)} prompts is too many for one job (at most {MAX_PROMPTS_PER_JOB}); split it up.")
    return ids


def generation_job_create(
    *,
    project: Project,
    versions: Sequence[ModelVersion],
    settings_data: dict[str, Any],
    purpose: str = GenerationJob.Purpose.REVIEW,
    prompt_ids: Sequence[int] | None = None,
    split: str | None = None,
    run: TuningRun | None = None,
    create_review_tasks: bool = False,
    pairing: str = pairing_core.ALL,
    cut_off: str = pairing_core.AGAINST_FINISHED,
    reuse_other_engines: bool = False,
    created_by: User | None = None,
    enqueue: bool = True,
) -> GenerationJob:
    """Validate and queue a generation job; the worker starts it once this transaction commits.

    ``enqueue=False`` only creates the queued row, for a caller that claims and runs it itself (the
    ``generate_completions --inline`` command); nothing else should pass it.

    Prompts are ``prompt_ids`` if given, else the project's prompts in ``split`` (held-out by default).
    All versions must share one base model: the worker loads it once. ``create_review_tasks`` (review jobs with
    exactly two versions) creates blind battles between them when the outputs are in. Candidate jobs pair by
    ``pairing`` (one of PAIRINGS), answers cut off at the token limit as ``cut_off`` says (one of
    ``training.trainer.candidates.CUT_OFF_CHOICES``). Outputs are reused, and matched for movement and battles,
    only when the engine and precision the job runs on wrote them, unless ``reuse_other_engines`` (then any
    engine's, and what it compares across engines is labelled mixed).
    """
    if purpose not in GenerationJob.Purpose.values:
        raise ReviewError(f"Unknown purpose {purpose!r}: use candidates or review.")
    versions = list(dict.fromkeys(versions))
    if not versions:
        raise ReviewError("Choose at least one model version to generate with.")
    if len({v.base_model_id for v in versions}) != 1:
        raise ReviewError("All model versions in one job must share a base model; start one job per base model.")
    settings = _parse_settings(settings_data)
    if purpose == GenerationJob.Purpose.CANDIDATES and len(versions) * settings.n < 2:
        raise ReviewError("Candidates for labeling need at least two completions per prompt: ask for n ≥ 2 or two versions.")
    if settings.style_hints and purpose != GenerationJob.Purpose.CANDIDATES:
        raise ReviewError(
            "Style hints are for candidates only: a review compares the models as they answer the prompt itself."
        )
    if create_review_tasks and len(versions) != 2:
        raise ReviewError("Battles are between exactly two model versions.")
    if pairing not in pairing_core.STRATEGIES:
        raise ReviewError(f"Unknown pairing {pairing!r}: use one of {', '.join(pairing_core.STRATEGIES)}.")
    if cut_off not in pairing_core.CUT_OFF_CHOICES:
        raise ReviewError(f"Unknown treatment of cut-off answers {cut_off!r}: use one of {', '.join(pairing_core.CUT_OFF_CHOICES)}.")
    if pairing == pairing_core.REWARD_EXTREMES:
        from training.review.rewards import project_reward_model

        if project_reward_model(project=project) is None:
            raise ReviewError(
                "Best against worst needs a reward model to rank the candidates, and this project has none yet: "
                "launch a run with the reward-model method first, or pick another pairing."
            )
    if pairing == pairing_core.MIXED_TEMPERATURES and settings.alt_temperature is None:
        raise ReviewError("Pairing across two temperatures needs a second temperature.")
    ids = _resolve_prompts(project, prompt_ids, split)
    with transaction.atomic():
        job = GenerationJob.objects.create(
            project=project,
            run=run,
            prompt_ids=ids,
            prompt_count=len(ids),
            completions_total=len(ids) * len(versions) * settings.n,
            settings=settings.to_dict(),
            purpose=purpose,
            create_review_tasks=create_review_tasks,
            pairing=pairing,
            cut_off=cut_off,
            reuse_other_engines=reuse_other_engines,
            created_by=created_by,
        )
        job.model_versions.set(versions)
        if enqueue:
            generation_job_enqueue_on_commit(job.pk)
    return job


def generation_job_claim(*, job_id: int, worker: str) -> bool:
    """Move a queued job to running; False when another worker got there first (a redelivered message)."""
    now = timezone.now()
    return GenerationJob.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(
        status=JobStatus.RUNNING, worker=worker, started_at=now, heartbeat_at=now
    ) == 1


def generation_job_cancel(*, job: GenerationJob) -> str:
    """Cancel a queued or running job: a queued one never starts; a running one stops once its current batch is
    stored (what it wrote stays, with its pairs, and a later job over the same prompts reuses it). Returns the
    sentence for the page; a finished job is left as it is."""
    done_text = "Cancelled by an admin."
    if GenerationJob.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
        status=JobStatus.CANCELLED, error=done_text, finished_at=timezone.now()
    ):
        return f"Job {job.pk} cancelled before it started."
    if GenerationJob.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
        status=JobStatus.CANCELLED, error=done_text
    ):
        return f"Job {job.pk} cancelled: it stops once the batch it is writing is stored."
    return f"Job {job.pk} had already ended."


def generation_job_execute(*, job_id: int, batch_size: int = 8, backend: str | None = None) -> GenerationJob:
    """Generate what a claimed (running) job still lacks and record the outcome; never raises for a generation
    failure: the reason is stored on the job (completions stored before it stay, and a new job skips them).
    Completions already stored with the same prompt, version and settings are skipped, so running a job twice,
    or a second job over the same prompts, adds nothing twice.

    ``backend`` ("auto", "transformers" or "vllm"; default: the PREFTUNE_GENERATION_BACKEND setting) picks the
    engine; each completion records the one that wrote it. One that cannot run on this worker fails the job with
    the reason before any model is loaded."""
    with Heartbeat(GenerationJob, job_id, JobStatus.RUNNING):
        return _execute(job_id, batch_size, backend)


def _execute(job_id: int, batch_size: int, backend: str | None) -> GenerationJob:
    job = GenerationJob.objects.select_related("project").get(pk=job_id)
    if job.purpose == GenerationJob.Purpose.SCORES:
        return _scoring_job_execute(job)
    versions = list(job.model_versions.select_related("base_model").order_by("id"))
    settings = GenerationSettings.from_dict(job.settings)
    try:
        engine = resolve_backend(backend or django_settings.PREFTUNE_GENERATION_BACKEND)
        dtype = generation_dtype(engine)
        job.engine = f"{engine} {dtype}"
        GenerationJob.objects.filter(pk=job.pk).update(engine=job.engine)
        progress = generate_missing(job, versions, settings, batch_size, engine, dtype)
        created, skipped = progress.created, progress.skipped
        tasks = 0
        if job.purpose == GenerationJob.Purpose.CANDIDATES:
            tasks = progress.pairs.created
        else:
            from training.review.evaluation import review_outputs_finish

            tasks = review_outputs_finish(job=job, versions=versions, settings=settings)
    except GenerationCancelled:
        job.refresh_from_db()
        GenerationJob.objects.filter(pk=job_id, status=JobStatus.CANCELLED).update(
            finished_at=timezone.now(),
            notes=[*job.notes, f"Cancelled after {job.completions_created} of {job.completions_total} answers; "
                   "what was written stays, and a new job over the same prompts reuses it."],
        )
        return GenerationJob.objects.get(pk=job_id)
    except Exception as exc:  # noqa: BLE001 - any failure ends the job with its reason recorded
        logger.exception("Generation job %s failed", job_id)
        GenerationJob.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(
            status=JobStatus.FAILED, error=describe_failure(exc), finished_at=timezone.now()
        )
        return GenerationJob.objects.get(pk=job_id)
    # The review step may have added notes of its own (battles it could not make): keep them after ours.
    added = [n for n in (GenerationJob.objects.filter(pk=job_id).values_list("notes", flat=True).first() or [])
             if n not in progress.notes()]
    GenerationJob.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(
        status=JobStatus.SUCCEEDED, completions_created=created, completions_skipped=skipped, tasks_created=tasks,
        notes=[*progress.notes(), *added], finished_at=timezone.now(),
    )
    if created:
        # New answers get the project's reward-model scores (if it has a reward model) in a job of their own.
        from training.review.rewards import reward_scoring_job_create

        reward_scoring_job_create(project=job.project)
    return GenerationJob.objects.get(pk=job_id)


def _scoring_job_execute(job: GenerationJob) -> GenerationJob:
    from training.review.rewards import reward_scoring_execute, scoring_job_finish

    try:
        scored, skipped = reward_scoring_execute(job=job)
    except Exception as exc:  # noqa: BLE001 - any failure ends the job with its reason recorded
        logger.exception("Scoring job %s failed", job.pk)
        GenerationJob.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
            status=JobStatus.FAILED, error=describe_failure(exc), finished_at=timezone.now()
        )
        return GenerationJob.objects.get(pk=job.pk)
    scoring_job_finish(job_id=job.pk, scored=scored, skipped=skipped)
    return GenerationJob.objects.get(pk=job.pk)


def generation_jobs_reap(*, worker_name: str | None = None, older_than: timedelta | None = None) -> list[int]:
    """Fail running jobs whose worker is gone: the jobs a (re)starting worker was running (they died with its
    previous life), or those whose heartbeat is older than ``older_than`` (a worker killed, frozen or cut off).

    Nothing generated is lost: completions are written as batches finish, and a new job skips them.
    """
    condition = stale_condition(worker_name=worker_name, older_than=older_than, what="jobs")
    stuck = list(GenerationJob.objects.filter(condition, status=JobStatus.RUNNING).values_list("pk", flat=True))
    GenerationJob.objects.filter(pk__in=stuck, status=JobStatus.RUNNING).update(
        status=JobStatus.FAILED,
        finished_at=timezone.now(),
        error="The worker running this job stopped before it finished (it was killed, frozen or lost its "
        "connection). Generate again: completions already written are kept and skipped.",
    )
    return stuck
