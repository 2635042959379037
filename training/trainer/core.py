"""Preference tuning with TRL + PEFT LoRA: the one function a worker calls to train.

No Django here: `training/services.py` turns a TuningRun into `train(...)` arguments and records
the ProgressEvents and the TrainResult.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback, set_seed
from transformers.trainer_callback import PrinterCallback
from transformers.trainer_pt_utils import LengthGroupedSampler
from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer

from .config import LOSS_SELECTED_METHODS, REWARD_METHOD, RL_METHODS, SettingsError, TrainSettings
from .cpu_head import plain_lm_head_on_cpu
from .device import DeviceSettings, choose_device
from .reward import SCORE_HEAD, pairwise_accuracy, score_pairs
from .rows import DPO_KEYS, KTO_KEYS, SFT_KEYS, kto_class_weights, rows_format, split_rows, validate_rows
from .sharding import decoder_layer_classes, fsdp_training_kwargs

logger = logging.getLogger(__name__)

ADAPTER_DIRNAME = "adapter"
CHECKPOINTS_DIRNAME = "checkpoints"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


@dataclass
class ProgressEvent:
    """One log line from the trainer.

    kind: "train" (a training step's metrics: loss, rewards/chosen, rewards/rejected,
    rewards/margins, rewards/accuracies, logps/chosen, logps/rejected, kl for KTO, grad_norm,
    learning_rate, num_tokens, ...), "eval" (the same with an "eval_" prefix, computed on the
    validation split), or "summary" (train_runtime, train_loss, ... once at the end).
    """

    step: int
    total_steps: int
    metrics: dict[str, float]
    kind: str = "train"
    epoch: float | None = None
    # What an online RL run's watch found at an evaluation (its answers, with text), beside the figures.
    details: dict[str, Any] | None = None


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
        metrics = {k: float(v) for k, v in logs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
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


def checkpoint_complete(path: str | os.PathLike[str]) -> bool:
    """Whether a `checkpoint-N` folder holds everything a resume reads.

    transformers writes the adapter, then the optimizer, scheduler and RNG state, and `trainer_state.json`
    last; a process killed part-way leaves a folder without (or with a cut-off) trainer state, and resuming
    from it fails with "Can't find a valid checkpoint".
    """
    folder = Path(path)
    if not any((folder / name).is_file() for name in ("adapter_model.safetensors", "model.safetensors")):
        return False
    # optimizer.bin: a sharded (FSDP) run's optimizer state, gathered whole by accelerate.
    if not any((folder / name).is_file() for name in ("optimizer.pt", "optimizer.bin")):
        return False
    try:
        state = json.loads((folder / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and "global_step" in state


def latest_checkpoint(output_dir: str | os.PathLike[str]) -> str | None:
    """Newest complete `checkpoint-N` folder that `train(output_dir=...)` left, or None; pass it to resume.

    Incomplete folders (the process died while writing one) are skipped, so a retry resumes from the
    newest checkpoint that was written in full.
    """
    folder = Path(output_dir) / CHECKPOINTS_DIRNAME
    if not folder.is_dir():
        return None
    found = sorted(
        ((int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _CHECKPOINT_RE.match(p.name))),
        reverse=True,
    )
    for step, path in found:
        if checkpoint_complete(path):
            return str(path)
        logger.warning("Skipping incomplete checkpoint %s (step %s): it was not written in full", path, step)
    return None


def _model_class(settings: TrainSettings) -> type:
    if settings.method == REWARD_METHOD:
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification
    return AutoModelForCausalLM


def _load_base_model(model_path: str, settings: TrainSettings, device: DeviceSettings) -> torch.nn.Module:
    # A reward model is the base with a new one-number head (`score`) in place of the vocabulary head.
    head = {"num_labels": 1} if settings.method == REWARD_METHOD else {}
    if settings.quantization == "none":
        return _model_class(settings).from_pretrained(model_path, dtype=device.dtype, **head)
    if device.device != "cuda":
        raise SettingsError(
            "QLoRA (4-bit base weights) needs a CUDA GPU: bitsandbytes' 4-bit kernels do not train on this worker's "
            "CPU. Launch without 4-bit quantization, or on a GPU worker."
        )
    try:
        import bitsandbytes  # noqa: F401 - only checking that it is installed
    except ImportError as exc:
        raise SettingsError(
            "QLoRA needs the bitsandbytes package on the GPU worker (pip install bitsandbytes); it is not installed."
        ) from exc
    from transformers import BitsAndBytesConfig

    quantization = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    # Each data-parallel process holds its own quantised copy on its own GPU.
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    return _model_class(settings).from_pretrained(
        model_path, quantization_config=quantization, dtype=torch.bfloat16, device_map={"": local_rank}, **head
    )


def _lora_config(model: torch.nn.Module, settings: TrainSettings) -> LoraConfig:
    lora = settings.lora
    # Fail with the names the model does have, not PEFT's "target modules not found" deep in setup.
    leaf_names = {
        name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)
    }
    missing = [t for t in lora.target_modules if t not in leaf_names]
    if missing:
        raise SettingsError(
            f"LoRA target module(s) {', '.join(missing)} do not exist in this model; its linear layers are: "
            f"{', '.join(sorted(leaf_names - {'lm_head'}))}."
        )
    reward = settings.method == REWARD_METHOD
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        bias="none",
        task_type="SEQ_CLS" if reward else "CAUSAL_LM",
        # The score head is new and random: it is trained in full and saved with the adapter.
        modules_to_save=[SCORE_HEAD] if reward else None,
    )


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


def even_eval_batch_size(validation_rows: int, batch_size: int, processes: int = 1) -> int:
    """The largest evaluation batch, at most `batch_size` per process, that splits `validation_rows` into equal
    batches (1 if none does).

    TRL logs a validation metric as the mean of its per-batch means, so a short last batch weighs each of its
    rows more: 25 rows in batches of 4 counted the 25th row four times and printed 0.893 for 22 of 25 right.
    Equal batches make the logged accuracy, and the checkpoint kept by it, the exact share of rows.
    """
    if validation_rows <= 0:
        return batch_size
    for size in range(batch_size, 0, -1):
        if validation_rows % (size * processes) == 0:
            return size
    return 1


def _trl_config(
    settings: TrainSettings,
    device: DeviceSettings,
    checkpoints_dir: Path,
    *,
    has_validation: bool,
    kto_weights: tuple[float, float] | None,
    fsdp_layers: list[str] | None = None,
    validation_count: int = 0,
) -> DPOConfig | KTOConfig:
    """The TRL config for `settings.method`; `fsdp_layers` (the decoder layer class names) shards the model (FSDP);
    `validation_count` rows of validation set the evaluation batch (see `even_eval_batch_size`)."""

    def hardware(config_cls: type) -> dict[str, Any]:
        kwargs = device.training_kwargs(config_cls)
        return fsdp_training_kwargs(kwargs, fsdp_layers) if fsdp_layers else kwargs

    keep_best = settings.keep_best and has_validation
    eval_steps = settings.eval_steps or settings.save_steps
    # Keeping the best checkpoint needs one saved at every evaluation; otherwise save for crash recovery only.
    save_steps = eval_steps if keep_best else settings.save_steps
    common: dict[str, Any] = dict(
        output_dir=str(checkpoints_dir),
        learning_rate=settings.learning_rate,
        num_train_epochs=settings.num_train_epochs,
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.per_device_batch_size,
        per_device_eval_batch_size=even_eval_batch_size(
            validation_count, settings.per_device_batch_size, settings.num_processes
        ),
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        warmup_steps=settings.warmup_ratio,  # a float in [0, 1) is a ratio in transformers 5
        max_length=settings.max_length,
        seed=settings.seed,
        data_seed=settings.seed,
        logging_strategy="steps",
        logging_steps=1,
        logging_first_step=True,
        eval_strategy="steps" if has_validation else "no",
        eval_steps=eval_steps,
        save_strategy="steps",
        save_steps=save_steps,
        save_total_limit=settings.save_total_limit,
        load_best_model_at_end=keep_best,
        metric_for_best_model=SELECTION_KEY if keep_best else None,
        greater_is_better=True if keep_best else None,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    if settings.method == "dpo":
        losses = {"loss_type": [settings.resolved_loss_type]}
        if settings.sft_weight:
            losses = {"loss_type": [settings.resolved_loss_type, "sft"], "loss_weights": [1.0, settings.sft_weight]}
        return DPOConfig(
            **losses,
            beta=settings.beta,
            label_smoothing=settings.label_smoothing,
            ld_alpha=settings.ld_alpha,
            precompute_ref_log_probs=settings.precompute_ref_log_probs,
            **common,
            **hardware(DPOConfig),
        )
    if settings.method in ("simpo", "cpo"):
        from trl.experimental.cpo import CPOConfig

        return CPOConfig(
            beta=settings.beta,
            loss_type=settings.resolved_loss_type,
            # SimPO is CPO's loss without its NLL term (Meng et al. 2024); CPO keeps cpo_alpha of it.
            cpo_alpha=0.0 if settings.method == "simpo" else settings.cpo_alpha,
            simpo_gamma=settings.simpo_gamma,
            label_smoothing=settings.label_smoothing,
            **common,
            **hardware(CPOConfig),
        )
    if settings.method == "orpo":
        from trl.experimental.orpo import ORPOConfig

        return ORPOConfig(beta=settings.beta, **common, **hardware(ORPOConfig))
    if settings.method == REWARD_METHOD:
        from trl import RewardConfig

        return RewardConfig(
            center_rewards_coefficient=settings.center_rewards or None, **common, **hardware(RewardConfig)
        )
    if settings.method == "sft":
        from trl import SFTConfig

        # Prompt-completion rows: the loss is on the answer's tokens only (completion_only_loss).
        return SFTConfig(completion_only_loss=True, **common, **hardware(SFTConfig))
    assert kto_weights is not None
    return KTOConfig(
        **hardware(KTOConfig),
        beta=settings.beta,
        loss_type=settings.resolved_loss_type,
        precompute_ref_log_probs=settings.precompute_ref_log_probs,
        desirable_weight=kto_weights[0],
        undesirable_weight=kto_weights[1],
        # The KL estimate pairs each example with its neighbour in a fixed-order batch; `train` shuffles the
        # rows once (seeded) beforehand, so neighbours are unrelated rows, not a winner and its own loser.
        train_sampling_strategy="sequential",
        **common,
    )


def _merged(model: torch.nn.Module, adapter_dir: str) -> torch.nn.Module:
    """The base with a trained version's adapter merged in: what this run starts from and is measured against."""
    from peft import PeftModel

    if not Path(adapter_dir, "adapter_config.json").is_file():
        raise SettingsError(f"The version to start from has no adapter at {adapter_dir}: it may have been deleted.")
    return PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()


def chain_adapters(base_path: str, first: str, second: str, *, out: str, dtype: torch.dtype = torch.float32) -> None:
    """Write to `out` one LoRA adapter equal to `first` then `second` on the base at `base_path`.

    `second` was trained on the base with `first` merged in. LoRA updates add up, so W + B1·A1·s1 + B2·A2·s2 is
    one adapter of rank r1 + r2 (PEFT's "cat" combination): the chained version then loads, generates, battles
    and exports like any other, from the original base.
    """
    from peft import PeftModel

    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype)
    model = PeftModel.from_pretrained(base, first, adapter_name="first")
    model.load_adapter(second, adapter_name="second")
    model.add_weighted_adapter(["first", "second"], [1.0, 1.0], adapter_name="chain", combination_type="cat")
    model.set_adapter("chain")
    model.delete_adapter("first")
    model.delete_adapter("second")
    Path(out).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=Path(out).parent) as tmp:
        model.save_pretrained(tmp, selected_adapters=["chain"], safe_serialization=True)
        saved = Path(tmp) / "chain" if (Path(tmp) / "chain").is_dir() else Path(tmp)
        for name in ("adapter_model.safetensors", "adapter_config.json"):
            shutil.copy(saved / name, Path(out) / name)


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
    reward_heldout = None
    if settings.method == REWARD_METHOD and validation_rows:
        # Exactly, pair by pair: TRL's eval_accuracy averages per-batch means, which a short last batch skews.
        reward_heldout = pairwise_accuracy(
            score_pairs(trainer.model, trainer.processing_class, validation_rows,
                        batch_size=settings.per_device_batch_size, max_length=settings.max_length)
        ).as_dict()
    adapter_dir = _save_adapter(trainer, out, model_path, settings, device)
    return TrainResult(
        adapter_dir=str(adapter_dir), eval_metrics=eval_metrics, duration_s=time.monotonic() - started, cancelled=False,
        outcome=_outcome(
            settings, callback.history, kept_step=kept_step, steps=int(state.global_step),
            train_rows=len(train_rows), validation_rows=len(validation_rows), reward_heldout=reward_heldout,
        ),
        **common,
    )


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


def guard_checkpoints(trainer: Any, before_save: Callable[[], None] | None) -> None:  # noqa: ANN401
    """Call `before_save` right before each checkpoint is written. transformers saves a checkpoint after the step's
    log and evaluation: a trainer frozen after those, and woken once its run has moved on, must not write it (the
    log and evaluation check through `progress`)."""
    if before_save is None:
        return
    save_checkpoint = trainer._save_checkpoint  # noqa: SLF001

    def checked_save(*args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
        before_save()
        return save_checkpoint(*args, **kwargs)

    trainer._save_checkpoint = checked_save  # noqa: SLF001


def final_train_metrics(output: Any, callback: _ProgressCallback) -> dict[str, float]:  # noqa: ANN401
    """The trainer's summary figures, completed by the last logged training step's."""
    metrics = {k: float(v) for k, v in (output.metrics or {}).items() if isinstance(v, (int, float))}
    last_train = next((e.metrics for e in reversed(callback.history) if e.kind == "train"), {})
    for key, value in last_train.items():
        metrics.setdefault(key, value)
    return metrics


def _gathered_trainable_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trainable weights (the adapter) of an FSDP-sharded model, whole and on the CPU on rank 0, empty on the
    others. Collective: every rank must call it. The frozen base is left out, so rank 0 never holds it whole."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)
    return get_model_state_dict(model, options=options)


def checkpoint_is_final(checkpoint: str) -> bool:
    """Was ``checkpoint`` saved at the run's last step (its trainer state at or past its own max_steps)?"""
    state_file = Path(checkpoint) / "trainer_state.json"
    if not state_file.is_file():
        return False
    state = json.loads(state_file.read_text())
    return int(state.get("max_steps") or 0) > 0 and int(state.get("global_step") or 0) >= int(state["max_steps"])


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


def _tokens_seen(callback: _ProgressCallback) -> int | None:
    # TRL logs a running "num_tokens" (prompt + completions, without padding) with every training step.
    for event in reversed(callback.history):
        if event.kind == "train" and "num_tokens" in event.metrics:
            return int(event.metrics["num_tokens"])
    return None
