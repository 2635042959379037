"""Reward-model scores: the project's current reward model, the jobs that score its completions, and the score
distributions the review page shows. Scoring jobs are GenerationJobs of purpose "scores", so they share the
generation jobs' queue, claim, progress bar and reaper."""
from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from django.db import transaction
from django.db.models import F, OuterRef, QuerySet, Subquery
from django.db.models.functions import Abs
from django.utils import timezone

from labeling.models import Completion, Project
from training.models import GenerationJob, ModelVersion, RewardScore, TuningRun
from training.review.queueing import generation_job_enqueue_on_commit
from training.templatetags.numbers import format_share
from training.trainer.reward import ScoreDistribution, score_distributions, spread_collapsed

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from training.trainer.reward import PairwiseAccuracy

logger = logging.getLogger(__name__)

JobStatus = GenerationJob.Status
SCORE_BATCH = 16


def project_reward_model(*, project: Project) -> TuningRun | None:
    """The project's newest succeeded reward-model run: the one that scores, ranks and orders."""
    return (
        TuningRun.objects.filter(project=project, method=TuningRun.Method.REWARD, status=TuningRun.Status.SUCCEEDED)
        .select_related("base_model")
        .order_by("-finished_at", "-id")
        .first()
    )


def reward_adapter_dir(run: TuningRun) -> str:
    """The adapter of the attempt that finished the run (runs from before attempts had folders: the run folder's)."""
    from training.trainer.checkpoints import ADAPTER_DIRNAME

    attempt = run.attempt_dir() / ADAPTER_DIRNAME
    return str(attempt if attempt.is_dir() else Path(run.output_dir) / ADAPTER_DIRNAME)


def unscored_completions(*, project: Project, reward_run: TuningRun) -> QuerySet[Completion]:
    return Completion.objects.filter(prompt__project=project).exclude(reward_scores__reward_run=reward_run)


def reward_scoring_job_create(
    *, project: Project, reward_run: TuningRun | None = None, created_by: User | None = None
) -> GenerationJob | None:
    """Queue a job that scores every completion of the project the reward model has not scored yet (review outputs,
    candidates, imported answers); None when there is no reward model or nothing to score. A job already queued or
    running for the same reward model is returned instead of a second one."""
    reward_run = reward_run or project_reward_model(project=project)
    if reward_run is None:
        return None
    with transaction.atomic():
        active = GenerationJob.objects.select_for_update().filter(
            project=project, run=reward_run, purpose=GenerationJob.Purpose.SCORES,
            status__in=[JobStatus.QUEUED, JobStatus.RUNNING],
        ).first()
        if active is not None:
            return active
        pending = unscored_completions(project=project, reward_run=reward_run)
        prompt_ids = sorted(set(pending.values_list("prompt_id", flat=True)))
        if not prompt_ids:
            return None
        job = GenerationJob.objects.create(
            project=project, run=reward_run, prompt_ids=prompt_ids, settings={}, purpose=GenerationJob.Purpose.SCORES,
            prompt_count=len(prompt_ids), completions_total=pending.count(), created_by=created_by,
        )
        generation_job_enqueue_on_commit(job.pk)
    return job


def reward_scoring_execute(*, job: GenerationJob) -> tuple[int, int]:
    """Score a claimed scoring job's completions in batches, storing each batch as it is done (a job that dies
    keeps what it scored, and a new one skips it). Returns (scored, skipped as already there)."""
    reward_run = TuningRun.objects.select_related("base_model").get(pk=job.run_id)
    pending = list(
        unscored_completions(project=job.project, reward_run=reward_run)
        .filter(prompt_id__in=job.prompt_ids).order_by("id").values_list("pk", flat=True)
    )
    skipped = max(0, job.completions_total - len(pending))
    scorer = RewardScorer(reward_run)
    scored = 0
    for start in range(0, len(pending), SCORE_BATCH):
        if GenerationJob.objects.filter(pk=job.pk, status=JobStatus.CANCELLED).exists():
            # Cancelled between two batches: what was scored stays, and a new job scores the rest.
            GenerationJob.objects.filter(pk=job.pk).update(
                finished_at=timezone.now(), completions_created=scored,
                notes=[f"Cancelled after scoring {scored} of {len(pending)} answers; their scores stay."],
            )
            break
        batch = pending[start : start + SCORE_BATCH]
        scorer.scores(batch)
        scored += len(batch)
        GenerationJob.objects.filter(pk=job.pk).update(completions_created=scored, completions_skipped=skipped)
    return scored, skipped


class RewardScorer:
    """The project's reward model, loaded once on first use, scoring completions by id and storing the scores (so
    a candidate job that ranks with it leaves its candidates scored for the labeling order too)."""

    def __init__(self, reward_run: TuningRun) -> None:
        self.reward_run = reward_run
        self._loaded: tuple | None = None

    @classmethod
    def for_project(cls, project: Project) -> RewardScorer:
        reward_run = project_reward_model(project=project)
        if reward_run is None:
            from training.review.versions import ReviewError

            raise ReviewError("The project has no reward model to rank candidates with: train one first.")
        return cls(reward_run)

    def scores(self, completion_ids: list[int]) -> dict[int, float]:
        from training.trainer.device import choose_device
        from training.trainer.reward import load_reward_model, score_conversations

        found = scores_by_completion(reward_run=self.reward_run, completion_ids=completion_ids)
        missing = list(
            Completion.objects.filter(pk__in=[i for i in completion_ids if i not in found]).select_related("prompt")
            .order_by("id")
        )
        if missing:
            if self._loaded is None:
                self._loaded = load_reward_model(
                    reward_adapter_dir(self.reward_run), self.reward_run.base_model.path, device=choose_device().device
                )
            model, tokenizer = self._loaded
            conversations = [[*c.prompt.messages, {"role": "assistant", "content": c.text}] for c in missing]
            # The length the reward model was trained at: longer inputs keep their end, where the score is read.
            max_length = int((self.reward_run.settings or {}).get("max_length") or 1024)
            values = score_conversations(model, tokenizer, conversations, batch_size=SCORE_BATCH, max_length=max_length)
            RewardScore.objects.bulk_create(
                [RewardScore(reward_run=self.reward_run, completion=c, score=v) for c, v in zip(missing, values, strict=True)],
                ignore_conflicts=True,
            )
            found.update({c.pk: v for c, v in zip(missing, values, strict=True)})
        return found


def scores_by_completion(*, reward_run: TuningRun, completion_ids: Iterable[int]) -> dict[int, float]:
    return dict(
        RewardScore.objects.filter(reward_run=reward_run, completion_id__in=list(completion_ids))
        .values_list("completion_id", "score")
    )


@dataclass(frozen=True)
class BestOfN:
    """Did tuning beat sampling more? Per held-out prompt, the tuned model's first sample against the best of the
    base model's N samples as the reward model picks it, both scored by that reward model."""

    n: int
    prompts: int
    tuned_wins: int
    ties: int
    base_best_mean: float
    tuned_mean: float

    @property
    def win_share(self) -> PairwiseAccuracy:
        from training.trainer.reward import PairwiseAccuracy

        return PairwiseAccuracy(correct=self.tuned_wins, pairs=self.prompts, ties=self.ties)


@dataclass(frozen=True)
class RewardComparison:
    """Base and tuned held-out outputs as one reward model scores them: each side's distribution and their paired
    difference (tuned minus base on the same prompt and sample)."""

    reward_run: TuningRun
    base: ScoreDistribution
    tuned: ScoreDistribution
    paired: ScoreDistribution  # the distribution of per-row differences
    unscored: int
    best_of_n: BestOfN | None = None

    @property
    def collapsed(self) -> bool:
        return spread_collapsed(self.base, self.tuned)

    @property
    def accuracy(self) -> dict | None:
        held = (self.reward_run.outcome or {}).get("reward_model")
        return held if isinstance(held, dict) and held.get("pairs") else None


def reward_comparison(
    *, project: Project, rows: list, base: ModelVersion, tuned: ModelVersion
) -> RewardComparison | None:
    """Reward scores of the side-by-side rows (both outputs present); None without a reward model."""
    reward_run = project_reward_model(project=project)
    if reward_run is None:
        return None
    both = [row for row in rows if row.base is not None and row.tuned is not None]
    ids = [c.pk for row in both for c in (row.base, row.tuned)]
    found = scores_by_completion(reward_run=reward_run, completion_ids=ids)
    scored = [row for row in both if row.base.pk in found and row.tuned.pk in found]
    base_scores = [found[row.base.pk] for row in scored]
    tuned_scores = [found[row.tuned.pk] for row in scored]
    sides = score_distributions({"base": base_scores, "tuned": tuned_scores})
    paired = score_distributions({"difference": [t - b for b, t in zip(base_scores, tuned_scores, strict=True)]})
    return RewardComparison(
        reward_run=reward_run, base=sides["base"], tuned=sides["tuned"], paired=paired["difference"],
        unscored=len(both) - len(scored), best_of_n=_best_of_n(scored, found),
    )


def _best_of_n(rows: list, found: dict[int, float]) -> BestOfN | None:
    """BestOfN over prompts with two or more scored base samples; None when the outputs have one sample a prompt."""
    by_prompt: dict[int, list] = {}
    for row in rows:
        by_prompt.setdefault(row.prompt.pk, []).append(row)
    best, tuned = [], []
    n = 0
    for prompt_rows in by_prompt.values():
        if len(prompt_rows) < 2:
            continue
        n = max(n, len(prompt_rows))
        best.append(max(found[row.base.pk] for row in prompt_rows))
        first = min(prompt_rows, key=lambda row: row.sample or 0)
        tuned.append(found[first.tuned.pk])
    if not best:
        return None
    return BestOfN(
        n=n, prompts=len(best), tuned_wins=sum(1 for b, t in zip(best, tuned, strict=True) if t > b),
        ties=sum(1 for b, t in zip(best, tuned, strict=True) if t == b),
        base_best_mean=sum(best) / len(best), tuned_mean=sum(tuned) / len(tuned),
    )


def scoring_jobs(*, project: Project, limit: int = 5) -> list[GenerationJob]:
    return list(
        GenerationJob.objects.filter(project=project, purpose=GenerationJob.Purpose.SCORES)
        .select_related("run").order_by("-id")[:limit]
    )


def scoring_job_finish(*, job_id: int, scored: int, skipped: int) -> None:
    GenerationJob.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(
        status=JobStatus.SUCCEEDED, completions_created=scored, completions_skipped=skipped,
        notes=[f"Scored {scored} answer{'s' if scored != 1 else ''} with the reward model"
               + (f"; {skipped} already had a score." if skipped else ".")],
        finished_at=timezone.now(),
    )


def label_order_note(*, project: Project) -> str:
    """What the dashboard says about the order annotators get pairs in; empty for the default order."""
    from labeling.models import PairTask, TaskStatus

    if project.mode != Project.Mode.COMPARE or project.label_order != Project.LabelOrder.UNCERTAIN_FIRST:
        return ""
    reward_run = project_reward_model(project=project)
    if reward_run is None:
        return (
            "Label order is uncertain first, but no reward model has been trained in this project yet, so pairs come in "
            "order. Launch a run with the reward-model method; its scores then decide the order."
        )
    scored = RewardScore.objects.filter(reward_run=reward_run).values("completion_id")
    open_tasks = PairTask.objects.filter(project=project, status=TaskStatus.OPEN)
    both = open_tasks.filter(completion_a_id__in=scored, completion_b_id__in=scored).count()
    note = (
        f"Annotators get first the open pairs the reward model {reward_run.name!r} is least sure about: {both} of "
        f"{open_tasks.count()} open pairs are scored, and unscored pairs come after them."
    )
    held = (reward_run.outcome or {}).get("reward_model") or {}
    accuracy, interval = held.get("accuracy"), held.get("interval")
    if isinstance(accuracy, int | float) and isinstance(interval, list) and len(interval) == 2 and interval[0] <= 0.5:
        # bench/label_order.py: a reward model trained on 8 votes ranked 36% of test pairs right, and the pairs it
        # was "least sure about" taught less than random ones (61.9% against 74.3% at 16 votes).
        note += (
            f" Its held-out accuracy, {format_share(accuracy)} ({format_share(interval[0])}–{format_share(interval[1])}), "
            "is not clearly above chance, so its least-sure pairs may not be the informative ones: collect a round "
            "of votes in order first, then train a new reward model."
        )
    return note


def pairs_uncertain_first(project: Project, candidates: QuerySet) -> QuerySet | None:
    """Labeling's "uncertain first" order (labeling.extensions.pair_order): pairs already started first, then those
    whose two answers the project's reward model scores closest, unscored pairs last; None without a reward model."""
    reward_run = project_reward_model(project=project)
    if reward_run is None:
        return None
    scores = RewardScore.objects.filter(reward_run=reward_run)
    score_a = Subquery(scores.filter(completion_id=OuterRef("completion_a_id")).values("score")[:1])
    score_b = Subquery(scores.filter(completion_id=OuterRef("completion_b_id")).values("score")[:1])
    return candidates.annotate(reward_gap=Abs(score_a - score_b)).order_by(
        "-vote_count", F("reward_gap").asc(nulls_last=True), "id"
    )
