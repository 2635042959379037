"""Preference tuning with TRL + PEFT LoRA: the one function a worker calls to train.

No Django here: `training/services.py` turns a TuningRun into `train(...)` arguments and records
the ProgressEvents and the TrainResult.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import AutoTokenizer, set_seed
from transformers.trainer_callback import PrinterCallback
from transformers.trainer_pt_utils import LengthGroupedSampler
from trl import DPOTrainer, KTOTrainer

from .checkpoints import ADAPTER_DIRNAME, CHECKPOINTS_DIRNAME, checkpoint_is_final, guard_checkpoints
from .config import SettingsError, TrainSettings
from .cpu_head import plain_lm_head_on_cpu
from .device import DeviceSettings, choose_device
from .events import ProgressEvent
from .model_loading import _load_base_model, _lora_config, _merged, chain_adapters
from .progress import (
    _KtoValidation,
    _ProgressCallback,
    _tokens_seen,
    final_train_metrics,
    first_keepable_step,
)
from .reward import pairwise_accuracy, score_pairs
from .rows import DPO_KEYS, KTO_KEYS, SFT_KEYS, kto_class_weights, rows_format, split_rows, validate_rows
from .settings_choices import LOSS_SELECTED_METHODS, REWARD_METHOD, RL_METHODS
from .sharding import decoder_layer_classes
from .trl_config import _trl_config


@dataclass
class TrainResult:
    """What a finished (or cancelled) run produced.

    adapter_dir is None when the run was cancelled: nothing final was saved, only checkpoints.
    """

    adapter_dir: str | None
    steps: int
    total_steps: int
    train_metrics: dict[str, float]
    eval_metrics: dict[str, float]
    tokens_seen: int | None
    duration_s: float
    cancelled: bool = False
    paused: bool = False  # stopped by should_pause after saving a checkpoint to resume from
    train_rows: int = 0
    validation_rows: int = 0
    desirable_weight: float | None = None
    undesirable_weight: float | None = None
    history: list[ProgressEvent] = field(default_factory=list)
    outcome: dict[str, Any] = field(default_factory=dict)
    settings: TrainSettings | None = None  # as trained: automatic choices resolved


class _LengthGroupedDPOTrainer(DPOTrainer):
    """DPOTrainer whose shuffling puts pairs of similar length in a batch (less padding).

    transformers' own group_by_length sampler looks for an `input_ids` column, which TRL's tokenised
    preference dataset does not have (it has prompt_ids / chosen_ids / rejected_ids), so we compute
    the lengths ourselves.
    """

    def _get_train_sampler(self, train_dataset=None):  # noqa: ANN001
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        lengths = [
            len(p) + max(len(c), len(r))
            for p, c, r in zip(dataset["prompt_ids"], dataset["chosen_ids"], dataset["rejected_ids"], strict=True)
        ]
        generator = torch.Generator().manual_seed(self.args.seed)
        return LengthGroupedSampler(
            self.args.train_batch_size * self.args.gradient_accumulation_steps,
            lengths=lengths,
            generator=generator,
        )


def _trainer_class(settings: TrainSettings) -> type:
    if settings.method == "dpo":
        return _LengthGroupedDPOTrainer if settings.group_by_length else DPOTrainer
    if settings.method == "kto":
        return KTOTrainer
    if settings.method in ("simpo", "cpo"):
        from trl.experimental.cpo import CPOTrainer

        return CPOTrainer
    if settings.method == "sft":
        from trl import SFTTrainer

        return SFTTrainer
    if settings.method == REWARD_METHOD:
        from trl import RewardTrainer

        return RewardTrainer
    from trl.experimental.orpo import ORPOTrainer

    return ORPOTrainer


def _to_dataset(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> Dataset:
    # Only the columns TRL reads: stray keys (ids, annotator names) must not reach the tokeniser.
    return Dataset.from_list([{k: row[k] for k in keys} for row in rows])


def train(
    *,
    model_path: str,
    rows: list[dict[str, Any]],
    settings: TrainSettings,
    output_dir: str,
    progress: Callable[[ProgressEvent], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume_from_checkpoint: str | None = None,
    device: DeviceSettings | None = None,
    should_pause: Callable[[], bool] | None = None,
    before_save: Callable[[], None] | None = None,
) -> TrainResult:
    """Train a LoRA adapter on `rows` with DPO or KTO and save it to `<output_dir>/adapter`.

    Preconditions: `model_path` is a local transformers model folder (see
    `training.base_models.convert_bundled_model`); `rows` are in TRL's conversational format for
    `settings.method` (checked here, RowsError if not); `settings` is validated here (SettingsError).
    Side effects: writes checkpoints every `settings.save_steps` steps under
    `<output_dir>/checkpoints` (pass `latest_checkpoint(output_dir)` as `resume_from_checkpoint` to
    continue after a crash) and the final adapter plus tokenizer under `<output_dir>/adapter`.
    `progress` is called from the training thread for every log line; `should_stop` is polled after
    every optimizer step and, when it returns True, training stops after that step and the result
    has `cancelled=True` and no adapter. `should_pause` is the same, but saves a checkpoint at that step first
    (the result has `paused=True` too), for a worker that is shutting down. `before_save` is called right before
    each checkpoint is written (the worker's child stops there if its attempt was superseded while it slept).
    The reference model is the base model with the adapter disabled (one model in memory).
    """
    settings.validate()
    if settings.method in RL_METHODS:
        raise SettingsError(f"{settings.method.upper()} is online RL: train it with online.train_online.")
    validate_rows(rows, settings.method)
    started = time.monotonic()
    out = Path(output_dir)
    if resume_from_checkpoint is not None and not Path(resume_from_checkpoint).is_dir():
        raise FileNotFoundError(f"Checkpoint to resume from does not exist: {resume_from_checkpoint}")
    device = device or choose_device()
    train_rows, validation_rows, settings, kto_weights = _prepared(rows, settings, device)
    sizes = dict(train_rows=len(train_rows), validation_rows=len(validation_rows),
                 desirable_weight=kto_weights[0] if kto_weights else None,
                 undesirable_weight=kto_weights[1] if kto_weights else None)
    callback = _ProgressCallback(progress, should_stop, should_pause=should_pause, method=settings.method)
    if should_stop is not None and should_stop():
        return TrainResult(adapter_dir=None, steps=0, total_steps=0, train_metrics={}, eval_metrics={}, tokens_seen=None,
                           duration_s=time.monotonic() - started, cancelled=True, train_rows=len(train_rows),
                           validation_rows=len(validation_rows))
    # Seed before anything random is made: a reward model's new score head, and the LoRA weights PEFT creates when
    # the trainer wraps the model, are drawn before transformers' Trainer seeds itself. Without this two runs with
    # the same seed and rows differed (held-out accuracy 82.5% and 75% for one reward model's settings).
    set_seed(settings.seed)
    trainer = _preference_trainer(model_path, settings, device, out / CHECKPOINTS_DIRNAME, train_rows, validation_rows,
                                  kto_weights, callback)
    if resume_from_checkpoint is not None and checkpoint_is_final(resume_from_checkpoint):
        # transformers checks the step limit only after a step, so resuming from the last step's checkpoint (a worker
        # stopped between that save and the adapter's) would train one step past the end ("step 4 of 3"). With no
        # epoch to run, train() still loads the checkpoint's weights and state and finishes as usual (best checkpoint
        # reloaded, metrics, callbacks); tests/trainer/test_core.py pins this on the installed transformers.
        trainer._run_epoch = lambda **_: None  # noqa: SLF001
    guard_checkpoints(trainer, before_save)
    output = trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    state = trainer.state
    common = dict(steps=int(state.global_step), total_steps=int(state.max_steps),
                  train_metrics=final_train_metrics(output, callback), tokens_seen=_tokens_seen(callback),
                  history=callback.history, settings=settings, **sizes)
    if callback.cancelled:
        return TrainResult(adapter_dir=None, eval_metrics={}, duration_s=time.monotonic() - started, cancelled=True,
                           paused=callback.paused, **common)
    kept_step, eval_metrics = _kept_step_figures(trainer, callback)
    reward_heldout = _reward_heldout(trainer, settings, validation_rows)
    adapter_dir = _save_adapter(trainer, out, model_path, settings, device)
    return TrainResult(
        adapter_dir=str(adapter_dir), eval_metrics=eval_metrics, duration_s=time.monotonic() - started, cancelled=False,
        outcome=_outcome(
            settings, callback.history, kept_step=kept_step, steps=int(state.global_step),
            train_rows=len(train_rows), validation_rows=len(validation_rows), reward_heldout=reward_heldout,
        ),
        **common,
    )


def _reward_heldout(
    trainer: Any, settings: TrainSettings, validation_rows: list[dict[str, Any]]  # noqa: ANN401
) -> dict[str, Any] | None:
    """A reward model's pairwise accuracy on the validation pairs; None for other methods, or without validation."""
    if settings.method != REWARD_METHOD or not validation_rows:
        return None
    # Exactly, pair by pair: TRL's eval_accuracy averages per-batch means, which a short last batch skews.
    return pairwise_accuracy(
        score_pairs(trainer.model, trainer.processing_class, validation_rows,
                    batch_size=settings.per_device_batch_size, max_length=settings.max_length)
    ).as_dict()


def _prepared(
    rows: list[dict[str, Any]], settings: TrainSettings, device: DeviceSettings,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], TrainSettings, tuple[float, float] | None]:
    """(train rows, validation rows, settings resolved for them, KTO's class weights or None)."""
    train_rows, validation_rows = split_rows(
        rows, validation_fraction=settings.validation_fraction, seed=settings.seed, method=settings.method
    )
    settings, _ = settings.resolve(len(train_rows), device=device.device)
    if settings.method != "kto":
        return train_rows, validation_rows, settings, None
    # TRL feeds KTO rows in order (its KL term pairs neighbours), so without this a winner sits next to its own
    # loser and a run shorter than an epoch sees only the first rows in database order.
    train_rows = list(train_rows)
    random.Random(settings.seed).shuffle(train_rows)
    if settings.desirable_weight is None and settings.undesirable_weight is None:
        weights = kto_class_weights(train_rows)
    else:
        weights = (settings.desirable_weight or 1.0, settings.undesirable_weight or 1.0)
    return train_rows, validation_rows, settings, weights


def _preference_trainer(
    model_path: str, settings: TrainSettings, device: DeviceSettings, checkpoints_dir: Path,
    train_rows: list[dict[str, Any]], validation_rows: list[dict[str, Any]], kto_weights: tuple[float, float] | None,
    callback: _ProgressCallback,
) -> Any:  # noqa: ANN401
    """The TRL trainer for `settings.method` over the base (or the version started from) with a new LoRA adapter,
    `callback` set up to score validation and keep the right checkpoint."""
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = _load_base_model(model_path, settings, device)
    if settings.init_adapter:
        model = _merged(model, settings.init_adapter)
    fsdp_layers = decoder_layer_classes(model) if settings.sharding == "fsdp" else None
    args = _trl_config(
        settings, device, checkpoints_dir, has_validation=bool(validation_rows), kto_weights=kto_weights,
        fsdp_layers=fsdp_layers, validation_count=len(validation_rows),
    )
    keys = {"dpo": DPO_KEYS, "kto": KTO_KEYS, "sft": SFT_KEYS}[rows_format(settings.method)]
    # Passing the plain base model plus peft_config (not a PeftModel) makes TRL wrap it itself and use
    # the adapter-disabled base as the reference: one model in memory, no "ref" adapter copy. CPO and ORPO
    # have no reference model at all.
    reference = {} if settings.method in (*LOSS_SELECTED_METHODS, REWARD_METHOD) else {"ref_model": None}
    with plain_lm_head_on_cpu(device.device == "cpu"):
        trainer = _trainer_class(settings)(
            model=model,
            **reference,
            args=args,
            train_dataset=_to_dataset(train_rows, keys),
            eval_dataset=_to_dataset(validation_rows, keys) if validation_rows else None,
            processing_class=tokenizer,
            peft_config=_lora_config(model, settings),
            callbacks=[callback],
        )
    if fsdp_layers and not trainer.is_fsdp_enabled:
        # accelerate (1.15) shards only across accelerators: on CPU processes it drops the FSDP plugin without a word
        # and trains a whole copy in each process, which is not what the run asked for.
        raise SettingsError(
            f"Sharding (FSDP) needs CUDA GPUs: accelerate shards a model only across GPUs, and these "
            f"{settings.num_processes} processes run on {device.device.upper()}, where each would hold the whole "
            "model. Launch the run on a GPU worker, or without sharding."
        )
    # disable_tqdm swaps the progress bar for a PrinterCallback that prints every log dict to stdout;
    # our callback already carries them, so keep worker logs clean.
    trainer.remove_callback(PrinterCallback)
    callback.evaluate_last_step = bool(validation_rows)
    callback.first_keepable_step = first_keepable_step(settings, len(train_rows))
    if settings.method == "kto" and validation_rows:
        callback.kto_validation = _KtoValidation(validation_rows, tokenizer, settings.beta)
    if len(trainer.train_dataset) == 0:
        raise SettingsError(
            f"Every training row's prompt is at least max_length={settings.max_length} tokens long, so nothing is "
            "left to train on; raise max_length or shorten the prompts."
        )
    return trainer


def _kept_step_figures(trainer: Any, callback: _ProgressCallback) -> tuple[int, dict[str, float]]:  # noqa: ANN401
    """The kept step and its validation figures. With keep_best, transformers has loaded the checkpoint with the best
    validation score back into the model."""
    state = trainer.state
    kept_step = int(state.best_global_step or state.global_step) if trainer.args.load_best_model_at_end else int(state.global_step)
    if trainer.eval_dataset is None:
        return kept_step, {}
    at_kept = [e for e in callback.history if e.kind == "eval" and e.step == kept_step]
    if at_kept:
        return kept_step, dict(at_kept[-1].metrics)
    return kept_step, {k: float(v) for k, v in trainer.evaluate().items() if isinstance(v, (int, float))}


def _save_adapter(trainer: Any, out: Path, model_path: str, settings: TrainSettings, device: DeviceSettings) -> Path:  # noqa: ANN401
    """The trained adapter (chained onto the version it started from, if any) and the tokenizer, in `<out>/adapter`."""
    adapter_dir = out / ADAPTER_DIRNAME
    # A sharded model's weights are pieces on each rank; every rank takes part in gathering the adapter.
    gathered = _gathered_trainable_weights(trainer.model) if trainer.is_fsdp_enabled else None
    if trainer.is_world_process_zero():
        trainer.model.save_pretrained(str(adapter_dir), state_dict=gathered, safe_serialization=True)
        if settings.init_adapter:
            chain_adapters(model_path, settings.init_adapter, str(adapter_dir), out=str(adapter_dir), dtype=device.dtype)
        trainer.processing_class.save_pretrained(str(adapter_dir))
    return adapter_dir


def _gathered_trainable_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trainable weights (the adapter) of an FSDP-sharded model, whole and on the CPU on rank 0, empty on the
    others. Collective: every rank must call it. The frozen base is left out, so rank 0 never holds it whole."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)
    return get_model_state_dict(model, options=options)


def _outcome(
    settings: TrainSettings,
    history: list[ProgressEvent],
    *,
    kept_step: int,
    steps: int,
    train_rows: int,
    validation_rows: int,
    reward_heldout: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What the run page leads with: validation metrics at the kept checkpoint, and the last training batch (and
    for a reward model, its pairwise accuracy on the validation pairs)."""
    evals = [e for e in history if e.kind == "eval"]
    at_kept = next((e for e in reversed(evals) if e.step == kept_step), None)
    last_train = next((e for e in reversed(history) if e.kind == "train"), None)
    outcome: dict[str, Any] = {
        "kept_step": kept_step,
        "steps": steps,
        "train_rows": train_rows,
        "validation_rows": validation_rows,
        "final_train": dict(last_train.metrics) if last_train else {},
        "evaluations": len({e.step for e in evals}),
    }
    if at_kept is not None and settings.keep_best:
        outcome["best_metric"] = {"kto": "ranking_accuracy", REWARD_METHOD: "accuracy"}.get(
            settings.method, "loss" if settings.method in LOSS_SELECTED_METHODS else "rewards/accuracies"
        )
    if at_kept is not None:
        outcome["validation"] = {k.removeprefix("eval_"): v for k, v in at_kept.metrics.items() if k.startswith("eval_")}
    if reward_heldout is not None:
        outcome["reward_model"] = reward_heldout
    return outcome
