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


def runs_for_project(*, project: Project) -> QuerySet[TuningRun]:
    return TuningRun.objects.filter(project=project).select_related("base_model", "model_version", "snapshot")


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


def likelihood_displacement(series: dict[str, Any], *, window: int = 3, tolerance: float = 0.05) -> str | None:
    """A warning when the chosen answers' log-probability falls while the reward margin rises.

    DPO can widen the margin by pushing both answers down ("likelihood displacement"): the model then
    grows less likely to say the preferred answer too. Compares the mean of the first and last ``window``
    logged values; needs at least two windows of both series.
    """
    train = series.get("train", {})
    chosen = [v for _, v in train.get("logps/chosen", [])]
    margins = [v for _, v in train.get("rewards/margins", [])]
    if len(chosen) < 2 * window or len(margins) < 2 * window:
        return None
    chosen_drop = mean(chosen[:window]) - mean(chosen[-window:])
    margin_gain = mean(margins[-window:]) - mean(margins[:window])
    if chosen_drop > tolerance * max(1.0, abs(mean(chosen[:window]))) and margin_gain > 0:
        return (
            f"Likelihood displacement: the chosen answers' log-probability fell by {chosen_drop:.2f} while the reward "
            f"margin rose by {margin_gain:.2f}. The model is separating the pairs by making both less likely; "
            "consider a lower learning rate, fewer steps, a larger beta, or IPO."
        )
    return None
