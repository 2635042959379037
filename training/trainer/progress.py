"""How a run reports while it trains, and how it scores each evaluation to pick the checkpoint it keeps.

`_ProgressCallback` forwards the trainer's logs as events (`events.ProgressEvent`), scores validation
(KTO's ranking through `_KtoValidation`) and turns should_stop/should_pause into a clean stop. Preference tuning
(`core`) and online RL (`online`) both train with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from transformers import TrainerCallback

from .config import TrainSettings
from .events import ProgressEvent
from .json_numbers import is_number
from .settings_choices import LOSS_SELECTED_METHODS, REWARD_METHOD

# The validation score that picks the kept checkpoint: the share of validation examples ranked correctly. For
# DPO a tie keeps the earlier checkpoint (see dpo_selection_score); for KTO the larger mean reward gap between
# thumbs-up and thumbs-down answers breaks it; methods without an implicit reward use the validation loss.
SELECTION_KEY = "eval_selection_score"
_TIE_BREAK_WEIGHT = 0.01
NEVER_KEPT = -1e9  # the selection score of a checkpoint no optimizer step has changed yet


def dpo_selection_score(accuracy: float, loss: float | None) -> float:
    """Validation implicit-reward accuracy alone, so equal accuracies tie and the earlier checkpoint is kept
    (transformers replaces the best only with a strictly better score).

    Earlier wins ties because it has moved less: on the alignment bench (length rule, 200 votes, 13 validation
    pairs) steps 11, 22 and 66 all scored 0.875. Step 66, kept by the lower validation loss, won 68.3% of
    held-out comparisons with 19 of 90 answers looping; step 11, the earliest, won 69.4% with 12 looping and
    a quarter of the KL; step 22 (kept by a margin tie-break once) won 82.8%. On so small a split no tie-break
    picks the best reliably, and the least-moved checkpoint loops least. `loss` stays in the signature for
    callers that log it.
    """
    del loss
    return accuracy


class _ProgressCallback(TrainerCallback):
    """Forwards trainer logs as ProgressEvents, scores each evaluation for picking the best checkpoint, makes
    sure the last step is evaluated, and turns should_stop() into a clean stop."""

    def __init__(
        self,
        progress: Callable[[ProgressEvent], None] | None,
        should_stop: Callable[[], bool] | None,
        *,
        should_pause: Callable[[], bool] | None = None,
        method: str = "dpo",
        kto_validation: _KtoValidation | None = None,
        evaluate_last_step: bool = False,
    ) -> None:
        self.progress = progress
        self.should_stop = should_stop
        self.should_pause = should_pause
        self.paused = False
        self.method = method
        self.kto_validation = kto_validation
        self.evaluate_last_step = evaluate_last_step
        self.cancelled = False
        # Checkpoints before this step are evaluated and charted but never kept (see first_keepable_step).
        self.first_keepable_step = 0
        self.history: list[ProgressEvent] = []
        self._last_score: float | None = None
        # transformers' linear warm-up gives the first optimizer step a learning rate of 0: a checkpoint taken
        # before any step with a positive rate is the untouched adapter, and must never be the one kept.
        self._updated = False

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001 - transformers' signature
        if not logs:
            return
        metrics = {k: float(v) for k, v in logs.items() if is_number(v)}
        epoch = metrics.pop("epoch", None)
        metrics.pop("total_flos", None)
        if any(k.startswith("eval_") for k in metrics):
            kind = "eval"
            metrics.update(self._validation_extras(metrics, kwargs.get("model"), int(state.global_step)))
            self._last_score = metrics.get(SELECTION_KEY)
        elif "train_runtime" in metrics:
            kind = "summary"
        else:
            kind = "train"
            self._updated = self._updated or metrics.get("learning_rate", 0.0) > 0
        event = ProgressEvent(
            step=int(state.global_step), total_steps=int(state.max_steps), metrics=metrics, kind=kind, epoch=epoch
        )
        self.history.append(event)
        if self.progress is not None:
            # Errors from the progress sink propagate: a run whose progress cannot be recorded should fail loudly.
            self.progress(event)

    def _validation_extras(self, metrics: dict[str, float], model: Any, step: int) -> dict[str, float]:
        extras = self._scored(metrics, model)
        if SELECTION_KEY in extras and (not self._updated or step < self.first_keepable_step):
            extras[SELECTION_KEY] = NEVER_KEPT
        return extras

    def _scored(self, metrics: dict[str, float], model: Any) -> dict[str, float]:
        if self.method == "kto":
            if self.kto_validation is None or model is None:
                return {}
            ranking, gap = self.kto_validation.score(model)
            return {"eval_ranking_accuracy": ranking, "eval_reward_gap": gap,
                    SELECTION_KEY: ranking + _TIE_BREAK_WEIGHT * math.tanh(gap)}
        if self.method == REWARD_METHOD:
            accuracy = metrics.get("eval_accuracy")
            return {SELECTION_KEY: accuracy} if accuracy is not None else {}
        if self.method in LOSS_SELECTED_METHODS:
            # Their "reward" is the model's own (length-normalised) log-probability, not a change from a reference:
            # the untouched base can already rank validation pairs well, and a checkpoint taken before the first
            # real update would win on accuracy. The validation loss is what their training lowers.
            loss = metrics.get("eval_loss")
            return {SELECTION_KEY: -loss} if loss is not None and math.isfinite(loss) else {}
        accuracy = metrics.get("eval_rewards/accuracies")
        if accuracy is None:
            return {}
        return {SELECTION_KEY: dpo_selection_score(accuracy, metrics.get("eval_loss"))}

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):  # noqa: ANN001
        # transformers picks the best checkpoint from this same dict right after this callback.
        if metrics is not None and self._last_score is not None:
            metrics[SELECTION_KEY] = self._last_score
        return control

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if self.should_pause is not None and self.should_pause():
            # Save a checkpoint at this step, then stop: the run resumes from here on another attempt.
            self.cancelled = self.paused = True
            control.should_training_stop = True
            control.should_save = True
            control.should_evaluate = False
        elif self.should_stop is not None and self.should_stop():
            self.cancelled = True
            # Stops after this step; the step's log (if due) is still emitted.
            control.should_training_stop = True
            control.should_save = False
            control.should_evaluate = False
        elif self.evaluate_last_step and state.global_step >= state.max_steps:
            # The last step may fall between evaluations; evaluate and save it so it can be the one kept.
            control.should_evaluate = True
            control.should_save = True
        return control


class _KtoValidation:
    """KTO's validation score: the share of (thumbs-up, thumbs-down) validation pairs whose implicit reward
    beta * (log p_tuned - log p_reference) puts the thumbs-up answer higher (ties count half), and the mean
    reward gap between the two groups. The reference is the same model with its adapter switched off."""

    def __init__(self, rows: list[dict[str, Any]], tokenizer: Any, beta: float) -> None:
        self.rows = rows
        self.tokenizer = tokenizer
        self.beta = beta

    def rewards(self, model: Any) -> list[float]:
        from .generation import adapter_disabled, sequence_logprob

        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                tuned = [self._logp(model, row, sequence_logprob) for row in self.rows]
                with adapter_disabled(model):
                    reference = [self._logp(model, row, sequence_logprob) for row in self.rows]
        finally:
            model.train(was_training)
        return [self.beta * (t - r) for t, r in zip(tuned, reference, strict=True)]

    def _logp(self, model: Any, row: dict[str, Any], sequence_logprob: Callable[..., float]) -> float:
        text = "".join(m["content"] for m in row["completion"])
        return sequence_logprob(model, self.tokenizer, row["prompt"], text)

    def score(self, model: Any) -> tuple[float, float]:
        rewards = self.rewards(model)
        good = [r for r, row in zip(rewards, self.rows, strict=True) if row["label"]]
        bad = [r for r, row in zip(rewards, self.rows, strict=True) if not row["label"]]
        return ranking_accuracy(good, bad), (sum(good) / len(good) - sum(bad) / len(bad)) if good and bad else 0.0


def ranking_accuracy(good: list[float], bad: list[float]) -> float:
    """The share of (good, bad) pairs with good scored higher, ties counting half (the AUC); 0.5 if a side is empty."""
    if not good or not bad:
        return 0.5
    points = sum(1.0 if g > b else 0.5 if g == b else 0.0 for g in good for b in bad)
    return points / (len(good) * len(bad))


def first_keepable_step(settings: TrainSettings, train_rows: int) -> int:
    """The first step whose checkpoint a DPO run may keep: the end of the first pass over the training rows (or
    the last step, if the run is shorter). Precondition: `settings` resolved.

    Within the first pass the model has seen only part of the data, and on a validation split of a dozen or two
    pairs the easy ones are ranked right after a few steps: accuracy saturates early and ties, and the earliest
    tie is a checkpoint that has barely moved. On the alignment bench (length rule, 200 votes) the checkpoints
    kept at steps 10 and 11, inside the first epoch, won 72.8% and 69.4% of held-out comparisons (KL 0.04 and
    0.03 per token); those at steps 20 and 22, just after it, won 86.1% and 82.8%.
    """
    if settings.method != "dpo":
        return 0
    return min(settings.steps_per_epoch(train_rows), settings.total_steps(train_rows))


def final_train_metrics(output: Any, callback: _ProgressCallback) -> dict[str, float]:  # noqa: ANN401
    """The trainer's summary figures, completed by the last logged training step's."""
    metrics = {k: float(v) for k, v in (output.metrics or {}).items() if isinstance(v, (int, float))}
    last_train = next((e.metrics for e in reversed(callback.history) if e.kind == "train"), {})
    for key, value in last_train.items():
        metrics.setdefault(key, value)
    return metrics


def _tokens_seen(callback: _ProgressCallback) -> int | None:
    # TRL logs a running "num_tokens" (prompt + completions, without padding) with every training step.
    for event in reversed(callback.history):
        if event.kind == "train" and "num_tokens" in event.metrics:
            return int(event.metrics["num_tokens"])
    return None
