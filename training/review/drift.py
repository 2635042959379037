"""Quality against drift: for every trained version of a project, how far it moved from its base model against how
much better annotators found it than that base, as each run's review page leads with them.

- Drift: the mean per-token KL(tuned ‖ base) that the run's newest review job measured over the tuned model's own
  held-out outputs (``GenerationJob.movement``, read through ``comparison_movement``).
- Quality: the paired win rate of blind battles against the base on held-out prompts (ties half), with its 95%
  interval from a bootstrap over prompts (``battle_results``).

Both are read in the comparison the review page picks (``comparison_choose``: the newest review job's settings), so a
point on the chart is the review page's headline, never a figure made up for the chart. A version with either figure
missing stays in the result and says which (``VersionDrift.missing``), so a page can tell the admin what to run.
"""
from __future__ import annotations

from dataclasses import dataclass

from labeling.models import Project
from training.models import ModelVersion, TuningRun
from training.review import matched_outputs as review_matched_outputs
from training.review import movement as review_movement
from training.review import results as review_results
from training.review.rewards import project_reward_model
from training.trainer.win_rates import PairedWinRate

# What a version lacks before it can be a point (``VersionDrift.missing``).
MISSING_OUTPUTS = "outputs"  # no matched held-out outputs of it and its base: neither KL nor battles yet
MISSING_KL = "kl"  # outputs, but no review job measured the KL on them
MISSING_BATTLES = "battles"  # no blind battles against the base in that comparison
MISSING_VOTES = "votes"  # battles, not voted on yet
MISSING_THUMBS_PROJECT = "thumbs_project"  # a thumbs project judges one answer at a time: no win rate against the base


@dataclass(frozen=True)
class VersionDrift:
    """One trained version: its KL from its base and its held-out win rate against that base, where measured."""

    run: TuningRun
    version: ModelVersion
    base: ModelVersion | None  # the base model alone; None before anything of it was generated
    comparison: review_matched_outputs.Comparison | None  # the matched comparison both figures come from
    movement: review_movement.MovementSummary | None
    win_rate: PairedWinRate | None
    battles: int  # matched review pairs against the base in the comparison, voted on or not
    thumbs_project: bool

    @property
    def kl_per_token(self) -> float | None:
        return self.movement.kl_per_token if self.movement is not None else None

    @property
    def contaminated(self) -> bool:
        return self.version.saw_heldout

    @property
    def missing(self) -> tuple[str, ...]:
        """What stops it being a point, in the order an admin would run it; empty when it is one."""
        if self.comparison is None or not self.comparison.pairs:
            return (MISSING_OUTPUTS, MISSING_THUMBS_PROJECT) if self.thumbs_project else (MISSING_OUTPUTS,)
        missing = [] if self.kl_per_token is not None else [MISSING_KL]
        if self.thumbs_project:
            missing.append(MISSING_THUMBS_PROJECT)
        elif not self.battles:
            missing.append(MISSING_BATTLES)
        elif self.win_rate is None:
            missing.append(MISSING_VOTES)
        return tuple(missing)

    @property
    def measured(self) -> bool:
        return not self.missing


@dataclass(frozen=True)
class QualityAgainstDrift:
    """Every trained version of a project (oldest run first), and the reward model a best-of-N figure would need."""

    versions: list[VersionDrift]
    reward_model: TuningRun | None

    @property
    def measured(self) -> list[VersionDrift]:
        return [v for v in self.versions if v.measured]

    @property
    def not_measured(self) -> list[VersionDrift]:
        return [v for v in self.versions if not v.measured]


def _base_version(run: TuningRun) -> ModelVersion | None:
    # Read only: the review page creates the base version on first use, and a page that only reads must not.
    return ModelVersion.objects.filter(base_model_id=run.base_model_id, adapter_path="").order_by("id").first()


def version_drift(*, run: TuningRun) -> VersionDrift:
    """``run``'s version as its review page measures it: the comparison that page picks first, the KL its newest
    review job stored there, and the paired win rate of the blind battles in it. Raises ValueError for a run
    without a version."""
    project, tuned = run.project, run.model_version
    if tuned is None:
        raise ValueError(f"Run {run.pk} has no trained version to measure.")
    thumbs_project = project.mode == Project.Mode.RATE
    base = _base_version(run)
    comparison = movement = win_rate = None
    battles = 0
    if base is not None:
        options = review_matched_outputs.comparisons(project=project, first=base, second=tuned)
        comparison = review_matched_outputs.comparison_choose(options, run=run)
        movement = review_movement.comparison_movement(
            project=project, run=run, base=base, tuned=tuned, comparison=comparison
        )
        if comparison is not None and comparison.pairs and not thumbs_project:
            results = review_results.battle_results(project=project, tuned=tuned, base=base, settings=comparison.settings)
            battles, win_rate = results.tasks, results.paired
    return VersionDrift(
        run=run, version=tuned, base=base, comparison=comparison, movement=movement, win_rate=win_rate,
        battles=battles, thumbs_project=thumbs_project,
    )


def quality_against_drift(*, project: Project) -> QualityAgainstDrift:
    """Every version trained in ``project`` by any method that makes one (reward-model runs make none), oldest
    run first, each with what ``version_drift`` finds. Runs about three queries a version and a bootstrap of its
    battles, as its review page does."""
    runs = (
        TuningRun.objects.filter(project=project, model_version__isnull=False)
        .exclude(method=TuningRun.Method.REWARD)
        .select_related("project", "model_version", "base_model")
        .order_by("id")
    )
    return QualityAgainstDrift(
        versions=[version_drift(run=run) for run in runs], reward_model=project_reward_model(project=project)
    )
