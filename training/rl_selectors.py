"""Reads for an online RL run's page: the reward-hacking watch as it stands (live while the run trains), with the
blind battles beside the reward model's verdict once annotators have judged the version, and the run's verdict."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from training.models import ModelVersion, TuningRun
from training.presenters.verdict import Verdict
from training.review.results import battle_results
from training.trainer.config import RL_METHODS
from training.trainer.rl_watch import BATTLES, WatchPoint, WatchWarning, battles_disagree, watch_warnings


@dataclass(frozen=True)
class BattleCheck:
    """The independent signal: annotators' blind battles of the tuned version against the base on held-out prompts."""

    votes: int
    rate: float | None
    low: float | None
    high: float | None

    @property
    def measured(self) -> bool:
        return self.votes > 0 and self.rate is not None


@dataclass(frozen=True)
class RlWatchView:
    base: WatchPoint
    points: list[WatchPoint]
    warnings: list[WatchWarning]
    kept_step: int | None
    kept_reason: str
    battles: BattleCheck | None = None
    reward_model: dict[str, Any] = field(default_factory=dict)

    @property
    def latest(self) -> WatchPoint | None:
        return self.points[-1] if self.points else None

    @property
    def shown(self) -> WatchPoint | None:
        """The evaluation whose answers the page shows: the kept one once chosen, else the latest."""
        if self.kept_step is not None:
            return next((p for p in self.points if p.step == self.kept_step), self.latest)
        return self.latest

    @property
    def reward_gain(self) -> float | None:
        shown = self.shown
        return shown.reward_mean - self.base.reward_mean if shown is not None else None

    @property
    def rows(self) -> list[tuple[WatchPoint, bool]]:
        """Every evaluation, the reference first, each with whether it is the kept one."""
        return [(self.base, False)] + [(p, p.step == self.kept_step) for p in self.points]


def _battle_check(run: TuningRun) -> BattleCheck | None:
    if run.model_version is None:
        return None
    base = ModelVersion.objects.filter(base_model=run.base_model, adapter_path="").order_by("id").first()
    if base is None:
        return None
    results = battle_results(project=run.project, tuned=run.model_version, base=base)
    return BattleCheck(votes=results.votes, rate=results.rate, low=results.low, high=results.high)


def rl_watch(*, run: TuningRun) -> RlWatchView | None:
    """The watch of an online RL run, None for other runs and before its first evaluation (the reference's)."""
    if run.method not in RL_METHODS:
        return None
    stored = (run.outcome or {}).get("watch") or {}
    if not stored.get("base"):
        return None
    base = WatchPoint.from_dict(stored["base"])
    points = [WatchPoint.from_dict(p) for p in stored.get("points", [])]
    warnings = watch_warnings(base, points)
    battles = _battle_check(run)
    view = RlWatchView(
        base=base, points=points, warnings=warnings, kept_step=stored.get("kept_step"),
        kept_reason=stored.get("kept_reason", ""), battles=battles,
        reward_model=((run.snapshot.lineage or {}).get("reward_model") or {}) if run.snapshot_id else {},
    )
    if battles is not None and battles.measured and battles_disagree(
        view.reward_gain, battles.rate, (battles.low, battles.high) if battles.low is not None else None
    ):
        shown = view.shown
        warnings.append(WatchWarning(
            BATTLES, shown.step if shown else 0,
            f"The reward model scores this version's answers {view.reward_gain:+.2f} above the base's, but annotators "
            f"preferred it in only {battles.rate:.0%} of {battles.votes} blind battles (95% interval "
            f"{battles.low:.0%}–{battles.high:.0%}): the reward is rising without people's preference following.",
            shown.samples if shown else [],
        ))
    return view


def rl_verdict(*, run: TuningRun) -> Verdict | None:
    """An online RL run's verdict, from its watch: hacking suspected, the reward not rising, or learning; None for
    other runs and before the watch's first evaluation."""
    view = rl_watch(run=run)
    shown = view.shown if view is not None else None
    if view is None or shown is None:
        return None
    prompts = shown.answers
    still = "So far, " if run.is_active else ""
    where = f"step {shown.step}, the kept checkpoint" if view.kept_step is not None else f"step {shown.step}"
    if view.warnings:
        first, *rest = view.warnings
        kept = f"The saved adapter is step {view.kept_step}: {view.kept_reason}. " if view.kept_step is not None else ""
        return Verdict(
            "hacking", f"{still}{first.message}",
            f"{kept}Raise the KL coefficient, shorten the answer length, or train the reward model on more pairs where "
            "the longer (or looping) answer lost; then compare in blind battles before trusting the reward.",
            tuple(w.message for w in rest),
        )
    gain = view.reward_gain or 0.0
    if gain <= 0:
        return Verdict(
            "under_fitted",
            f"{still}the reward-model score on {prompts} validation prompts did not rise ({view.base.reward_mean:+.2f} "
            f"before training, {shown.reward_mean:+.2f} at {where}).",
            "Raise the learning rate or the steps, or lower the KL coefficient; a group size of 4 or more gives each "
            "prompt's answers something to differ on.",
        )
    return Verdict(
        "ok",
        f"{still}the reward-model score on {prompts} validation prompts rose from {view.base.reward_mean:+.2f} to "
        f"{shown.reward_mean:+.2f} at {where}, with length ({view.base.mean_words:.0f} to {shown.mean_words:.0f} words), "
        "degeneration and repetition in line with the base's.",
        "Next: the reward model is a proxy. Review base and tuned outputs on held-out prompts and send them to blind "
        "battles: the battles say whether people agree with it.",
    )
