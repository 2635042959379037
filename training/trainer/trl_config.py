"""The TRL config a run trains with: one per method (DPO, KTO, SimPO/CPO, ORPO, SFT, reward model), over the
arguments they share (schedule, batches, evaluation and the checkpoint kept), plus the hardware's and FSDP's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trl import DPOConfig, KTOConfig

from .config import TrainSettings
from .device import DeviceSettings
from .progress import SELECTION_KEY
from .settings_choices import REWARD_METHOD
from .sharding import fsdp_training_kwargs


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

    common = _common_arguments(
        settings, checkpoints_dir, has_validation=has_validation, validation_count=validation_count
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


def _common_arguments(
    settings: TrainSettings, checkpoints_dir: Path, *, has_validation: bool, validation_count: int
) -> dict[str, Any]:
    """What every method's TRL config takes: the schedule, batches, evaluation, checkpoints and logging."""
    keep_best = settings.keep_best and has_validation
    eval_steps = settings.eval_steps or settings.save_steps
    # Keeping the best checkpoint needs one saved at every evaluation; otherwise save for crash recovery only.
    save_steps = eval_steps if keep_best else settings.save_steps
    return dict(
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
