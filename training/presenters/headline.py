"""A run's headline: the validation figures it leads with (the kept checkpoint's, else the latest evaluation's) and
its last training batch, with where they were measured."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from training.models import TuningRun
from training.templatetags.numbers import format_number, format_share
from training.trainer.config import RL_METHODS
from training.trainer.json_numbers import is_number, is_whole_number

Series = dict[str, dict[str, list[list[float]]]]  # split → metric key (no eval_ prefix) → [[step, value], ...]

# What a headline leads with, per method: (key without the eval_ prefix, label for people).
VALIDATION_FIGURES: dict[str, tuple[tuple[str, str], ...]] = {
    "dpo": (("rewards/accuracies", "implicit-reward accuracy"), ("rewards/margins", "reward margin"), ("loss", "loss")),
    "kto": (("ranking_accuracy", "ranks held-out thumbs correctly"), ("loss", "loss"), ("kl", "KL")),
    "reward": (("accuracy", "pairwise accuracy"), ("margin", "score margin"), ("loss", "loss")),
    "grpo": (("reward", "reward-model score"), ("mean_words", "words per answer"), ("degenerate_share", "degenerate answers")),
}
VALIDATION_FIGURES["rloo"] = VALIDATION_FIGURES["grpo"]
TRAIN_FIGURES: dict[str, tuple[tuple[str, str], ...]] = {
    "dpo": (("rewards/accuracies", "accuracy"), ("rewards/margins", "margin"), ("loss", "loss")),
    "kto": (("loss", "loss"), ("kl", "KL"), ("rewards/margins", "margin")),
    "reward": (("accuracy", "accuracy"), ("margin", "margin"), ("loss", "loss")),
    "grpo": (("reward", "mean reward"), ("kl", "KL"), ("completions/mean_length", "tokens per answer")),
}
TRAIN_FIGURES["rloo"] = TRAIN_FIGURES["grpo"]
SHARE_KEYS = frozenset({"rewards/accuracies", "ranking_accuracy", "accuracy", "degenerate_share", "cut_off_share",
                        "completions/clipped_ratio"})
METRIC_NAMES = {
    "rewards/accuracies": "reward accuracy",
    "rewards/margins": "reward margin",
    "ranking_accuracy": "ranking accuracy",
    "accuracy": "pairwise accuracy",
    "loss": "loss",
    "kl": "KL",
    "reward": "reward-model score",
}
# The keys the runs table needs (headline, verdict, displacement): read one by one so it never loads every
# metric of every run on each 5-second poll of the dashboard.
_TABLE_KEYS = ("rewards/accuracies", "rewards/margins", "ranking_accuracy", "loss", "kl", "logps/chosen")



def _last_point(series: Series, split: str) -> tuple[int | None, dict[str, float]]:
    """The latest step of ``split`` and every metric logged at it."""
    points = series.get(split, {})
    steps = [values[-1][0] for values in points.values() if values]
    if not steps:
        return None, {}
    step = max(steps)
    return int(step), {key: values[-1][1] for key, values in points.items() if values and values[-1][0] == step}


# ---------------------------------------------------------------- headline numbers


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    value: float

    @property
    def text(self) -> str:
        return format_share(self.value) if self.key in SHARE_KEYS else format_number(self.value)


@dataclass(frozen=True)
class Headline:
    """What a run page leads with: validation numbers and what they were measured on, then the training batch.

    ``measured_on`` completes "… measured on": "20 validation pairs at step 120, the kept checkpoint".
    ``no_validation`` says plainly why there are no validation numbers (empty when there are).
    """

    validation: tuple[Figure, ...]
    measured_on: str
    where: str
    train: tuple[Figure, ...]
    train_label: str
    no_validation: str


def _outcome_metrics(outcome: Mapping[str, Any], key: str) -> dict[str, Any]:
    """``outcome[key]`` as a dict of metrics without TRL's ``eval_`` prefix; {} when missing or malformed."""
    metrics = outcome.get(key)
    if not isinstance(metrics, Mapping):
        return {}
    return {str(name).removeprefix("eval_"): value for name, value in metrics.items()}


def _noun(method: str, count: int | None) -> str:
    if method in RL_METHODS:
        return "prompt" if count == 1 else "prompts"
    singular, plural = ("pair", "pairs") if method in ("dpo", "reward") else ("rated answer", "rated answers")
    return singular if count == 1 else plural


def _figures(values: Mapping[str, Any], wanted: tuple[tuple[str, str], ...]) -> tuple[Figure, ...]:
    return tuple(
        Figure(key, label, float(values[key]))
        for key, label in wanted
        if is_number(values.get(key))
    )


def _batch_size(settings: Mapping[str, Any]) -> int | None:
    per_device = settings.get("per_device_batch_size")
    if not isinstance(per_device, int) or per_device < 1:
        return None
    accumulation = settings.get("gradient_accumulation_steps")
    return per_device * (accumulation if isinstance(accumulation, int) and accumulation > 0 else 1)


def run_headline(*, run: TuningRun, series: Series) -> Headline:
    """The run's validation numbers (the kept checkpoint's, else the latest evaluation's), then its last training batch."""
    method = run.method if run.method in VALIDATION_FIGURES else "dpo"
    outcome = run.outcome if isinstance(run.outcome, dict) else {}
    rows = outcome.get("validation_rows", run.validation_rows) or 0
    noun = _noun(method, rows)
    validation: tuple[Figure, ...] = ()
    measured_on = where = ""
    if _outcome_metrics(outcome, "validation"):
        validation = _figures(_outcome_metrics(outcome, "validation"), VALIDATION_FIGURES[method])
        kept = outcome.get("kept_step")
        at = f"at step {kept}, the kept checkpoint" if kept is not None else "at the kept checkpoint"
        best = outcome.get("best_metric")
        picked = f" (the step with the best validation {METRIC_NAMES.get(best, best)})" if best else ""
        measured_on = f"{rows} validation {noun} {at}{picked}"
        where = f"{rows} {noun}" + (f", step {kept}" if kept is not None else "")
    else:
        step, values = _last_point(series, "eval")
        validation = _figures(values, VALIDATION_FIGURES[method])
        if validation:
            latest = "the latest evaluation; the run is still training" if run.is_active else "the last evaluation"
            measured_on = f"{rows} validation {noun} at step {step}, {latest}"
            where = f"{rows} {noun}, step {step}"
    train_values = _outcome_metrics(outcome, "final_train")
    train_step = outcome.get("steps")
    if not train_values:
        train_step, train_values = _last_point(series, "train")
    batch = _batch_size(run.settings if isinstance(run.settings, dict) else {})
    train_label = "Last training batch" + (f" ({batch} {_noun(method, batch)})" if batch else "")
    train_label += f", step {train_step}" if train_step is not None else ""
    return Headline(
        validation=validation,
        measured_on=measured_on,
        where=where,
        train=_figures(train_values, TRAIN_FIGURES[method]),
        train_label=train_label,
        no_validation="" if validation else _no_validation_reason(run, rows),
    )


def _no_validation_reason(run: TuningRun, rows: int) -> str:
    if not rows:
        return (
            "No validation split: every row went into training (validation fraction 0), so nothing was held out to "
            "measure on. The numbers below come from training batches only."
        )
    if run.status == TuningRun.Status.QUEUED:
        return "No validation numbers yet: the run has not started."
    if run.is_active:
        every = _evaluation_interval(run.settings if isinstance(run.settings, dict) else {})
        if every is None:
            return "No validation numbers yet: waiting for the first evaluation."
        first = f"at step {every}" if every < (run.total_steps or every + 1) else "at the end"
        return f"No validation numbers yet: the first evaluation comes {first}."
    return "No validation numbers: the run ended before its first evaluation."


def _evaluation_interval(settings: Mapping[str, Any]) -> int | None:
    """Steps between evaluations as launched: ``eval_steps``, None when automatic, else ``save_steps`` (older runs)."""
    if "eval_steps" in settings:
        every = settings["eval_steps"]
    else:
        every = settings.get("save_steps")
    return every if is_whole_number(every) and every > 0 else None


