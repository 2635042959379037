"""Typed, validated training settings: what a TuningRun's JSON hyperparameters parse into.

Plain dataclasses with no TRL import, so the web process can validate a form without loading torch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .auto_settings import AutomaticChoices
from .json_numbers import is_finite_number, is_whole_number
from .settings_choices import (
    DEFAULT_LOSS_TYPES,
    FORBIDDEN_LORA_TARGETS,
    LOSS_SELECTED_METHODS,
    LOSS_TYPES,
    MAX_PROCESSES,
    METHODS,
    QUANTIZATIONS,
    REWARD_METHOD,
    RL_METHODS,  # also imported from here, as public vocabulary, by services, selectors, presenters and the child
    SHARDINGS,
)


class SettingsError(ValueError):
    """Settings that cannot work; the message is meant for the person who entered them, and ``field`` names the
    launch form's field it is about (None when it is about several), so the form shows it there."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def _from_dict(cls: type, data: dict[str, Any] | None, *, what: str) -> Any:
    """Build dataclass `cls` from a JSON-ish dict, rejecting unknown keys (typos must not pass silently)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SettingsError(f"{what} must be an object (a dict), got {type(data).__name__}.")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise SettingsError(f"Unknown {what} field(s): {', '.join(unknown)}. Known fields: {', '.join(sorted(names))}.")
    return cls(**data)


@dataclass
class LoraSettings:
    """LoRA adapter shape. Defaults suit a ~100M–1B model on attention projections."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])

    def validate(self) -> LoraSettings:
        """Raise SettingsError for values LoRA cannot use; return self for chaining."""
        if not is_whole_number(self.r) or self.r <= 0:
            raise SettingsError(f"LoRA rank r must be a positive integer, got {self.r!r}.", field="lora_r")
        if self.r > 1024:
            raise SettingsError(f"LoRA rank r={self.r} is implausibly large (at most 1024).", field="lora_r")
        if not is_finite_number(self.alpha) or self.alpha <= 0:
            raise SettingsError(f"LoRA alpha must be a positive number, got {self.alpha!r}.", field="lora_alpha")
        if self.alpha > 8192:
            raise SettingsError(f"LoRA alpha={self.alpha} is implausibly large (at most 8192).", field="lora_alpha")
        if not is_finite_number(self.dropout) or not 0 <= self.dropout < 1:
            raise SettingsError(f"LoRA dropout must be in [0, 1), got {self.dropout!r}.", field="lora_dropout")
        if not isinstance(self.target_modules, (list, tuple)) or not self.target_modules:
            raise SettingsError(
                "LoRA target_modules must be a non-empty list of module names, e.g. ['q_proj', 'v_proj']."
            , field="lora_target_modules")
        for name in self.target_modules:
            if not isinstance(name, str) or not name.strip():
                raise SettingsError(f"LoRA target_modules must be module names (strings), got {name!r}.")
            if name in FORBIDDEN_LORA_TARGETS:
                raise SettingsError(
                    f"LoRA cannot target {name!r}: the preference loss reads log-probabilities from the output "
                    "head's weights directly, so an adapter there would never be trained."
                )
        self.target_modules = list(self.target_modules)
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> LoraSettings:
        """Parse and validate; raises SettingsError."""
        try:
            return _from_dict(cls, data, what="LoRA settings").validate()
        except TypeError as exc:  # e.g. a wrong-typed field that broke the constructor
            raise SettingsError(f"Invalid LoRA settings: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrainSettings(AutomaticChoices):
    """Everything a preference-tuning run needs besides the model and rows.

    `learning_rate` and `num_train_epochs` left as None are chosen from the data size and the
    adapter by `resolve` (TRL's own default of 1e-6 barely moves a LoRA adapter).
    `desirable_weight`/`undesirable_weight` (KTO only): None means "balance from the data"
    (see `rows.kto_class_weights`). `label_smoothing` is the assumed share of flipped labels:
    with the "robust" DPO loss it makes the loss unbiased under that much annotator noise, with
    "sigmoid" it is conservative DPO. `sft_weight` (DPO) adds that much of the chosen answers' own
    negative log-likelihood to the loss (RPO, Pang et al. 2024): DPO alone can lower the likelihood of
    chosen and rejected answers together, and a small model then drifts into loops and fragments while its
    preference accuracy still rises; the SFT term holds the chosen answers up. `eval_steps` None evaluates about AUTO_EVALUATIONS times per
    run; `keep_best` keeps the checkpoint with the best validation score rather than the last one.
    """

    method: str = "dpo"
    loss_type: str | None = None  # None: DEFAULT_LOSS_TYPES[method]
    beta: float | None = None  # None: AUTO_BETA[method]
    learning_rate: float | None = None
    num_train_epochs: float | None = None
    max_steps: int = -1
    per_device_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    max_length: int | None = None  # None: AUTO_MAX_LENGTH for the device the run trains on
    seed: int = 42
    # A fifth, not the usual tenth: the kept checkpoint is picked on these rows, and with a preference set of a
    # hundred-odd pairs a tenth is a dozen, where one pair is 8 points of accuracy and most checkpoints tie. On
    # the alignment bench (length rule, 200 votes) 13 validation pairs kept a checkpoint that won 69.4% of
    # held-out comparisons; 25 kept one that won 86.1%.
    validation_fraction: float = 0.2
    desirable_weight: float | None = None
    undesirable_weight: float | None = None
    precompute_ref_log_probs: bool = True
    group_by_length: bool = False
    save_steps: int = 50
    save_total_limit: int = 2
    warmup_ratio: float = 0.1
    label_smoothing: float = 0.0
    sft_weight: float | None = None  # None: AUTO_SFT_WEIGHT for DPO, 0 for KTO
    eval_steps: int | None = None
    keep_best: bool = True
    simpo_gamma: float = 0.5  # SimPO: the target reward margin (TRL's default)
    cpo_alpha: float = 1.0  # CPO: weight of the chosen answers' NLL term beside the preference loss
    ld_alpha: float | None = None  # DPO: length-desensitised DPO's weight on tokens past the shorter answer
    center_rewards: float | None = None  # reward model: weight of the penalty on the squared mean score
    num_processes: int = 1  # data-parallel processes (GPUs), each with per_device_batch_size rows a step
    quantization: str = "none"  # "4bit": QLoRA, NF4 base weights with double quantisation (CUDA only)
    sharding: str = "none"  # "fsdp": the processes shard the weights (FSDP full shard) instead of each holding a copy
    # A trained version's adapter folder to start from: merged into the base first, so this run's reference is
    # that version (SFT, then DPO), and the saved adapter carries both.
    init_adapter: str | None = None
    # Online RL (GRPO, RLOO): answers written per prompt at each step (the group whose mean is the baseline), their
    # length in tokens and sampling temperature, and the reward model's adapter folder (set at launch).
    num_generations: int | None = None
    max_completion_length: int | None = None
    temperature: float = 1.0
    reward_adapter: str | None = None
    lora: LoraSettings = field(default_factory=LoraSettings)

    @property
    def resolved_loss_type(self) -> str:
        if self.loss_type is not None:
            return self.loss_type
        return DEFAULT_LOSS_TYPES.get(self.method, "sigmoid")

    def validate(self) -> TrainSettings:
        """Raise SettingsError for impossible or unsupported values; return self for chaining.

        The checks run in a fixed order, and the first that fails is the error the launch form shows."""
        self._check_method_and_loss()
        self._check_schedule_and_sizes()
        self._check_label_smoothing_and_sft()
        if self.eval_steps is not None and (not is_whole_number(self.eval_steps) or self.eval_steps <= 0):
            raise SettingsError(f"eval_steps must be a positive integer (or empty for automatic), got {self.eval_steps!r}.", field="eval_steps")
        self._check_model_loading()
        self._check_switches()
        self._check_kto()
        self._check_online_rl()
        if not isinstance(self.lora, LoraSettings):
            raise SettingsError("lora must be a LoraSettings.", field="lora")
        self.lora.validate()
        return self

    def _check_method_and_loss(self) -> None:
        """The method, its loss type and the loss's parameters (beta, reward centring, SimPO's gamma, CPO's alpha,
        ld_alpha)."""
        if self.method not in METHODS:
            raise SettingsError(f"Unknown method {self.method!r}; choose one of: {', '.join(METHODS)}.", field="method")
        allowed = LOSS_TYPES[self.method]
        if self.resolved_loss_type not in allowed:
            raise SettingsError(
                f"Loss type {self.resolved_loss_type!r} is not available for {self.method.upper()}; "
                f"choose one of: {', '.join(allowed)}."
            , field="label_smoothing")
        if self.beta is not None and (not is_finite_number(self.beta) or self.beta <= 0):
            raise SettingsError(f"beta must be a positive number, got {self.beta!r}.", field="beta")
        if self.beta is not None and self.method == REWARD_METHOD:
            raise SettingsError("beta does not apply to a reward model (its loss has no temperature); leave it empty.", field="beta")
        if self.center_rewards is not None:
            if not is_finite_number(self.center_rewards) or not 0 <= self.center_rewards <= 1:
                raise SettingsError(
                    f"The reward centring weight must be between 0 and 1, got {self.center_rewards!r}."
                , field="center_rewards")
            if self.method != REWARD_METHOD:
                raise SettingsError("Reward centring only applies to reward-model runs; leave it empty.", field="method")
        if not is_finite_number(self.simpo_gamma) or not 0 <= self.simpo_gamma <= 10:
            raise SettingsError(f"SimPO's target margin (gamma) must be between 0 and 10, got {self.simpo_gamma!r}.", field="simpo_gamma")
        if not is_finite_number(self.cpo_alpha) or not 0 <= self.cpo_alpha <= 10:
            raise SettingsError(f"CPO's NLL weight (alpha) must be between 0 and 10, got {self.cpo_alpha!r}.", field="cpo_alpha")
        if self.ld_alpha is not None:
            if not is_finite_number(self.ld_alpha) or not 0 <= self.ld_alpha <= 1:
                raise SettingsError(
                    f"The length-desensitisation weight (ld_alpha) must be between 0 and 1, got {self.ld_alpha!r}."
                , field="ld_alpha")
            if self.method != "dpo":
                raise SettingsError("ld_alpha (length-desensitised DPO) only applies to DPO runs; leave it empty.", field="method")

    def _check_schedule_and_sizes(self) -> None:
        """The learning rate, the run's length, batch sizes and seed, the validation split, checkpoints and warm-up."""
        if self.learning_rate is not None:
            if not is_finite_number(self.learning_rate) or self.learning_rate <= 0:
                raise SettingsError(f"Learning rate must be a positive number, got {self.learning_rate!r}.", field="learning_rate")
            if self.learning_rate > 1e-2:
                raise SettingsError(f"Learning rate {self.learning_rate} is too high to train anything (at most 0.01).", field="learning_rate")
        if self.num_train_epochs is not None and (not is_finite_number(self.num_train_epochs) or self.num_train_epochs <= 0):
            raise SettingsError(f"Number of epochs must be positive, got {self.num_train_epochs!r}.", field="num_train_epochs")
        if not is_whole_number(self.max_steps) or (self.max_steps != -1 and self.max_steps <= 0):
            raise SettingsError(
                f"Max steps must be a positive whole number, or -1 to train for whole epochs; got {self.max_steps!r}."
            , field="max_steps")
        if not is_whole_number(self.per_device_batch_size) or self.per_device_batch_size <= 0:
            raise SettingsError(f"Batch size must be a positive integer, got {self.per_device_batch_size!r}.", field="per_device_batch_size")
        if not is_whole_number(self.gradient_accumulation_steps) or self.gradient_accumulation_steps <= 0:
            raise SettingsError(
                f"Gradient accumulation steps must be a positive integer, got {self.gradient_accumulation_steps!r}."
            , field="gradient_accumulation_steps")
        if self.max_length is not None and (not is_whole_number(self.max_length) or self.max_length < 16):
            raise SettingsError(f"Max length must be a whole number of at least 16 tokens, got {self.max_length!r}.", field="max_length")
        if not is_whole_number(self.seed) or self.seed < 0:
            raise SettingsError(f"Seed must be a non-negative integer, got {self.seed!r}.", field="seed")
        self._check_upper_bounds()
        if not is_finite_number(self.validation_fraction) or not 0 <= self.validation_fraction <= 0.5:
            raise SettingsError(f"Validation fraction must be between 0 and 0.5, got {self.validation_fraction!r}.", field="validation_fraction")
        if not is_whole_number(self.save_steps) or self.save_steps <= 0:
            raise SettingsError(f"Checkpoint every (steps) must be a positive whole number, got {self.save_steps!r}.", field="save_steps")
        if not is_whole_number(self.save_total_limit) or self.save_total_limit <= 0:
            raise SettingsError(f"Checkpoints kept must be a positive whole number, got {self.save_total_limit!r}.", field="save_total_limit")
        if not is_finite_number(self.warmup_ratio) or not 0 <= self.warmup_ratio < 1:
            raise SettingsError(f"Warmup ratio must be in [0, 1), got {self.warmup_ratio!r}.", field="warmup_ratio")

    def _check_label_smoothing_and_sft(self) -> None:
        """The extra loss terms: label smoothing (and the robust loss that needs it) and DPO's SFT weight."""
        if not is_finite_number(self.label_smoothing) or not 0 <= self.label_smoothing < 0.5:
            raise SettingsError(
                f"Label smoothing (the assumed share of flipped votes) must be in [0, 0.5), got {self.label_smoothing!r}."
            , field="label_smoothing")
        if self.label_smoothing and self.method not in ("dpo", "cpo"):
            raise SettingsError(
                f"Label smoothing only applies to DPO and CPO runs; leave it at 0 for {self.method.upper()}."
            , field="label_smoothing")
        if self.resolved_loss_type == "robust" and self.label_smoothing == 0:
            raise SettingsError(
                "The robust DPO loss needs the share of flipped votes it should correct for: set label smoothing "
                "(e.g. 0.1 for one vote in ten), or use the sigmoid loss."
            , field="label_smoothing")
        if self.sft_weight is not None and (not is_finite_number(self.sft_weight) or not 0 <= self.sft_weight <= 10):
            raise SettingsError(f"The SFT weight must be between 0 and 10, got {self.sft_weight!r}.", field="sft_weight")
        if self.sft_weight and self.method != "dpo":
            raise SettingsError(
                f"The SFT weight only applies to DPO runs; leave it at 0 for {self.method.upper()}"
                + (" (CPO and ORPO have their own NLL term)." if self.method in ("cpo", "orpo") else ".")
            , field="sft_weight")

    def _check_model_loading(self) -> None:
        """How the model is loaded and spread: the processes (GPUs), 4-bit weights, sharding, the version started from."""
        if not is_whole_number(self.num_processes) or not 1 <= self.num_processes <= MAX_PROCESSES:
            raise SettingsError(
                f"The number of GPUs (processes) must be a whole number from 1 to {MAX_PROCESSES}, got {self.num_processes!r}."
            , field="num_processes")
        if self.quantization not in QUANTIZATIONS:
            raise SettingsError(
                f"Quantization {self.quantization!r} is not offered; choose one of: {', '.join(QUANTIZATIONS)}."
            , field="quantization")
        self._check_sharding()
        if self.init_adapter is not None:
            if not isinstance(self.init_adapter, str) or not self.init_adapter.strip():
                raise SettingsError("init_adapter must be the folder of a trained adapter, or empty.", field="init_adapter")
            if self.method == REWARD_METHOD:
                raise SettingsError(
                    "A reward model starts from the base model: it replaces the output layer with a score, so a "
                    "version's adapter for writing answers has nothing to continue."
                , field="method")
            if self.quantization != "none":
                raise SettingsError(
                    "A run that starts from a trained version cannot use 4-bit base weights: the version's adapter is "
                    "merged into the base first, and a 4-bit base cannot take it exactly."
                , field="quantization")

    def _check_switches(self) -> None:
        """group_by_length (DPO only) and the true/false switches."""
        if self.group_by_length and self.method in (*LOSS_SELECTED_METHODS, REWARD_METHOD):
            raise SettingsError(f"group_by_length is offered for DPO runs only; leave it off for {self.method.upper()}.", field="group_by_length")
        for name in ("precompute_ref_log_probs", "group_by_length", "keep_best"):
            if not isinstance(getattr(self, name), bool):
                raise SettingsError(f"{name} must be true or false, got {getattr(self, name)!r}.")

    def _check_kto(self) -> None:
        """KTO's class weights (KTO only) and what its KL term needs of the batch."""
        for name in ("desirable_weight", "undesirable_weight"):
            value = getattr(self, name)
            if value is None:
                continue
            if self.method != "kto":
                raise SettingsError(f"{name} only applies to KTO runs; leave it empty for {self.method.upper()}.", field="method")
            if not is_finite_number(value) or value <= 0:
                raise SettingsError(f"{name} must be a positive number, got {value!r}.")
        if self.method == "kto":
            if self.resolved_loss_type == "kto" and self.per_device_batch_size < 2:
                raise SettingsError(
                    "KTO needs a per-device batch size of at least 2 (4 or more recommended): its KL term is "
                    "estimated from mismatched prompt/completion pairs within a batch."
                , field="label_smoothing")
            if self.group_by_length and self.resolved_loss_type == "kto":
                raise SettingsError(
                    "group_by_length cannot be used with KTO: its KL term pairs each example with its neighbours "
                    "in a fixed-order batch, so the order must stay sequential."
                , field="group_by_length")

    def _check_online_rl(self) -> None:
        online = self.method in RL_METHODS
        if not online:
            for name, label in (("num_generations", "The group size"), ("max_completion_length", "The answer length"),
                                ("reward_adapter", "A reward model to train against")):
                if getattr(self, name) is not None:
                    raise SettingsError(
                        f"{label} only applies to online RL runs (GRPO, RLOO); leave it empty for "
                        f"{self.method.upper()}.", field=name,
                    )
        if not is_finite_number(self.temperature) or not 0 < self.temperature <= 2:
            raise SettingsError(f"The sampling temperature must be above 0 and at most 2, got {self.temperature!r}.",
                                field="temperature")
        if not online:
            return
        if self.num_generations is not None:
            if not is_whole_number(self.num_generations) or not 2 <= self.num_generations <= 64:
                raise SettingsError(
                    f"The group size must be a whole number from 2 to 64, got {self.num_generations!r}: each prompt's "
                    "answers are compared with their own group's mean, so a group needs at least two.",
                    field="num_generations",
                )
            if self.global_batch_size % self.num_generations:
                raise SettingsError(
                    f"A step's answers ({self.global_batch_size}: batch size x accumulation x GPUs) must be whole "
                    f"groups of {self.num_generations}; make the batch size a multiple of the group size.",
                    field="per_device_batch_size",
                )
        if self.max_completion_length is not None and (
            not is_whole_number(self.max_completion_length) or not 8 <= self.max_completion_length <= 8192
        ):
            raise SettingsError(
                f"The answer length must be a whole number of tokens from 8 to 8192, got {self.max_completion_length!r}.",
                field="max_completion_length",
            )
        if self.reward_adapter is not None and (not isinstance(self.reward_adapter, str) or not self.reward_adapter.strip()):
            raise SettingsError("reward_adapter must be the folder of a trained reward model, or empty.", field="reward_model")
        if self.sharding != "none":
            raise SettingsError(
                "Online RL runs do not shard the model (FSDP): every process writes answers with a whole copy. "
                "Choose no sharding, or 4-bit base weights if the model does not fit.", field="sharding",
            )
        if self.label_smoothing or self.group_by_length:
            raise SettingsError("Label smoothing and group_by_length are for pair methods, not online RL.", field="method")

    def _check_sharding(self) -> None:
        if self.sharding not in SHARDINGS:
            raise SettingsError(
                f"Sharding {self.sharding!r} is not offered; choose one of: {', '.join(SHARDINGS)} "
                "(none: every GPU holds the whole model; fsdp: the GPUs share it)."
            , field="sharding")
        if self.sharding == "none":
            return
        if self.num_processes < 2:
            raise SettingsError(
                "Sharding splits the model's weights across GPUs, so it needs at least 2 GPUs; with 1 GPU choose "
                "no sharding (and 4-bit base weights if the model does not fit)."
            , field="num_processes")
        if self.quantization != "none":
            # The trainer loads 4-bit weights packed in uint8 on each process's own GPU; accelerate's FSDP2 leaves
            # such weights out of the sharding, so every GPU would still hold the whole 4-bit model, as with DDP.
            raise SettingsError(
                "Sharding (FSDP) cannot be combined with 4-bit base weights (QLoRA) here: the 4-bit weights would not "
                "be sharded, so each GPU would still hold the whole model. Choose one: 4-bit base weights with no "
                "sharding, or bf16 base weights sharded across the GPUs."
            , field="quantization")

    def _check_upper_bounds(self) -> None:
        # Values past these cannot finish (or crash NumPy's seeding) and would only tie up a GPU worker.
        limits = (
            ("num_train_epochs", "Number of epochs", 1000),
            ("max_steps", "max_steps", 1_000_000),
            ("per_device_batch_size", "Batch size", 4096),
            ("gradient_accumulation_steps", "Gradient accumulation steps", 4096),
            ("max_length", "max_length", 131_072),
            ("seed", "Seed", 2**32 - 1),
            ("beta", "beta", 100),
        )
        for name, label, limit in limits:
            value = getattr(self, name)
            if value is not None and value > limit:
                raise SettingsError(f"{label} {value!r} is far too large (at most {limit}).")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TrainSettings:
        """Parse a JSON-ish dict (unknown keys rejected, `lora` nested) and validate; raises SettingsError."""
        data = dict(data or {}) if isinstance(data, dict) or data is None else data
        if isinstance(data, dict) and "lora" in data and not isinstance(data["lora"], LoraSettings):
            data["lora"] = LoraSettings.from_dict(data["lora"])
        try:
            settings = _from_dict(cls, data, what="training settings")
        except TypeError as exc:
            raise SettingsError(f"Invalid training settings: {exc}") from exc
        return settings.validate()

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form; `from_dict(to_dict())` round-trips."""
        return dataclasses.asdict(self)

    @property
    def global_batch_size(self) -> int:
        """Rows per optimizer step, over every process."""
        return self.per_device_batch_size * self.gradient_accumulation_steps * self.num_processes

    def steps_per_epoch(self, train_rows: int) -> int:
        return max(1, math.ceil(train_rows / self.global_batch_size))

    def total_steps(self, train_rows: int) -> int:
        """Optimizer steps the run will take (max_steps wins over epochs). Precondition: resolved."""
        if self.max_steps > 0:
            return self.max_steps
        return max(1, math.ceil(self.steps_per_epoch(train_rows) * (self.num_train_epochs or 1)))
