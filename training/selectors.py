"""Reads for tuning runs: lists, metric series for charts, and the likelihood-displacement check."""
from __future__ import annotations

from statistics import mean
from typing import Any

from django.db.models import QuerySet

from labeling.models import Project
from training.models import RunMetric, TuningRun

CHART_KEYS = (
    "loss",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "rewards/accuracies",
    "logps/chosen",
    "logps/rejected",
    "kl",
)


SUMMARY_KEYS = ("loss", "rewards/margins", "rewards/accuracies")


def runs_for_project(*, project: Project) -> QuerySet[TuningRun]:
    return TuningRun.objects.filter(project=project).select_related("base_model", "model_version")


def runs_table(*, project: Project, now) -> list[TuningRun]:  # noqa: ANN001
    """The project's runs with ``duration`` and ``summary_metrics`` (last logged loss, margin, accuracy) set."""
    runs = list(runs_for_project(project=project))
    latest: dict[int, dict[str, float]] = {run.pk: {} for run in runs}
    for run_id, values in (
        RunMetric.objects.filter(run__in=runs, split="train").order_by("run_id", "step").values_list("run_id", "values")
    ):
        latest[run_id].update({k: v for k, v in values.items() if k in SUMMARY_KEYS})
    for run in runs:
        run.duration = run.duration_seconds(now)
        run.summary_metrics = {key: latest[run.pk][key] for key in SUMMARY_KEYS if key in latest[run.pk]}
    return runs


def run_metric_series(*, run: TuningRun) -> dict[str, Any]:
    """Per split, per metric key: [[step, value], ...], in step order, for the charts."""
    series: dict[str, dict[str, list[list[float]]]] = {"train": {}, "eval": {}}
    for split, step, values in RunMetric.objects.filter(run=run).order_by("step").values_list("split", "step", "values"):
        for key, value in values.items():
            name = key.removeprefix("eval_") if split == "eval" else key
            series[split].setdefault(name, []).append([step, value])
    return series


def run_latest_metrics(*, run: TuningRun) -> dict[str, float]:
    latest: dict[str, float] = {}
    for values in RunMetric.objects.filter(run=run, split="train").order_by("step").values_list("values", flat=True):
        latest.update(values)
    return latest


def likelihood_displacement(series: dict[str, Any], *, tolerance: float = 0.05) -> str | None:
    """A warning when the chosen answers' log-probability falls while the reward margin rises.

    DPO can widen the margin by pushing both answers down ("likelihood displacement"): the model then
    grows less likely to say the preferred answer too. The validation split is used when it has two or
    more points (the same examples each time, so the numbers compare); otherwise the training batches,
    averaged over the first and last quarter of the run so one long batch does not raise the alarm.
    """
    for split, minimum in (("eval", 2), ("train", 8)):
        points = series.get(split, {})
        chosen = [v for _, v in points.get("logps/chosen", [])]
        margins = [v for _, v in points.get("rewards/margins", [])]
        if len(chosen) >= minimum and len(margins) >= minimum:
            break
    else:
        return None
    window = 1 if split == "eval" else max(2, len(chosen) // 4)
    chosen_drop = mean(chosen[:window]) - mean(chosen[-window:])
    margin_gain = mean(margins[-window:]) - mean(margins[:window])
    if chosen_drop > tolerance * max(1.0, abs(mean(chosen[:window]))) and margin_gain > 0:
        where = "on the validation split" if split == "eval" else "over the training batches"
        return (
            f"Likelihood displacement {where}: the chosen answers' log-probability fell by {chosen_drop:.2f} while the "
            f"reward margin rose by {margin_gain:.2f}. The model is separating the pairs by making both less likely; "
            "consider a lower learning rate, fewer steps, a larger beta, or IPO."
        )
    return None
