"""Reads for the review pages: how many held-out prompts a review samples, everything a page says about one matched
comparison of a run's base and tuned (``comparison_view``), the review jobs with what they measured, and the
project's generation jobs and versions.

The reads they are made of have homes of their own: matched outputs and comparisons
(``training.review.matched_outputs``), the side by side (``side_by_side``), whether the tuned model moved
(``movement``) or degenerated (``degeneration``), what people judged (``results``), the leaderboard
(``leaderboard``) and what a candidates job will make (``candidate_expectation``). Only MATCHED outputs are ever
paired or counted (``training.review.comparisons``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labeling.models import Completion, Project, Prompt
from training.models import GenerationJob, ModelVersion, TuningRun
from training.review.comparisons import describe_settings
from training.review.degeneration import DegenerationSummary, comparison_degeneration
from training.review.matched_outputs import Comparison, comparison_choose, comparisons
from training.review.movement import MovementSummary, comparison_movement
from training.review.results import BattleResults, ThumbsResults, battle_results, heldout_thumbs

# The review form asks for enough samples per prompt to reach this many matched pairs (at most 8 samples).
TARGET_MATCHED_PAIRS = 90
MAX_SAMPLES = 8


def heldout_prompt_count(*, project: Project) -> int:
    """How many held-out prompts the project has (a review generates for each)."""
    return Prompt.objects.filter(project=project, split=Prompt.Split.HELDOUT).count()


def samples_for_target(heldout_prompts: int) -> int:
    """Samples per prompt that give at least TARGET_MATCHED_PAIRS matched pairs: min(8, ceil(90 / prompts))."""
    if heldout_prompts <= 0:
        return 1
    return min(MAX_SAMPLES, -(-TARGET_MATCHED_PAIRS // heldout_prompts))


# ---------------------------------------------------------------- a page's comparison


@dataclass(frozen=True)
class ComparisonView:
    """Everything a review or battles page says about one matched comparison of a run's base and tuned."""

    comparisons: list[Comparison]
    comparison: Comparison | None
    movement: MovementSummary | None
    results: BattleResults | None  # compare projects: blind battles
    thumbs: ThumbsResults | None  # rate projects: held-out thumbs
    degeneration: DegenerationSummary | None = None

    @property
    def settings(self) -> dict[str, Any] | None:
        return self.comparison.settings if self.comparison is not None else None


def comparison_view(
    *, project: Project, run: TuningRun | None, base: ModelVersion, tuned: ModelVersion, key: str | None = None
) -> ComparisonView:
    """The comparison ``key`` names (default: the newest review job's settings for ``run``), how far the tuned
    model moved in it, and its battle results (compare project) or held-out thumbs (rate project)."""
    options = comparisons(project=project, first=base, second=tuned)
    chosen = comparison_choose(options, key=key, run=run)
    settings = chosen.settings if chosen is not None else None
    results = thumbs = None
    if project.mode == Project.Mode.RATE:
        thumbs = heldout_thumbs(project=project, base=base, tuned=tuned, settings=settings)
    elif settings is not None:
        results = battle_results(project=project, tuned=tuned, base=base, settings=settings)
    else:
        results = battle_results(project=project, tuned=tuned, base=base)
    return ComparisonView(
        comparisons=options, comparison=chosen,
        movement=comparison_movement(project=project, run=run, base=base, tuned=tuned, comparison=chosen),
        results=results, thumbs=thumbs,
        degeneration=comparison_degeneration(project=project, base=base, tuned=tuned, comparison=chosen),
    )


@dataclass(frozen=True)
class ReviewJobRow:
    job: GenerationJob
    settings_label: str
    movement: MovementSummary | None


def review_jobs(*, project: Project, run_id: int | None = None, limit: int = 10) -> list[ReviewJobRow]:
    """The newest generation jobs with their settings in words and what they measured of the tuned model."""
    rows = []
    for job in generation_jobs(project=project, run_id=run_id, limit=limit):
        n = job.settings.get("n", 1) if isinstance(job.settings, dict) else 1
        movement = job.movement or {}
        summary = None
        if movement.get("pairs"):
            summary = MovementSummary.from_stored(movement, job_id=job.pk)
        rows.append(ReviewJobRow(job=job, settings_label=describe_settings(job.settings, range(n)), movement=summary))
    return rows


# ---------------------------------------------------------------- jobs and versions


def active_generation_job(*, project: Project, purpose: str, run: TuningRun | None = None) -> GenerationJob | None:
    """The project's (or ``run``'s) newest job of ``purpose`` that is queued or running, if any."""
    jobs = GenerationJob.objects.filter(
        project=project, purpose=purpose, status__in=[GenerationJob.Status.QUEUED, GenerationJob.Status.RUNNING]
    )
    if run is not None:
        jobs = jobs.filter(run=run)
    return jobs.order_by("-id").first()


def generation_jobs(*, project: Project, run_id: int | None = None, limit: int = 10) -> list[GenerationJob]:
    jobs = GenerationJob.objects.filter(project=project).prefetch_related("model_versions")
    if run_id is not None:
        jobs = jobs.filter(run_id=run_id)
    return list(jobs.order_by("-id")[:limit])


def project_versions_with_outputs(*, project: Project) -> list[ModelVersion]:
    """Model versions that have generated completions for this project's prompts."""
    ids = Completion.objects.filter(prompt__project=project, model_version__isnull=False).values("model_version_id")
    return list(ModelVersion.objects.filter(pk__in=ids).select_related("base_model").order_by("name"))


def active_generation_jobs(*, project: Project) -> list[GenerationJob]:
    """The project's queued and running generation jobs, oldest first (the dashboard's progress bars)."""
    active = (GenerationJob.Status.QUEUED, GenerationJob.Status.RUNNING)
    return list(GenerationJob.objects.filter(project=project, status__in=active).order_by("id"))
