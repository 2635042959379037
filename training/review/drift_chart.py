"""The quality-against-drift chart of the leaderboard page, as the template draws it in inline SVG: the presenter that
turns ``training.review.drift.QualityAgainstDrift`` into labels, tooltips, table rows and to-do lines, with the review
pages' number formats (``figures``); ``training.review.drift_geometry`` places them.
"""
from __future__ import annotations

from dataclasses import dataclass

from training.models import TuningRun
from training.review import figures
from training.review.drift import (
    MISSING_BATTLES,
    MISSING_KL,
    MISSING_OUTPUTS,
    MISSING_THUMBS_PROJECT,
    MISSING_VOTES,
    QualityAgainstDrift,
    VersionDrift,
)
from training.review.drift_geometry import ChartLayout, PlacedPoint, PlotInput, chart_layout


def method_name(method: str) -> str:
    """"DPO" for "dpo", "SimPO" for "simpo"; a method this list does not know yet (online RL: "grpo") in capitals."""
    label = dict(TuningRun.Method.choices).get(method)
    return label.split(" (")[0] if label else method.upper()


@dataclass(frozen=True)
class MeasuredRow:
    """A version on the chart: its point, and the figures its tooltip and the table say."""

    drift: VersionDrift
    method: str
    point: PlacedPoint
    kl: str
    kl_basis: str
    win_rate: str
    interval: str
    basis: str  # "40 votes on 20 matched pairs over 10 held-out prompts"
    measured_on: str  # the comparison's settings in words
    tooltip: str


@dataclass(frozen=True)
class NotMeasuredRow:
    drift: VersionDrift
    method: str
    to_do: list[str]  # what to run, one line a missing figure


@dataclass(frozen=True)
class DriftChart:
    layout: ChartLayout | None  # None when no version has both figures yet
    measured: list[MeasuredRow]
    not_measured: list[NotMeasuredRow]
    has_reward_model: bool

    @property
    def versions(self) -> int:
        return len(self.measured) + len(self.not_measured)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _to_do(drift: VersionDrift) -> list[str]:
    lines = {
        MISSING_OUTPUTS: "for its KL and win rate, generate base and tuned outputs of the held-out prompts on its review "
        "page (the review job measures the KL on them), then create blind battles there and collect votes",
        MISSING_KL: "for its KL, generate its review outputs on its review page again: a review job measures KL(tuned "
        "‖ base) on the outputs it matches (its notes say why where it could not)",
        MISSING_BATTLES: "for its win rate, create blind battles against the base on its review page and collect votes",
        MISSING_VOTES: f"for its win rate, votes on its {_plural(drift.battles, 'blind battle')} (annotators see them "
        "in this project's compare screen)",
        MISSING_THUMBS_PROJECT: "no win rate against the base in a thumbs project, whose annotators judge one answer "
        "at a time: its review page compares held-out up-rates instead",
    }
    return [lines[code] for code in drift.missing]


def _measured_row(drift: VersionDrift, point: PlacedPoint) -> MeasuredRow:
    win, movement, comparison = drift.win_rate, drift.movement, drift.comparison
    assert win is not None and movement is not None and comparison is not None  # drift.measured
    method = method_name(drift.run.method)
    basis = (
        f"{_plural(win.votes, 'vote')} on {_plural(drift.battles, 'matched pair')} over "
        f"{_plural(win.prompts, 'held-out prompt')}"
    )
    kl_basis = f"over {_plural(movement.tokens, 'token')}" + (f", review job {movement.job_id}" if movement.job_id else "")
    kl = figures.significant(movement.kl_per_token)
    rate, interval = figures.percent(win.rate), figures.percent_interval(win.low, win.high)
    base = drift.base.name if drift.base is not None else "its base"
    tooltip = (
        f"{drift.version.name} ({method}) against {base}: win rate {rate} (95% interval {interval}), {basis}; "
        f"KL(tuned \u2016 base) {kl} per token {kl_basis}; measured on {comparison.label}."
    )
    if drift.contaminated:
        tooltip += " Trained on held-out votes: its win rate is contaminated."
    return MeasuredRow(
        drift=drift, method=method, point=point, kl=kl, kl_basis=kl_basis, win_rate=rate, interval=interval, basis=basis,
        measured_on=comparison.label, tooltip=tooltip,
    )


def drift_chart(drift: QualityAgainstDrift) -> DriftChart:
    """The chart, its table and its to-do list for ``quality_against_drift``'s result."""
    measured = drift.measured
    layout = None
    if measured:
        inputs = [
            PlotInput(
                key=str(v.version.pk), name=v.version.name, method=method_name(v.run.method), kl=float(v.kl_per_token or 0.0),
                rate=v.win_rate.rate, low=v.win_rate.low, high=v.win_rate.high,
            )
            for v in measured
            if v.win_rate is not None
        ]
        layout = chart_layout(inputs)
    return DriftChart(
        layout=layout,
        measured=[_measured_row(v, p) for v, p in zip(measured, layout.points if layout else [], strict=True)],
        not_measured=[NotMeasuredRow(drift=v, method=method_name(v.run.method), to_do=_to_do(v)) for v in drift.not_measured],
        has_reward_model=drift.reward_model is not None,
    )
