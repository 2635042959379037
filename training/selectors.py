"""Reads for tuning runs: lists, metric series for charts, the headline numbers, the verdict, and the dataset block.

Everything a run page says about how a run went is decided here, from ``TuningRun.outcome`` (filled by the
trainer when a run ends) or, while it runs, from its ``RunMetric`` rows; the templates only lay it out.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from statistics import mean
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.db.models.fields.json import KeyTransform

from labeling.agreement import wilson_interval
from labeling.models import Completion, PairTask, Project, RateTask, TaskStatus
from training.data_needs import ROWS_TO_TELL, ready_rows_to_tell
from training.exports import version_export_zip_path
from training.models import BaseModel, GenerationJob, ModelVersion, RunMetric, TuningRun, VersionExport, Worker
from training.templatetags.numbers import format_number, format_setting, format_share, setting_rows
from training.trainer.config import RL_METHODS

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


# ---------------------------------------------------------------- lists and series


def runs_for_project(*, project: Project) -> QuerySet[TuningRun]:
    return TuningRun.objects.filter(project=project).select_related("base_model", "model_version")


def runs_table(*, project: Project, now) -> list[TuningRun]:  # noqa: ANN001
    """The project's runs with ``duration``, ``headline`` (validation first) and ``verdict`` set on each."""
    runs = list(runs_for_project(project=project))
    series = _series_by_run(runs, keys=_TABLE_KEYS)
    for run in runs:
        run.duration = run.duration_seconds(now)
        run.headline = run_headline(run=run, series=series[run.pk])
        run.verdict = verdict_for_run(run=run, series=series[run.pk])
    return runs


@dataclass(frozen=True)
class TimeEstimate:
    """How long a run of ``steps`` steps would take, at the pace of finished runs of the same model and method."""

    seconds: float
    runs: int
    method: str

    @property
    def basis(self) -> str:
        return (f"at the pace of the last {self.runs} finished {self.method.upper()} run{'s' if self.runs != 1 else ''} "
                "of this base model, loading and evaluation included; another batch size or sequence length changes it")


def run_time_estimate(*, base_model_id: int | None, method: str, steps: int, recent: int = 5) -> TimeEstimate | None:
    """Median seconds per step of the ``recent`` last succeeded runs of this base model and method, times
    ``steps``; None before any such run has finished (a guess from nothing would be a number nobody can act on)."""
    if base_model_id is None or steps <= 0:
        return None
    finished = (
        TuningRun.objects.filter(base_model_id=base_model_id, method=method, status=TuningRun.Status.SUCCEEDED,
                                 step__gt=0, started_at__isnull=False, finished_at__isnull=False)
        .order_by("-finished_at")
        .values_list("started_at", "finished_at", "step")[:recent]
    )
    paces = sorted((finished_at - started_at).total_seconds() / step for started_at, finished_at, step in finished)
    if not paces:
        return None
    middle = len(paces) // 2
    pace = paces[middle] if len(paces) % 2 else (paces[middle - 1] + paces[middle]) / 2
    return TimeEstimate(seconds=pace * steps, runs=len(paces), method=method)


def run_metric_series(*, run: TuningRun) -> Series:
    """Per split, per metric key: [[step, value], ...], in step order, for the charts.

    Validation keys lose TRL's ``eval_`` prefix, so ``series["eval"]["loss"]`` sits beside ``series["train"]["loss"]``.
    """
    return _series_by_run([run])[run.pk]


def _series_by_run(runs: list[TuningRun], *, keys: tuple[str, ...] | None = None) -> dict[int, Series]:
    series: dict[int, Series] = {run.pk: {"train": {}, "eval": {}} for run in runs}
    metrics = RunMetric.objects.filter(run__in=runs).order_by("run_id", "step", "id")
    if keys is None:
        rows: Iterable[tuple[int, str, int, dict[str, Any]]] = metrics.values_list("run_id", "split", "step", "values")
    else:
        wanted = keys + tuple(f"eval_{key}" for key in keys)
        fields = {f"metric_{n}": KeyTransform(key, "values") for n, key in enumerate(wanted)}
        rows = (
            (run_id, split, step, {key: value for key, value in zip(wanted, values, strict=True) if value is not None})
            for run_id, split, step, *values in metrics.annotate(**fields).values_list("run_id", "split", "step", *fields)
        )
    for run_id, split, step, values in rows:
        for key, value in values.items():
            name = key.removeprefix("eval_") if split == "eval" else key
            series[run_id].setdefault(split, {}).setdefault(name, []).append([step, value])
    return series


def run_latest_metrics(*, run: TuningRun) -> dict[str, float]:
    """The last logged value of each training metric (train split only)."""
    latest: dict[str, float] = {}
    for values in RunMetric.objects.filter(run=run, split="train").order_by("step").values_list("values", flat=True):
        latest.update(values)
    return latest


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
        if isinstance(values.get(key), int | float) and not isinstance(values.get(key), bool)
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
    return every if isinstance(every, int) and not isinstance(every, bool) and every > 0 else None


# ---------------------------------------------------------------- verdict


@dataclass(frozen=True)
class Verdict:
    """How a run went, in one sentence, and what to try next.

    ``kind`` is one of "under_fitted", "over_fitted", "displacement", "ok"; ``also`` holds further findings
    (a likelihood-displacement warning behind another verdict, a small validation set).
    """

    kind: str
    message: str
    advice: str
    also: tuple[str, ...] = ()

    @property
    def title(self) -> str:
        return VERDICT_TITLES[self.kind]


VERDICT_TITLES = {
    "under_fitted": "Under-fitted",
    "over_fitted": "Over-fitted",
    "displacement": "Likelihood displacement",
    "too_few": "Too few to tell",
    "ok": "Learning",
    "hacking": "Reward hacking suspected",
}

REWARD_NEXT = (
    "Next: it scores every version's held-out outputs (their reward spread is on each review page), and the project "
    "can serve annotators first the pairs it is least sure about."
)
NEAR_CHANCE_ACCURACY = 0.6
TINY_MARGIN = 0.1
OVERFIT_ACCURACY_GAP = 0.25
OVERFIT_LOSS_RISE = 0.10
OVERFIT_LOSS_RISE_FLOOR = 0.02
RECENT_TRAIN_BATCHES = 5


def _number(values: Mapping[str, Any], key: str) -> float | None:
    value = values.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def run_verdict(
    *,
    method: str,
    outcome: Mapping[str, Any] | None,
    series: Series,
    validation_rows: int | None = None,
    still_training: bool = False,
    validation_fraction: float | None = None,
) -> Verdict | None:
    """Under-fitted, over-fitted, likelihood displacement, or ok; None without validation data (and no displacement).

    Pure: reads ``outcome`` (the trainer's contract; any key may be missing) and ``series`` (as
    ``run_metric_series`` returns). Validation numbers are ``outcome["validation"]``, else the latest evaluation.
    Checked in this order, the first that holds wins; a displacement warning behind it goes in ``also``:

    1. Over-fitted, when either
       - the training batches' reward accuracy (mean of the last 5 logged batches, else ``final_train``) is at
         least 0.25 above validation accuracy (DPO). A 4-pair batch moves in steps of 0.25, which is why one batch
         is not enough and five (about 20 pairs) are averaged; with 20 validation pairs each side's standard error
         is about 0.1, so a 0.25 gap is well past what noise alone gives; or
       - validation loss (3 or more evaluations, always the same rows, so they compare) ends more than 10% above
         its minimum, and at least 0.02 above it, so a loss near zero does not trip on rounding.
       It comes first because training well and validating badly is over-fitting even when validation is near
       chance: more steps would make it worse, not better.
    2. Under-fitted, when validation is near chance: DPO accuracy ≤ 0.6 or |margin| < 0.1; KTO ranking
       accuracy ≤ 0.6 (|margin| < 0.1 when ranking accuracy is missing). With 20 validation pairs a coin flip
       scores 0.5 ± 0.11, so 0.6 is within one standard error of guessing; a margin of 0.1 means the implied
       preference probability σ(0.1) ≈ 0.52, barely better than even.
    3. Likelihood displacement (see ``likelihood_displacement``).
    4. Ok.

    Before all of them: with validation figures on fewer than ``ROWS_TO_TELL`` rows (24, see
    ``training.data_needs``), "too few to tell", with the figure's interval and how much more data gives a verdict.
    """
    outcome = outcome or {}
    method = method if method in VALIDATION_FIGURES else "dpo"
    validation: Mapping[str, Any] = _outcome_metrics(outcome, "validation") or _last_point(series, "eval")[1]
    displacement = _displacement(series)
    displacement_note = _displacement_text(displacement) if displacement else ""
    rows = outcome.get("validation_rows", validation_rows)
    noun = _noun(method, rows)
    also: list[str] = []
    if not any(_number(validation, key) is not None for key, _ in VALIDATION_FIGURES[method]):
        if displacement:
            return Verdict("displacement", f"{displacement_note}.", _DISPLACEMENT_ADVICE, tuple(also))
        return None
    if isinstance(rows, int) and 0 < rows < ROWS_TO_TELL:
        return _too_few_verdict(method, validation, rows, noun, validation_fraction, displacement_note)
    kept = outcome.get("kept_step")

    def sentence(text: str) -> str:
        return f"So far, {text[0].lower()}{text[1:]}" if still_training else text

    # The saved adapter is the kept checkpoint: judge it on the steps up to it. Memorising that came later (the
    # training batches right every time in a second pass) is said beside the verdict, not as it.
    kept_before_end = isinstance(kept, int) and kept < _last_train_step(series)
    over = _over_fitted(method, validation, outcome, series, up_to=kept if kept_before_end else None)
    if not over and kept_before_end and (later := _over_fitted(method, validation, outcome, series)):
        also.append(
            f"After step {kept} it went on to learn the training {noun} by heart ({later[0].lower()}{later[1:]}); "
            f"the saved adapter is the step-{kept} checkpoint, from before that."
        )
    if over:
        saved = (
            "A reward model keeps its last step, so its validation pairs stay an unbiased test. "
            if method == "reward"
            else f"The saved adapter is the kept checkpoint (step {kept}), from before validation got worse. "
            if kept is not None
            else "Keep the best-validation checkpoint rather than the last. "
        )
        return Verdict(
            "over_fitted",
            sentence(f"{over}: the model is learning the training {noun} rather than the preference behind them."),
            f"{saved}Next time train fewer epochs or at a lower learning rate, and label more data.",
            tuple(also + ([displacement_note] if displacement_note else [])),
        )
    under = _under_fitted(method, validation)
    if under:
        return Verdict(
            "under_fitted",
            sentence(f"{under}, about what a coin flip would do: the adapter has not learned the preference."),
            "Train more epochs, raise the learning rate (2–5× is a reasonable next try), or label more data.",
            tuple(also + ([displacement_note] if displacement_note else [])),
        )
    if displacement:
        return Verdict("displacement", sentence(f"{displacement_note}."), _DISPLACEMENT_ADVICE, tuple(also))
    ok = _ok_sentence(method, validation, noun)
    if also and kept_before_end:
        ok = ok.replace("with no sign of over-fitting.", f"with no sign of over-fitting up to step {kept}, the one kept.")
    return Verdict(
        "ok",
        sentence(ok),
        REWARD_NEXT if method == "reward"
        else "Next: review base and tuned outputs side by side, then send them to annotators as blind battles.",
        tuple(also),
    )


def _too_few_verdict(
    method: str, validation: Mapping[str, Any], rows: int, noun: str, validation_fraction: float | None,
    displacement_note: str,
) -> Verdict:
    """Below ``ROWS_TO_TELL`` validation rows no figure can separate learning from chance, so no verdict is given:
    over- and under-fitted would flip from one evaluation to the next on one row more or less right."""
    key, _ = VALIDATION_FIGURES[method][0]
    accuracy = _number(validation, key)
    if accuracy is not None:
        low, high = wilson_interval(round(accuracy * rows), rows)
        measured = (
            f"{rows} validation {noun} put accuracy at {format_share(accuracy)}, but its 95% interval runs from "
            f"{format_share(low)} to {format_share(high)}"
        )
    else:
        measured = f"Only {rows} validation {noun}"
    if validation_fraction:
        needed = (
            f"about {ready_rows_to_tell(validation_fraction)} {noun} in all at this run's validation "
            f"share of {format_share(validation_fraction)}. Label more, then launch again."
        )
    else:
        needed = "label more, then launch again with a validation share that holds that many."
    return Verdict(
        "too_few",
        f"{measured}: too few to tell learning from a coin flip, so no verdict is given.",
        f"A verdict needs at least {ROWS_TO_TELL} validation {noun}: {needed} The held-out review still shows whether "
        "the answers changed.",
        (displacement_note,) if displacement_note else (),
    )


def verdict_for_run(*, run: TuningRun, series: Series) -> Verdict | None:
    """The verdict of a run that learns from rows; None for online RL, whose verdict comes from its watch
    (training.rl_selectors.rl_verdict, on the run's page)."""
    if run.method in RL_METHODS:
        return None
    fraction = run.settings.get("validation_fraction") if isinstance(run.settings, dict) else None
    return run_verdict(
        method=run.method,
        outcome=run.outcome if isinstance(run.outcome, dict) else {},
        series=series,
        validation_rows=run.validation_rows,
        still_training=run.is_active,
        validation_fraction=fraction if isinstance(fraction, int | float) and not isinstance(fraction, bool) else None,
    )


def _last_train_step(series: Series) -> int:
    return max((step for points in series.get("train", {}).values() for step, _ in points), default=0)


def _recent_train_accuracy(outcome: Mapping[str, Any], series: Series, up_to: int | None = None) -> float | None:
    points = [(step, value) for step, value in series.get("train", {}).get("rewards/accuracies", [])
              if up_to is None or step <= up_to]
    if points:
        return mean(value for _, value in points[-RECENT_TRAIN_BATCHES:])
    return _number(_outcome_metrics(outcome, "final_train"), "rewards/accuracies")


def _over_fitted(
    method: str, validation: Mapping[str, Any], outcome: Mapping[str, Any], series: Series, up_to: int | None = None
) -> str:
    """Why the model over-fits, judged on the steps up to ``up_to`` (all of them when None); empty when it does not."""
    accuracy = _number(validation, "rewards/accuracies")
    train_accuracy = _recent_train_accuracy(outcome, series, up_to) if method == "dpo" else None
    if accuracy is not None and train_accuracy is not None and train_accuracy - accuracy >= OVERFIT_ACCURACY_GAP:
        return (
            f"The training batches are right {format_share(train_accuracy)} of the time but the validation "
            f"pairs only {format_share(accuracy)}"
        )
    losses = [(step, value) for step, value in series.get("eval", {}).get("loss", []) if up_to is None or step <= up_to]
    if len(losses) >= 3:
        best_at = min(range(len(losses)), key=lambda i: losses[i][1])
        (best_step, best), (last_step, last) = losses[best_at], losses[-1]
        if best_at < len(losses) - 1 and last > best * (1 + OVERFIT_LOSS_RISE) and last - best >= OVERFIT_LOSS_RISE_FLOOR:
            return (
                f"Validation loss rose from its best, {format_number(best)} at step {best_step}, "
                f"to {format_number(last)} at step {last_step}"
            )
    return ""


def _under_fitted(method: str, validation: Mapping[str, Any]) -> str:
    margin = _number(validation, "rewards/margins")
    if method == "reward":
        accuracy = _number(validation, "accuracy")
        if accuracy is not None and accuracy <= NEAR_CHANCE_ACCURACY:
            return f"The reward model scores the chosen answer higher on only {format_share(accuracy)} of validation pairs"
        return ""
    if method == "dpo":
        accuracy = _number(validation, "rewards/accuracies")
        if accuracy is not None and accuracy <= NEAR_CHANCE_ACCURACY:
            return f"On validation pairs the tuned model prefers the chosen answer only {format_share(accuracy)} of the time"
    else:
        ranking = _number(validation, "ranking_accuracy")
        if ranking is not None and ranking <= NEAR_CHANCE_ACCURACY:
            return f"The tuned model ranks only {format_share(ranking)} of held-out (thumbs-up, thumbs-down) pairs correctly"
        if ranking is not None:
            return ""
    if margin is not None and abs(margin) < TINY_MARGIN:
        return f"The validation reward margin is only {format_number(margin)}, so chosen and rejected barely differ"
    return ""


def _ok_sentence(method: str, validation: Mapping[str, Any], noun: str) -> str:
    if method == "dpo":
        parts = []
        if (accuracy := _number(validation, "rewards/accuracies")) is not None:
            parts.append(f"prefers the chosen answer on {format_share(accuracy)} of validation {noun}")
        if (margin := _number(validation, "rewards/margins")) is not None:
            parts.append(f"{'with' if parts else 'separates validation ' + noun + ' with'} a reward margin of {format_number(margin)}")
        if parts:
            return f"The tuned model {' '.join(parts)}, with no sign of over-fitting."
    elif method == "reward" and (accuracy := _number(validation, "accuracy")) is not None:
        return f"The reward model scores the chosen answer higher on {format_share(accuracy)} of validation {noun}, with no sign of over-fitting."
    elif (ranking := _number(validation, "ranking_accuracy")) is not None:
        return f"The tuned model ranks {format_share(ranking)} of held-out (thumbs-up, thumbs-down) pairs correctly, with no sign of over-fitting."
    return f"Validation loss is {format_number(_number(validation, 'loss'))}, with no sign of over-fitting."


# ---------------------------------------------------------------- likelihood displacement


@dataclass(frozen=True)
class _Displacement:
    split: str
    chosen_drop: float
    margin_gain: float


_DISPLACEMENT_ADVICE = "Try a lower learning rate, fewer steps, a larger beta, or IPO."


def _displacement(series: Mapping[str, Any], tolerance: float = 0.05) -> _Displacement | None:
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
        return _Displacement(split, chosen_drop, margin_gain)
    return None


def _displacement_text(found: _Displacement) -> str:
    where = "on the validation split" if found.split == "eval" else "over the training batches"
    return (
        f"Likelihood displacement {where}: the chosen answers' log-probability fell by {found.chosen_drop:.2f} while the "
        f"reward margin rose by {found.margin_gain:.2f}. The model is separating the pairs by making both less likely"
    )


def likelihood_displacement(series: dict[str, Any], *, tolerance: float = 0.05) -> str | None:
    """A warning when the chosen answers' log-probability falls while the reward margin rises.

    DPO can widen the margin by pushing both answers down ("likelihood displacement"): the model then
    grows less likely to say the preferred answer too. The validation split is used when it has two or
    more points (the same examples each time, so the numbers compare); otherwise the training batches,
    averaged over the first and last quarter of the run so one long batch does not raise the alarm.
    """
    found = _displacement(series, tolerance)
    if found is None:
        return None
    return f"{_displacement_text(found)}; consider a lower learning rate, fewer steps, a larger beta, or IPO."


# ---------------------------------------------------------------- charts


@dataclass(frozen=True)
class Chart:
    title: str
    keys: tuple[str, ...]
    splits: tuple[str, ...] = ("train", "eval")
    note: str = ""
    share: bool = False  # accuracies: drawn on a fixed 0–1 axis, so 0.52 does not look like progress


CHARTS = (
    Chart(
        "Validation accuracy",
        ("rewards/accuracies", "ranking_accuracy"),
        ("eval",),
        "Share of held-out pairs the tuned model orders correctly; 0.5 is a coin flip.",
        share=True,
    ),
    Chart("Loss", ("loss",)),
    Chart(
        "Reward accuracy: training batches and validation",
        ("rewards/accuracies",),
        note="A training batch is a few pairs: noisy.",
        share=True,
    ),
    Chart("Rewards (chosen, rejected, margins)", ("rewards/chosen", "rewards/rejected", "rewards/margins")),
    Chart("Log-probabilities (chosen, rejected)", ("logps/chosen", "logps/rejected")),
    Chart("KL to the base model", ("kl",)),
    Chart("NLL of the chosen answers (CPO, ORPO)", ("nll_loss",), note="Lower: the chosen answers are more likely."),
    Chart("Log odds ratio (ORPO)", ("log_odds_ratio", "log_odds_chosen")),
    Chart(
        "Reward-model score: the mean (and spread) of each step's answers, and on the validation prompts",
        ("reward", "reward_std"),
        note="Rising reward alone is not progress: read it beside length and degeneration below.",
    ),
    Chart("Answer length in tokens (training answers)", ("completions/mean_length",), splits=("train",)),
    Chart("Validation answers: words per answer", ("mean_words",), splits=("eval",),
          note="Ballooning length while the reward rises is the commonest reward hack."),
    Chart("Share of answers cut off at the length limit", ("completions/clipped_ratio", "cut_off_share"), share=True),
    Chart("Degenerate and repeating validation answers", ("degenerate_share", "repetition"), splits=("eval",), share=True),
    Chart(
        "Reward model: pair accuracy, training batches and validation", ("accuracy",), share=True,
        note="A training batch is a few pairs: noisy.",
    ),
    Chart(
        "Reward model scores (lowest, mean, highest) and the chosen-minus-rejected margin",
        ("min_reward", "mean_reward", "max_reward", "margin"),
    ),
)

# What each method's trainer logs (TRL 1.x, plus the trainer's own ranking accuracy for KTO), so a running
# run only keeps a hidden place for charts that can fill.
METHOD_KEYS = {
    "dpo": frozenset({"loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
                      "logps/chosen", "logps/rejected"}),
    "kto": frozenset({"loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen",
                      "logps/rejected", "kl", "ranking_accuracy"}),
}
# TRL's CPO trainer (SimPO, CPO) and ORPO trainer log the pair metrics too, plus their NLL term.
METHOD_KEYS["simpo"] = METHOD_KEYS["cpo"] = METHOD_KEYS["dpo"] | {"nll_loss"}
METHOD_KEYS["orpo"] = METHOD_KEYS["dpo"] | {"nll_loss", "log_odds_ratio", "log_odds_chosen"}
METHOD_KEYS["reward"] = frozenset({"loss", "accuracy", "margin", "min_reward", "mean_reward", "max_reward"})
# TRL's GRPO and RLOO trainers, plus the reward-hacking watch's evaluations (training.trainer.rl_watch).
METHOD_KEYS["grpo"] = METHOD_KEYS["rloo"] = frozenset({
    "reward", "reward_std", "kl", "completions/mean_length", "completions/clipped_ratio", "mean_words",
    "degenerate_share", "repetition", "cut_off_share",
})


@dataclass(frozen=True)
class ChartView:
    chart: Chart
    has_data: bool

    @property
    def keys(self) -> str:
        return ",".join(self.chart.keys)

    @property
    def splits(self) -> str:
        return ",".join(self.chart.splits)


def run_charts(*, run: TuningRun, series: Series) -> list[ChartView]:
    """The charts worth drawing: those with data in one of their splits.

    While a run is queued or running, a chart that its method will fill gets a hidden place too (run_charts.js
    shows it when the first point arrives); once the run has ended, a chart without data is left out.
    """
    views = []
    for chart in CHARTS:
        has_data = any(series.get(split, {}).get(key) for split in chart.splits for key in chart.keys)
        expected = (
            run.is_active
            and bool(METHOD_KEYS.get(run.method, frozenset()) & set(chart.keys))
            and (run.validation_rows > 0 or chart.splits != ("eval",))
        )
        if has_data or expected:
            views.append(ChartView(chart, has_data))
    return views


# ---------------------------------------------------------------- settings and the dataset block


def run_settings_rows(*, run: TuningRun) -> list[tuple[str, str]]:
    """The run's settings as (label, text) rows, in the order TrainSettings declares them."""
    from training.trainer.config import TrainSettings  # the Django-free core; imported here to keep module import light

    order = [field.name for field in dataclasses.fields(TrainSettings)]
    settings = dict(run.settings) if isinstance(run.settings, dict) else {}
    # A method's own knobs only on its runs: a DPO run has no SimPO margin to read.
    for key, methods in _METHOD_ONLY_SETTINGS.items():
        if run.method not in methods:
            settings.pop(key, None)
    if settings.get("ld_alpha") is None:
        settings.pop("ld_alpha", None)
    return setting_rows(settings, order)


_METHOD_ONLY_SETTINGS = {
    "simpo_gamma": ("simpo",),
    "cpo_alpha": ("cpo",),
    "ld_alpha": ("dpo",),
    "precompute_ref_log_probs": ("dpo", "kto"),
    "desirable_weight": ("kto",),
    "undesirable_weight": ("kto",),
}




@dataclass(frozen=True)
class DatasetUse:
    used: str
    left_out: tuple[str, ...]
    reached: str = ""  # pairs: how many decided judgements became rows


# ExportSummary counts that mean "left out", in the order people read them: (key, singular, plural).
_LEFT_OUT = (
    ("ties", "tie", "ties"),
    ("both_bad", "both-bad", "both-bad"),
    ("disagreements", "disagreement", "disagreements"),
    ("conflicting", "answer with both labels", "answers with both labels"),
    ("identical", "pair of identical answers", "pairs of identical answers"),
    ("heldout", "task on held-out prompts (not opted in)", "tasks on held-out prompts (not opted in)"),
    ("low_agreement", "pair whose annotators disagreed (dropped)", "pairs whose annotators disagreed (dropped)"),
    ("cut_off_chosen", "pair whose chosen answer was cut off at the token limit",
     "pairs whose chosen answer was cut off at the token limit"),
    ("incomplete", "unfinished task", "unfinished tasks"),
)
_USED_KEYS = frozenset({"rows", "considered", "edited"})


def dataset_use(*, summary: Mapping[str, Any], method: str, row_count: int) -> DatasetUse:
    """The export summary split into what was used and what was left out (non-zero counts only).

    For KTO a both-bad pair does give rows (two thumbs-down), so it is counted with what was used.
    Keys this code does not know yet are listed under "left out" with their name made readable.
    """
    rows = summary.get("rows", row_count)
    used = f"{format_number(rows)} {'row' if rows == 1 else 'rows'}"
    considered = summary.get("considered")
    if considered:
        used += f" from {format_number(considered)} complete {'task' if considered == 1 else 'tasks'}"
    extras = []
    if edited := summary.get("edited"):
        extras.append(f"{format_number(edited)} {'answer' if edited == 1 else 'answers'} edited by annotators")
    both_bad = summary.get("both_bad")
    if method == "kto" and both_bad:
        extras.append(f"{format_number(both_bad)} both-bad {'pair' if both_bad == 1 else 'pairs'} as two thumbs-down")
    if extras:
        used += f" ({'; '.join(extras)})"
    left_out = []
    skip = _USED_KEYS | ({"both_bad"} if method == "kto" else set())
    for key, singular, plural in _LEFT_OUT:
        count = summary.get(key)
        if key not in skip and count:
            left_out.append(f"{format_number(count)} {singular if count == 1 else plural}")
    known = skip | {key for key, _, _ in _LEFT_OUT}
    for key, count in sorted(summary.items()):
        if key not in known and count:
            left_out.append(f"{format_setting(count)} {str(key).replace('_', ' ')}")
    return DatasetUse(used=used, left_out=tuple(left_out), reached=_decided_reached(summary) if method not in ("kto", "sft") else "")


def _decided_reached(summary: Mapping[str, Any]) -> str:
    """'96 of 101 decided judgements (95%) reached training': a pair won by a side, or given a written answer on a
    tie or both-bad, is decided; it gives no row when its answers are identical, its annotators split below the
    run's minimum agreement, or its chosen answer was cut off."""
    considered = summary.get("considered") or 0
    decided = considered - sum(summary.get(key) or 0 for key in ("ties", "both_bad", "disagreements"))
    if decided <= 0:
        return ""
    reached = decided - sum(summary.get(key) or 0 for key in ("identical", "low_agreement", "cut_off_chosen"))
    return (f"{format_number(reached)} of {format_number(decided)} decided "
            f"{'judgement' if decided == 1 else 'judgements'} ({format_share(reached / decided)}) reached training")


@dataclass(frozen=True)
class LineageRow:
    label: str
    text: str
    warn: bool = False


def alpha_reading(alpha: float | None) -> str:
    """Krippendorff's own reading of α: ≥ 0.8 reliable, ≥ 0.667 tentative, below that unreliable."""
    if alpha is None:
        return "not measured (too few tasks with two or more votes)"
    if alpha >= 0.8:
        return f"{format_number(alpha, 2)}: annotators agree well"
    if alpha >= 0.667:
        return f"{format_number(alpha, 2)}: moderate agreement, good enough for tentative conclusions"
    if alpha > 0:
        return f"{format_number(alpha, 2)}: low agreement, annotators often disagree"
    return f"{format_number(alpha, 2)}: no better than chance"


_LINEAGE_LABELS = {
    "project": "project",
    "started_from": "started from",
    "guideline_version": "guideline version now",
    "annotators": "annotators (votes)",
    "guideline_versions_voted": "guideline versions voted under",
    "agreement_alpha_pairs": "agreement α, pairs",
    "agreement_alpha_ratings": "agreement α, thumbs",
    "includes_review_votes": "includes votes on review pairs",
    "review_tasks_used": "review tasks used",
    "keeps_cut_off_chosen": "keeps pairs whose chosen answer was cut off",
    "includes_heldout": "includes votes on held-out prompts",
}


def lineage_rows(*, lineage: Mapping[str, Any], includes_heldout: bool) -> list[LineageRow]:
    """The snapshot's lineage as readable rows; votes on held-out prompts are flagged as a warning."""
    rank = {key: n for n, key in enumerate(_LINEAGE_LABELS)}
    alphas = [key for key in ("agreement_alpha_pairs", "agreement_alpha_ratings") if lineage.get(key) is not None]
    rows = []
    for key, value in sorted(lineage.items(), key=lambda item: (rank.get(item[0], len(rank)), str(item[0]))):
        label = _LINEAGE_LABELS.get(key, str(key).replace("_", " "))
        if key == "includes_heldout" or (key.startswith("agreement_alpha") and value is None and alphas):
            # A compare project has no thumbs agreement to report, and a rate project no pairs agreement.
            continue
        if key == "annotators" and isinstance(value, Mapping):
            ordered = sorted(value.items(), key=lambda item: (-item[1], item[0]))
            text = ", ".join(f"{name} {format_number(count)}" for name, count in ordered) or "none"
        elif key.startswith("agreement_alpha"):
            text = alpha_reading(value if isinstance(value, int | float) else None)
        else:
            text = format_setting(value, key)
        rows.append(LineageRow(label, text))
    heldout = includes_heldout or bool(lineage.get("includes_heldout"))
    rows.append(LineageRow(_LINEAGE_LABELS["includes_heldout"], "yes" if heldout else "no", warn=heldout))
    return rows


@dataclass(frozen=True)
class BaseModelRow:
    model: BaseModel
    memory: list[dict[str, Any]]  # per GPU count: GiB of base weights per GPU (see memory_estimates)


def base_models_table() -> list[BaseModelRow]:
    """Every registered base model with its facts and, where its size is known, weight memory per GPU."""
    from training.model_inspection import ModelShape, memory_estimates

    rows = []
    for model in BaseModel.objects.order_by("name"):
        memory: list[dict[str, Any]] = []
        if model.parameters:
            shape = ModelShape(
                linear_names=frozenset(model.linear_layers), max_positions=model.context_length,
                parameters=model.parameters, quantizable_parameters=model.quantizable_parameters or 0,
            )
            memory = memory_estimates(shape)
        rows.append(BaseModelRow(model=model, memory=memory))
    return rows


def workers_taking(gpus: int) -> list[Worker]:
    """Workers that have announced a queue for runs on ``gpus`` GPUs (``gpu`` for one, ``gpuN`` for N)."""
    from training.models import run_queue

    queue = run_queue(gpus)
    return [worker for worker in Worker.objects.all() if queue in worker.queues]


def training_device(gpus: int = 1) -> str:
    """Where a run on ``gpus`` GPUs will train, for the automatic settings: "cpu" when every worker that takes such
    runs announced no GPU, otherwise "cuda" (also before any worker has announced itself: the run waits for one,
    and a GPU is what a worker for it is expected to have)."""
    workers = workers_taking(gpus)
    return "cpu" if workers and not any(worker.gpus for worker in workers) else "cuda"


def workers_summary() -> str:
    """The workers that announced themselves, in words, for the launch form; empty when none has."""
    parts = []
    for worker in Worker.objects.all():
        largest = worker.max_run_gpus
        if not largest:
            continue
        sees = f"sees {worker.gpus} GPU{'s' if worker.gpus != 1 else ''}" if worker.gpus else "a CPU worker"
        parts.append(f"{worker.hostname} takes runs on up to {largest} GPU{'s' if largest != 1 else ''} ({sees})")
    return "; ".join(parts)


# ---------------------------------------------------------------- the loop, step by step (home page)


@dataclass(frozen=True)
class LoopStep:
    """One of the four steps of the loop for one project: what is done, and the page that does the next bit."""

    number: int
    title: str
    state: str  # "done", "next" (the step to do now) or "later"
    text: str
    action: str  # the button's words
    url_name: str
    url_arg: int  # the project's or the run's id, as url_name wants


@dataclass(frozen=True)
class LoopWalkthrough:
    project: Project
    steps: list[LoopStep]
    others: list[Project]


def _loop_focus(projects: list[Project]) -> Project | None:
    """The project a newcomer most likely means: the one with the newest run, else the one with most votes."""
    if not projects:
        return None
    newest = TuningRun.objects.filter(project__in=projects).order_by("-created_at").values_list("project_id", flat=True).first()
    if newest is not None:
        return next(p for p in projects if p.pk == newest)
    votes = dict(
        Project.objects.filter(pk__in=[p.pk for p in projects])
        .annotate(votes=Count("pair_tasks__votes", distinct=True) + Count("rate_tasks__ratings", distinct=True))
        .values_list("pk", "votes")
    )
    return max(projects, key=lambda p: (votes.get(p.pk, 0), -p.pk))


def loop_walkthrough(*, projects: Iterable[Project], chosen_id: int | None = None) -> LoopWalkthrough | None:
    """Label, tune, compare, label again, for one of ``projects`` (``chosen_id``, else ``_loop_focus``): each step
    with what is done so far and a link to the page that does the next part."""
    projects = list(projects)
    project = next((p for p in projects if p.pk == chosen_id), None) or _loop_focus(projects)
    if project is None:
        return None
    label_tasks = PairTask.objects.filter(project=project, purpose=PairTask.Purpose.LABEL)
    if project.mode == Project.Mode.RATE:
        label_tasks = RateTask.objects.filter(project=project, purpose=RateTask.Purpose.LABEL)
    complete = label_tasks.filter(status=TaskStatus.COMPLETE).count()
    total = label_tasks.count()
    runs = TuningRun.objects.filter(project=project).exclude(method="reward").order_by("-created_at")
    latest = runs.first()
    succeeded = runs.filter(status=TuningRun.Status.SUCCEEDED).first()
    review = (
        GenerationJob.objects.filter(run=succeeded, purpose=GenerationJob.Purpose.REVIEW).order_by("-id").first()
        if succeeded else None
    )
    battles_voted = PairTask.objects.filter(
        Q(completion_a__model_version=succeeded.model_version) | Q(completion_b__model_version=succeeded.model_version),
        project=project, purpose=PairTask.Purpose.REVIEW, status=TaskStatus.COMPLETE,
    ).count() if review and succeeded.model_version_id else 0
    tuned_candidates = Completion.objects.filter(
        prompt__project=project, prompt__split="train", model_version__isnull=False,
    ).exclude(model_version__adapter_path="").count()

    items = "pairs" if project.mode == Project.Mode.COMPARE else "answers"
    labelled = complete >= ROWS_TO_TELL
    label = LoopStep(
        1, "Label", "done" if labelled else "next",
        f"{complete} of {total} {items} judged." + ("" if labelled else f" A run needs about {ROWS_TO_TELL} to show whether it learned."),
        "Annotate", "labeling:annotate", project.pk,
    )
    if succeeded is not None:
        tune = LoopStep(2, "Tune", "done", f"{succeeded.name} succeeded.", "Open the run", "training:run_detail", succeeded.pk)
    elif latest is not None and latest.status in TuningRun.ACTIVE:
        tune = LoopStep(2, "Tune", "next", f"{latest.name} is {latest.get_status_display().lower()}.", "Watch it train",
                        "training:run_detail", latest.pk)
    else:
        tune = LoopStep(2, "Tune", "next" if labelled else "later",
                        "Launch a run with the form's defaults: it trains a LoRA adapter on the decided judgements.",
                        "Launch a run", "training:run_new", project.pk)
    if review is not None and review.status == GenerationJob.Status.SUCCEEDED:
        compare = LoopStep(3, "Compare", "done",
                           f"Base and tuned answers on held-out prompts, side by side; {battles_voted} blind battle(s) voted.",
                           "Open the review", "training:run_review", succeeded.pk)
    else:
        compare = LoopStep(3, "Compare", "next" if succeeded else "later",
                           "Generate base and tuned answers on held-out prompts, read them side by side, vote blind battles.",
                           "Review the run", "training:run_review", succeeded.pk if succeeded else 0)
    again = LoopStep(4, "Label again", "done" if tuned_candidates else "next" if compare.state == "done" else "later",
                     f"{tuned_candidates} candidate answers written by tuned versions." if tuned_candidates else
                     "Generate candidates with the tuned version on the train prompts: the next round of votes starts from it.",
                     "Generate candidates", "training:project_candidates", project.pk)
    steps = [label, tune, compare, again]
    # Only the first unfinished step is "next"; the rest wait for it.
    first_open = next((step.number for step in steps if step.state != "done"), None)
    steps = [dataclasses.replace(step, state="next" if step.number == first_open else step.state if step.state == "done" else "later")
             for step in steps]
    return LoopWalkthrough(project=project, steps=steps, others=[p for p in projects if p.pk != project.pk])


@dataclass(frozen=True)
class ExportState:
    """One kind of export of a version: whether its zip is ready (and its size), and its latest export job."""

    kind: str
    label: str
    zip_bytes: int | None
    latest: VersionExport | None

    @property
    def ready(self) -> bool:
        return self.zip_bytes is not None

    @property
    def active(self) -> bool:
        return not self.ready and self.latest is not None and self.latest.is_active


@dataclass(frozen=True)
class VersionExports:
    version: ModelVersion
    kinds: list[ExportState]

    @property
    def active(self) -> bool:
        """Whether an export is queued or running (the page keeps polling)."""
        return any(state.active for state in self.kinds)


def version_exports(*, version: ModelVersion) -> VersionExports:
    """Each export kind of ``version``, adapter first: a stat of its zip, and its latest export (one query)."""
    latest: dict[str, VersionExport] = {}
    for export in VersionExport.objects.filter(version=version).order_by("-id"):
        latest.setdefault(export.kind, export)
    kinds = []
    for kind, label in VersionExport.Kind.choices:
        zip_path = version_export_zip_path(version_id=version.pk, kind=kind)
        size = zip_path.stat().st_size if zip_path.is_file() else None
        kinds.append(ExportState(kind=kind, label=str(label), zip_bytes=size, latest=latest.get(kind)))
    return VersionExports(version=version, kinds=kinds)
