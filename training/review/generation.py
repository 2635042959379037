"""Generation jobs: candidates for labeling, or base and tuned review outputs, made by a gpu worker.

A job's life: ``generation_job_create`` fixes the prompts and settings and queues it (enqueued on commit) → the
gpu worker claims it (queued → running) and calls ``generation_job_execute``, which loads the base model once,
switches each version's adapter on and off over it, and stores only the completions that do not exist yet →
succeeded or failed, with the reason. Candidate jobs then pair each prompt's candidates as labeling tasks;
review jobs hand over to ``training.review.evaluation`` (battles, or held-out thumbs in a rate project).
"""
from __future__ import annotations

import itertools
import logging
import random
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from celery import current_app
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from labeling.models import Completion, PairTask, Project, Prompt
from training.models import GenerationJob, ModelVersion, TuningRun
from training.review.versions import ReviewError
from training.trainer.review import GenerationSettings, GenerationSettingsError

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)
JobStatus = GenerationJob.Status
GENERATE_TASK = "workers.generate"

# Each prompt's new candidates are paired all-against-all up to this many pairs (4 completions make 6).
MAX_CANDIDATE_PAIRS_PER_PROMPT = 6
MAX_PROMPTS_PER_JOB = 5000


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
    created_by: User | None = None,
    enqueue: bool = True,
) -> GenerationJob:
    """Validate and queue a generation job; the worker starts it once this transaction commits.

    ``enqueue=False`` only creates the queued row, for a caller that claims and runs it itself (the
    ``generate_completions --inline`` command); nothing else should pass it.

    Prompts are ``prompt_ids`` if given, else the project's prompts in ``split`` (held-out by default).
    All versions must share one base model: the worker loads it once. ``create_review_tasks`` (review jobs with
    exactly two versions) creates blind battles between them when the outputs are in.
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
    if create_review_tasks and len(versions) != 2:
        raise ReviewError("Battles are between exactly two model versions.")
    ids = _resolve_prompts(project, prompt_ids, split)
    with transaction.atomic():
        job = GenerationJob.objects.create(
            project=project,
            run=run,
            prompt_ids=ids,
            prompt_count=len(ids),
            settings=settings.to_dict(),
            purpose=purpose,
            create_review_tasks=create_review_tasks,
            created_by=created_by,
        )
        job.model_versions.set(versions)
        if enqueue:
            _enqueue_on_commit(job.pk)
    return job


def _enqueue_on_commit(job_id: int) -> None:
    transaction.on_commit(lambda: _send(job_id))


def _send(job_id: int) -> None:
    """Publish the job's message; with the broker unreachable, fail the job with the reason instead of a 500."""
    from kombu.exceptions import OperationalError as BrokerUnavailable

    try:
        # By name, so this module never imports workers.tasks (which imports the services): arrows run one way.
        current_app.send_task(
            GENERATE_TASK, args=[job_id], queue="gpu",
            retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        )
    except BrokerUnavailable as exc:
        logger.error("Generation job %s could not be queued: the broker is unreachable (%s).", job_id, exc)
        GenerationJob.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(
            status=JobStatus.FAILED,
            finished_at=timezone.now(),
            error="The task broker could not be reached, so the job was not queued. Start it again once the "
            "broker is back.",
        )


def generation_job_claim(*, job_id: int, worker: str) -> bool:
    """Move a queued job to running; False when another worker got there first (a redelivered message)."""
    now = timezone.now()
    return GenerationJob.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(
        status=JobStatus.RUNNING, worker=worker, started_at=now
    ) == 1


def _existing_keys(prompt_ids: list[int], versions: list[ModelVersion]) -> set[tuple[int, int, str]]:
    """(prompt, version, settings) of generated completions already stored, settings as a canonical string."""
    rows = Completion.objects.filter(
        prompt_id__in=prompt_ids, model_version__in=versions, source=Completion.Source.GENERATED
    ).values_list("prompt_id", "model_version_id", "generation_settings")
    return {(p, v, _settings_key(s)) for p, v, s in rows}


def _settings_key(settings: dict[str, Any]) -> str:
    return repr(sorted(settings.items()))


def generation_job_execute(*, job_id: int, batch_size: int = 8) -> GenerationJob:
    """Generate what a claimed (running) job still lacks and record the outcome; never raises for a generation
    failure: the reason is stored on the job. Completions already stored with the same prompt, version and
    settings are skipped, so running a job twice, or a second job over the same prompts, adds nothing twice."""
    job = GenerationJob.objects.select_related("project").get(pk=job_id)
    versions = list(job.model_versions.select_related("base_model").order_by("id"))
    settings = GenerationSettings.from_dict(job.settings)
    try:
        created, skipped = _generate_missing(job, versions, settings, batch_size)
        tasks = 0
        if job.purpose == GenerationJob.Purpose.CANDIDATES:
            tasks = candidate_pairs_create(project=job.project, prompt_ids=job.prompt_ids, versions=versions, settings=settings)
        else:
            from training.review.evaluation import review_outputs_finish

            tasks = review_outputs_finish(job=job, versions=versions, settings=settings)
    except Exception as exc:  # noqa: BLE001 - any failure ends the job with its reason recorded
        logger.exception("Generation job %s failed", job_id)
        GenerationJob.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(
            status=JobStatus.FAILED, error=_describe(exc), finished_at=timezone.now()
        )
        return GenerationJob.objects.get(pk=job_id)
    GenerationJob.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(
        status=JobStatus.SUCCEEDED, completions_created=created, completions_skipped=skipped, tasks_created=tasks,
        finished_at=timezone.now(),
    )
    return GenerationJob.objects.get(pk=job_id)


def _generate_missing(
    job: GenerationJob, versions: list[ModelVersion], settings: GenerationSettings, batch_size: int
) -> tuple[int, int]:
    from training.trainer.review import generate_for_versions

    existing = _existing_keys(job.prompt_ids, versions)
    wanted = [
        (prompt_id, version, k)
        for prompt_id in job.prompt_ids
        for version in versions
        for k in range(settings.n)
    ]
    missing = [(p, v, k) for p, v, k in wanted if (p, v.pk, _settings_key(settings.for_sample(k))) not in existing]
    skipped = len(wanted) - len(missing)
    if not missing:
        return 0, skipped
    # Versions with nothing missing are not generated at all; the prompts are the union of what any version
    # lacks (usually all of them or none), and only the missing (prompt, version, sample) triples are stored.
    need_versions = [v for v in versions if any(mv.pk == v.pk for _, mv, _ in missing)]
    need_prompt_ids = sorted({p for p, _, _ in missing})
    missing_keys = {(p, v.pk, k) for p, v, k in missing}
    prompts = {p.pk: p for p in Prompt.objects.filter(pk__in=need_prompt_ids)}
    by_name = {f"v{v.pk}": v for v in need_versions}
    created = 0

    def store(name: str, texts: list[list[str]]) -> None:
        nonlocal created
        version = by_name[name]
        rows = [
            Completion(
                prompt_id=prompt_id,
                text=samples[k],
                source=Completion.Source.GENERATED,
                model_name=version.name,
                model_version=version,
                generation_settings=settings.for_sample(k),
            )
            for prompt_id, samples in zip(need_prompt_ids, texts, strict=True)
            for k in range(settings.n)
            if (prompt_id, version.pk, k) in missing_keys
        ]
        Completion.objects.bulk_create(rows)
        created += len(rows)

    generate_for_versions(
        need_versions[0].base_model.path,
        {name: (v.adapter_path or None) for name, v in by_name.items()},
        [prompts[p].messages for p in need_prompt_ids],
        settings,
        batch_size=batch_size,
        on_version_done=store,
    )
    return created, skipped


def _describe(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()[:4000]


def _pair_exists(project: Project, a_id: int, b_id: int) -> bool:
    return PairTask.objects.filter(
        Q(completion_a_id=a_id, completion_b_id=b_id) | Q(completion_a_id=b_id, completion_b_id=a_id), project=project
    ).exists()


def candidate_pairs_create(
    *, project: Project, prompt_ids: Sequence[int], versions: Sequence[ModelVersion], settings: GenerationSettings,
    seed: int = 0,
) -> int:
    """Labeling pair tasks among each prompt's generated candidates (these versions, these settings), all
    against all up to MAX_CANDIDATE_PAIRS_PER_PROMPT, sides in random order. Pairs that exist already and
    pairs of identical texts are skipped. Returns how many tasks were created."""
    keys = {_settings_key(settings.for_sample(k)) for k in range(settings.n)}
    completions: dict[int, list[Completion]] = {}
    for completion in Completion.objects.filter(
        prompt_id__in=prompt_ids, model_version__in=versions, source=Completion.Source.GENERATED
    ).order_by("id"):
        if _settings_key(completion.generation_settings) in keys:
            completions.setdefault(completion.prompt_id, []).append(completion)
    rng = random.Random(seed)
    created = 0
    with transaction.atomic():
        for prompt_id in sorted(completions):
            made = 0
            for a, b in itertools.combinations(completions[prompt_id], 2):
                if made >= MAX_CANDIDATE_PAIRS_PER_PROMPT:
                    break
                if a.text.strip() == b.text.strip() or _pair_exists(project, a.pk, b.pk):
                    continue
                if rng.random() < 0.5:
                    a, b = b, a
                PairTask.objects.create(
                    project=project, prompt_id=prompt_id, completion_a=a, completion_b=b,
                    purpose=PairTask.Purpose.LABEL, overlap=project.overlap,
                )
                made += 1
            created += made
    return created


def generation_jobs_reap(*, worker_name: str) -> list[int]:
    """Fail the jobs a (re)starting worker was running: they died with its previous life.

    Nothing generated is lost: completions are written as batches finish, and a new job skips them.
    """
    stuck = list(
        GenerationJob.objects.filter(status=JobStatus.RUNNING, worker=worker_name).values_list("pk", flat=True)
    )
    GenerationJob.objects.filter(pk__in=stuck, status=JobStatus.RUNNING).update(
        status=JobStatus.FAILED,
        finished_at=timezone.now(),
        error="The worker running this job stopped before it finished. Generate again: completions already "
        "written are kept and skipped.",
    )
    return stuck
