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
"""
from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings as django_settings
from django.db import transaction
from django.utils import timezone

from labeling.models import Completion, PairTask, Project, Prompt, RateTask
from training.access import describe_failure
from training.heartbeat import Heartbeat, stale_condition
from training.models import GenerationJob, ModelVersion, TuningRun
from training.review.queueing import generation_job_enqueue_on_commit
from training.review.versions import ReviewError
from training.trainer import candidates as pairing_core
from training.trainer.generation_backends import generation_dtype, resolve_backend
from training.trainer.review import GenerationSettings, GenerationSettingsError, engine_of, without_provenance

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from training.review.rewards import RewardScorer

logger = logging.getLogger(__name__)
JobStatus = GenerationJob.Status

# Each prompt's candidates are paired all-against-all up to this many pairs (4 completions make 6).
MAX_CANDIDATE_PAIRS_PER_PROMPT = pairing_core.DEFAULT_MAX_PAIRS
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


class GenerationCancelled(Exception):
    """The job was cancelled while it ran: the worker stops after the batch it was writing."""


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


def _stop_if_cancelled(job_id: int) -> None:
    if GenerationJob.objects.filter(pk=job_id, status=JobStatus.CANCELLED).exists():
        raise GenerationCancelled


def _existing_keys(prompt_ids: list[int], versions: list[ModelVersion], engine: str | None) -> set[tuple[int, int, str]]:
    """(prompt, version, settings) of generated completions already stored, settings as a canonical string: those
    ``engine`` wrote (``engine_of``), or any engine's when ``engine`` is None."""
    rows = Completion.objects.filter(
        prompt_id__in=prompt_ids, model_version__in=versions, source=Completion.Source.GENERATED
    ).values_list("prompt_id", "model_version_id", "generation_settings")
    return {(p, v, _settings_key(s)) for p, v, s in rows if engine is None or engine_of(s) == engine}


def _settings_key(settings: dict[str, Any]) -> str:
    # The sampling settings alone: which engine wrote an output is checked apart (``_existing_keys``), so that a
    # job can be asked to reuse what another engine wrote.
    return repr(sorted(without_provenance(settings).items()))


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
        progress = _generate_missing(job, versions, settings, batch_size, engine, dtype)
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


@dataclass
class CandidatePairs:
    """What pairing some prompts' candidates made and left out (counts add up over calls)."""

    created: int = 0
    truncated: int = 0  # candidates cut off at the token limit, left out or not
    truncated_left_out: int = 0
    duplicates_left_out: int = 0
    prompts_without_pair: int = 0

    def add(self, other: CandidatePairs) -> None:
        self.created += other.created
        self.truncated += other.truncated
        self.truncated_left_out += other.truncated_left_out
        self.duplicates_left_out += other.duplicates_left_out
        self.prompts_without_pair += other.prompts_without_pair


def _answers(count: int) -> str:
    return f"{count} answer was" if count == 1 else f"{count} answers were"


@dataclass
class _Progress:
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


def _generate_missing(
    job: GenerationJob, versions: list[ModelVersion], settings: GenerationSettings, batch_size: int, backend: str,
    dtype: str,
) -> _Progress:
    """Make and store the job's missing completions batch by batch with ``backend`` (a resolved name) in ``dtype``,
    both recorded on each completion, updating the job's counts as they come; for a candidate job, pair each prompt
    as soon as all its candidates are stored. Missing means: no output of this engine and precision, or of any
    when the job reuses other engines' outputs."""
    from training.trainer.review import generate_for_versions

    progress = _Progress(job=job, settings=settings)
    existing = _existing_keys(job.prompt_ids, versions, None if job.reuse_other_engines else job.engine)
    wanted = [
        (prompt_id, version, k)
        for prompt_id in job.prompt_ids
        for version in versions
        for k in range(settings.n)
    ]
    missing = [(p, v, k) for p, v, k in wanted if (p, v.pk, _settings_key(settings.for_sample(k))) not in existing]
    progress.skipped = len(wanted) - len(missing)
    GenerationJob.objects.filter(pk=job.pk).update(completions_total=len(wanted), completions_skipped=progress.skipped)
    # A prompt is ready to pair when none of its completions is missing; those already complete pair now.
    waiting: dict[int, set[tuple[int, int]]] = {p: set() for p in job.prompt_ids}
    for p, v, k in missing:
        waiting[p].add((v.pk, k))
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

    def store(name: str, indices: list[int], k: int, texts: list[str], reasons: list[str]) -> None:
        version = by_name[name]
        rows = []
        ready = []
        for i, text, reason in zip(indices, texts, reasons, strict=True):
            prompt_id = need_prompt_ids[i]
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

    generate_for_versions(
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


def candidate_pairs_create(
    *, project: Project, prompt_ids: Sequence[int], versions: Sequence[ModelVersion], settings: GenerationSettings,
    pairing: str = pairing_core.ALL, cut_off: str = pairing_core.AGAINST_FINISHED, seed: int = 0, scorer: RewardScorer | None = None,
) -> CandidatePairs:
    """Labeling pair tasks among each prompt's generated candidates (these versions, these settings), chosen by
    ``pairing`` (``training.trainer.candidates.pair_candidates``), sides in random order. Answers cut off at the
    token limit are paired as ``cut_off`` says and identical answers are left out; pairs that exist already are
    not made again, so calling this twice for a prompt adds nothing. Returns what was made and left out.

    In a rate (thumbs) project there is nothing to pair: each distinct candidate becomes a thumbs task instead, cut-off
    ones only with ``PAIRED`` (a thumbs-up on an answer that never ends would teach it to run on)."""
    keys = {_settings_key(settings.for_sample(k)): settings.temperature_for(k) for k in range(settings.n)}
    candidates: dict[int, list[pairing_core.Candidate]] = {}
    for completion in Completion.objects.filter(
        prompt_id__in=prompt_ids, model_version__in=versions, source=Completion.Source.GENERATED
    ).order_by("id"):
        key = _settings_key(completion.generation_settings)
        if key in keys:
            candidates.setdefault(completion.prompt_id, []).append(pairing_core.Candidate(
                key=completion.pk, text=completion.text, truncated=completion.is_truncated, temperature=keys[key],
            ))
    if project.mode == Project.Mode.RATE:
        return _candidate_rate_tasks_create(project, candidates, skip_truncated=cut_off != pairing_core.PAIRED)
    existing = {
        frozenset(ids)
        for ids in PairTask.objects.filter(project=project, prompt_id__in=prompt_ids).values_list(
            "completion_a_id", "completion_b_id"
        )
    }
    result = CandidatePairs()
    scores: dict[int, float] = {}
    if pairing == pairing_core.REWARD_EXTREMES:
        if scorer is None:
            raise ReviewError("Best against worst needs the project's reward model to score the candidates.")
        scores = scorer.scores([c.key for found in candidates.values() for c in found])
    with transaction.atomic():
        for prompt_id in sorted(candidates):
            by_text = {c.text: scores[c.key] for c in candidates[prompt_id] if c.key in scores}
            plan = pairing_core.pair_candidates(
                candidates[prompt_id], pairing, cut_off=cut_off, max_pairs=MAX_CANDIDATE_PAIRS_PER_PROMPT,
                **({"score": by_text.__getitem__} if by_text else {}),
            )
            result.truncated += sum(1 for c in candidates[prompt_id] if c.truncated)
            result.truncated_left_out += plan.truncated_left_out
            result.duplicates_left_out += plan.duplicates_left_out
            result.prompts_without_pair += 0 if plan.pairs else 1
            # Seeded per prompt, so the sides do not depend on which other prompts are paired in the same call.
            rng = random.Random(f"{seed}:{prompt_id}")
            for a, b in plan.pairs:
                if frozenset((a.key, b.key)) in existing:
                    continue
                if rng.random() < 0.5:
                    a, b = b, a
                PairTask.objects.create(
                    project=project, prompt_id=prompt_id, completion_a_id=a.key, completion_b_id=b.key,
                    purpose=PairTask.Purpose.LABEL, overlap=project.overlap,
                )
                existing.add(frozenset((a.key, b.key)))
                result.created += 1
    return result


def _candidate_rate_tasks_create(
    project: Project, candidates: dict[int, list[pairing_core.Candidate]], *, skip_truncated: bool
) -> CandidatePairs:
    result = CandidatePairs()
    existing = set(RateTask.objects.filter(project=project).values_list("completion_id", flat=True))
    with transaction.atomic():
        for prompt_id in sorted(candidates):
            seen: set[str] = set()
            made = 0
            for candidate in candidates[prompt_id]:
                result.truncated += candidate.truncated
                if candidate.truncated and skip_truncated:
                    result.truncated_left_out += 1
                    continue
                if candidate.text.strip() in seen:
                    result.duplicates_left_out += 1
                    continue
                seen.add(candidate.text.strip())
                if candidate.key in existing:
                    continue
                RateTask.objects.create(project=project, completion_id=candidate.key, overlap=project.overlap)
                existing.add(candidate.key)
                made += 1
            result.created += made
            result.prompts_without_pair += 0 if seen else 1
    return result


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
