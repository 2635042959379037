"""A run's verdict: under-fitted, over-fitted, likelihood displacement, too few to tell, or learning; in words
for the run page, from its outcome and metric series."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from statistics import mean
from typing import Any

from labeling.statistics import wilson_interval
from training.data_needs import ROWS_TO_TELL, ready_rows_to_tell
from training.models import TuningRun
from training.presenters.headline import (
    VALIDATION_FIGURES,
    Series,
    _last_point,
    _noun,
    _outcome_metrics,
)
from training.templatetags.numbers import format_number, format_share
from training.trainer.config import RL_METHODS
from training.trainer.json_numbers import is_number, number_or_none

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
    return number_or_none(values.get(key))


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
    if not any(_number(validation, key) is not None for key, _ in VALIDATION_FIGURES[method]):
        if displacement:
            return Verdict("displacement", f"{displacement_note}.", _DISPLACEMENT_ADVICE, ())
        return None
    if isinstance(rows, int) and 0 < rows < ROWS_TO_TELL:
        return _too_few_verdict(method, validation, rows, noun, validation_fraction, displacement_note)
    return _fit_verdict(
        method, validation, outcome, series, noun=noun, still_training=still_training,
        displacement_note=displacement_note,
    )


def _fit_verdict(
    method: str, validation: Mapping[str, Any], outcome: Mapping[str, Any], series: Series, *, noun: str,
    still_training: bool, displacement_note: str,
) -> Verdict:
    """Checks 1 to 4 of ``run_verdict`` (over-fitted, under-fitted, displacement, ok), for a run whose validation
    figures are on enough rows to tell; ``displacement_note`` is empty when there is no displacement."""
    kept = outcome.get("kept_step")
    # The saved adapter is the kept checkpoint: judge it on the steps up to it. Memorising that came later (the
    # training batches right every time in a second pass) is said beside the verdict, not as it.
    kept_before_end = isinstance(kept, int) and kept < _last_train_step(series)
    over = _over_fitted(method, validation, outcome, series, up_to=kept if kept_before_end else None)
    also: list[str] = []
    if not over and kept_before_end and (later := _over_fitted(method, validation, outcome, series)):
        also.append(
            f"After step {kept} it went on to learn the training {noun} by heart ({later[0].lower()}{later[1:]}); "
            f"the saved adapter is the step-{kept} checkpoint, from before that."
        )
    with_displacement = tuple(also + ([displacement_note] if displacement_note else []))
    if over:
        return _over_fitted_verdict(method, over, kept, noun, still_training, with_displacement)
    under = _under_fitted(method, validation)
    if under:
        return Verdict(
            "under_fitted",
            _so_far(f"{under}, about what a coin flip would do: the adapter has not learned the preference.", still_training),
            "Train more epochs, raise the learning rate (2–5× is a reasonable next try), or label more data.",
            with_displacement,
        )
    if displacement_note:
        return Verdict("displacement", _so_far(f"{displacement_note}.", still_training), _DISPLACEMENT_ADVICE, tuple(also))
    ok = _ok_sentence(method, validation, noun)
    if also and kept_before_end:
        ok = ok.replace("with no sign of over-fitting.", f"with no sign of over-fitting up to step {kept}, the one kept.")
    return Verdict(
        "ok",
        _so_far(ok, still_training),
        REWARD_NEXT if method == "reward"
        else "Next: review base and tuned outputs side by side, then send them to annotators as blind battles.",
        tuple(also),
    )


def _over_fitted_verdict(
    method: str, over: str, kept: Any, noun: str, still_training: bool, also: tuple[str, ...]
) -> Verdict:
    saved = (
        "A reward model keeps its last step, so its validation pairs stay an unbiased test. "
        if method == "reward"
        else f"The saved adapter is the kept checkpoint (step {kept}), from before validation got worse. "
        if kept is not None
        else "Keep the best-validation checkpoint rather than the last. "
    )
    return Verdict(
        "over_fitted",
        _so_far(f"{over}: the model is learning the training {noun} rather than the preference behind them.", still_training),
        f"{saved}Next time train fewer epochs or at a lower learning rate, and label more data.",
        also,
    )


def _so_far(text: str, still_training: bool) -> str:
    """A verdict sentence, as it stands so far while the run is still training."""
    return f"So far, {text[0].lower()}{text[1:]}" if still_training else text


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
        validation_fraction=fraction if is_number(fraction) else None,
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


