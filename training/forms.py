"""The launch form: every field a TrainSettings knob, with sensible defaults; TrainSettings validates the rest.

A few essential fields come first and the rest sit under "Advanced" on the page; the form also checks the
settings against the chosen base model (LoRA target modules, context length) and estimates the run's length.
"""
from __future__ import annotations

from typing import Any

from django import forms

from labeling.models import Project
from training.model_inspection import local_model_shape
from training.models import BaseModel, ModelVersion, TuningRun
from training.online_rl import succeeded_reward_models
from training.services import NOISE_HANDLING, DatasetPreview
from training.step_estimate import ESTIMATE_FIELDS, StepEstimate, step_estimate_for
from training.trainer.auto_settings import (
    AUTO_CENTER_REWARDS,
    AUTO_MAX_EPOCHS,
    AUTO_MAX_LENGTH,
    AUTO_MIN_EPOCHS_CPU_DPO,
    AUTO_RL_COMPLETION_TOKENS,
    AUTO_RL_GROUP_SIZE,
    AUTO_RL_STEPS,
    AUTO_SFT_WEIGHT,
    AUTO_TARGET_STEPS,
    AUTO_TARGET_STEPS_CPU,
)
from training.trainer.config import LoraSettings, SettingsError, TrainSettings
from training.trainer.settings_choices import (
    CPO_LOSS_TYPES,
    DPO_LOSS_TYPES,
    FORBIDDEN_LORA_TARGETS,
    KTO_LOSS_TYPES,
    MAX_PROCESSES,
    RL_METHODS,
    SHARDINGS,
)

_DEFAULTS = TrainSettings()
_LORA = LoraSettings()

_SHARDING_LABELS = {
    "none": "none: a whole copy on every GPU (data parallel)",
    "fsdp": "fsdp: the GPUs share the weights (FSDP full shard, like ZeRO-3)",
}

# Shown first: what a run is, on which model, and for how long. Everything else has a default that suits a
# small model and sits under "Advanced".
ESSENTIAL_FIELDS = ("name", "method", "base_model", "start_from", "num_train_epochs", "max_steps", "learning_rate")


class RunLaunchForm(forms.Form):
    name = forms.CharField(max_length=200, required=False, help_text="Optional; a dated name is made for you.")
    method = forms.ChoiceField(choices=TuningRun.Method.choices, initial="dpo")
    base_model = forms.IntegerField(widget=forms.Select, help_text="From the model registry.")
    loss_type = forms.ChoiceField(
        choices=[("", "default (sigmoid for DPO and CPO, kto for KTO)")]
        + [(t, t) for t in dict.fromkeys(DPO_LOSS_TYPES + KTO_LOSS_TYPES + CPO_LOSS_TYPES)],
        required=False,
        help_text="DPO variants: sigmoid is the original DPO, ipo is IPO, robust corrects for flipped votes, hinge and "
        "apo_zero / apo_down are the SLiC and APO losses. CPO takes sigmoid, hinge or ipo; SimPO and ORPO have one "
        "loss each, so leave this empty for them.",
    )
    beta = forms.FloatField(
        required=False,
        help_text="Leave empty for a reward model. Empty: 0.1, or 2.0 for SimPO, 0.05 for GRPO and RLOO. DPO, KTO, CPO: how far the tuned model may move from the base model "
        "(higher keeps it closer). GRPO, RLOO: the KL coefficient, what each step pays for drifting from the base; "
        "it keeps the policy from chasing what the reward model over-rates (TRL's GRPO default of 0 turns it off). SimPO: the scale of its length-normalised reward (its paper uses 2 to 2.5). ORPO: "
        "the weight of the odds-ratio term against the chosen answers' likelihood (lambda).",
    )
    learning_rate = forms.FloatField(
        required=False,
        help_text="Empty: chosen for the adapter: 5e-4 at LoRA rank 16 (2e-4 for online RL), scaled by √(16 / rank). A LoRA adapter starts at "
        "zero and needs a far larger rate than full fine-tuning; TRL's default of 1e-6 barely moves it.",
    )
    num_train_epochs = forms.FloatField(
        required=False,
        label="Epochs",
        help_text=f"Empty: the whole number of passes over the data nearest to {AUTO_TARGET_STEPS} optimizer steps "
        f"(1 to {AUTO_MAX_EPOCHS}; on a CPU worker nearest to {AUTO_TARGET_STEPS_CPU}, at least "
        f"{AUTO_MIN_EPOCHS_CPU_DPO} for DPO); small sets need several passes to move an adapter. The checkpoint with "
        "the best validation score is kept.",
    )
    max_steps = forms.IntegerField(
        initial=_DEFAULTS.max_steps,
        help_text=f"-1 trains whole epochs; for GRPO and RLOO, {AUTO_RL_STEPS['cpu']} steps on a CPU worker and "
        f"{AUTO_RL_STEPS['cuda']} on a GPU.",
    )
    per_device_batch_size = forms.IntegerField(
        initial=_DEFAULTS.per_device_batch_size, label="Batch size",
        help_text="Examples per step on each GPU. KTO needs at least 2 (4 or more recommended).",
    )
    gradient_accumulation_steps = forms.IntegerField(
        initial=_DEFAULTS.gradient_accumulation_steps,
        help_text="Batches added up before each optimizer step: the effective batch is the batch size times this.",
    )
    max_length = forms.IntegerField(
        required=False,
        help_text=f"Tokens, prompt and answer together; longer rows keep their beginning. Empty: "
        f"{AUTO_MAX_LENGTH['cuda']} on a GPU worker, {AUTO_MAX_LENGTH['cpu']} on a CPU worker, where a step's cost "
        "grows faster than its tokens.",
    )
    validation_fraction = forms.FloatField(
        initial=_DEFAULTS.validation_fraction,
        help_text=(
            "Share of the rows held back to score checkpoints and pick the one kept (at most 0.5); 0 trains on every "
            "row. A fifth by default: with a hundred-odd pairs a tenth is a dozen, too few to tell checkpoints apart."
        ),
    )
    seed = forms.IntegerField(
        initial=_DEFAULTS.seed, help_text="Fixes the validation split and the shuffling, so a run can be repeated."
    )
    lora_r = forms.IntegerField(
        initial=_LORA.r, label="LoRA r", help_text="The adapter's rank: more directions to learn in, more parameters."
    )
    lora_alpha = forms.IntegerField(
        initial=_LORA.alpha, label="LoRA alpha", help_text="Scales the adapter's update by alpha / r; twice r is usual."
    )
    lora_dropout = forms.FloatField(
        initial=_LORA.dropout, label="LoRA dropout", help_text="Dropout on the adapter's input while training, in [0, 1)."
    )
    lora_target_modules = forms.CharField(
        initial=",".join(_LORA.target_modules), label="LoRA target modules",
        help_text="Comma-separated. Names of the base model's linear layers, checked against the model before launch.",
    )
    desirable_weight = forms.FloatField(required=False, help_text="KTO only; empty balances from the data.")
    undesirable_weight = forms.FloatField(required=False, help_text="KTO only; empty balances from the data.")
    precompute_ref_log_probs = forms.BooleanField(
        required=False, initial=True, label="Precompute reference log-probs",
        help_text="Runs the reference model over the data once before training instead of at every step: about a "
        "third less compute per step for a short start (on by default).",
    )
    group_by_length = forms.BooleanField(
        required=False, label="Group batches by length (DPO)", help_text="Fewer padding tokens, so faster steps."
    )
    label_smoothing = forms.FloatField(
        required=False, initial=_DEFAULTS.label_smoothing, min_value=0, max_value=0.49,
        help_text="DPO: the share of votes you expect to be flipped. With the robust loss it corrects for that much noise.",
    )
    sft_weight = forms.FloatField(
        required=False, min_value=0, max_value=10, label="SFT weight (DPO)",
        help_text=f"Empty: {AUTO_SFT_WEIGHT:g} for DPO. Adds this much of the chosen answers' own likelihood to the DPO "
        "loss (RPO). DPO alone can push down chosen and rejected answers together, and a small model then drifts "
        "into loops and fragments while its preference accuracy still rises; 0 is plain DPO.",
    )
    num_processes = forms.IntegerField(
        required=False, initial=_DEFAULTS.num_processes, min_value=1, max_value=MAX_PROCESSES, label="GPUs",
        help_text="Data parallel (DDP): each GPU holds the model and trains on its own batch, so one optimizer step "
        "takes batch size × accumulation × GPUs rows. A run on N > 1 GPUs waits for a worker that listens on queue "
        "gpuN (see the README); on a CPU worker N processes share the CPU.",
    )
    sharding = forms.ChoiceField(
        choices=[(value, _SHARDING_LABELS[value]) for value in SHARDINGS],
        initial=_DEFAULTS.sharding, required=False, label="Sharding",
        help_text="For a model whose bf16 weights do not fit one GPU: with fsdp each of the N GPUs holds 1/N of the "
        "weights and gathers one layer at a time while it runs, so the weights per GPU shrink N-fold (see the "
        "estimate below). Needs 2 or more CUDA GPUs and bf16 base weights (not 4-bit); when the model fits one GPU, "
        "none is faster. The steps and batch are the same either way.",
    )
    quantization = forms.ChoiceField(
        choices=[("none", "none (bf16 base weights)"), ("4bit", "4-bit NF4 base weights (QLoRA)")],
        initial=_DEFAULTS.quantization, required=False, label="Base weights",
        help_text="QLoRA keeps the frozen base model in 4-bit NF4 with double quantisation and computes in bf16: "
        "its linear layers take about a quarter of the memory, so a 7B model's weights need about 4 GiB instead of "
        "13 GiB. Needs a CUDA GPU with bitsandbytes; a CPU worker refuses it.",
    )
    simpo_gamma = forms.FloatField(
        required=False, initial=_DEFAULTS.simpo_gamma, min_value=0, max_value=10, label="SimPO target margin (gamma)",
        help_text="SimPO only: the reward margin it asks between chosen and rejected answers; its paper keeps gamma "
        "about half of beta.",
    )
    cpo_alpha = forms.FloatField(
        required=False, initial=_DEFAULTS.cpo_alpha, min_value=0, max_value=10, label="CPO NLL weight (alpha)",
        help_text="CPO only: how much of the chosen answers' own likelihood is trained beside the preference.",
    )
    ld_alpha = forms.FloatField(
        required=False, min_value=0, max_value=1, label="Length desensitisation (DPO)",
        help_text="DPO only, empty for plain DPO: LD-DPO weighs the tokens past the shorter answer's length by this "
        "(0 to 1), so a preference is not learned as a preference for length (Liu et al. 2024). 1 is plain DPO.",
    )
    center_rewards = forms.FloatField(
        required=False, min_value=0, max_value=1, label="Reward centring (reward model)",
        help_text=f"Reward model only. Empty: {AUTO_CENTER_REWARDS:g}, TRL's recommendation. A penalty on the squared "
        "mean score that keeps scores near zero: a pair loss only fixes differences, and without it scores drift, so "
        "the distributions on the review page would not line up between reward models.",
    )
    reward_model = forms.TypedChoiceField(
        coerce=int, empty_value=None, required=False, label="Reward model (GRPO, RLOO)",
        help_text="What online RL raises: the project's newest reward model by default. It must rank its held-out pairs "
        "clearly better than a coin flip (the lower end of its 95% interval above 50%), or the run is refused.",
    )
    num_generations = forms.IntegerField(
        required=False, min_value=2, max_value=64, label="Group size (GRPO, RLOO)",
        help_text=f"Empty: {AUTO_RL_GROUP_SIZE}. Answers written per prompt at each step; each is judged against its "
        "group's mean score. The batch size counts answers, so it must be a multiple of this.",
    )
    max_completion_length = forms.IntegerField(
        required=False, min_value=8, max_value=8192, label="Answer length (GRPO, RLOO)",
        help_text=f"Empty: {AUTO_RL_COMPLETION_TOKENS['cpu']} tokens on a CPU worker, {AUTO_RL_COMPLETION_TOKENS['cuda']} "
        "on a GPU. Answers past it are cut off; the run page charts the share cut off.",
    )
    temperature = forms.FloatField(
        required=False, initial=_DEFAULTS.temperature, min_value=0.01, max_value=2, label="Sampling temperature (GRPO, RLOO)",
        help_text="Empty: 1. How varied a group's answers are: the update learns from their differences, so keep it "
        "near 1.",
    )
    noise_handling = forms.ChoiceField(
        choices=list(NOISE_HANDLING.items()), initial="none", required=False, label="Annotator noise",
        help_text="When tasks have two or more votes, split pairs can be dropped and the robust loss set from the flip "
        "rate estimated from how often annotators agree. What was done is recorded in the run's lineage.",
    )
    start_from = forms.TypedChoiceField(
        coerce=int, empty_value=None, required=False, label="Start from",
        help_text="The base model, or a version trained in this project: its adapter is merged in first, so this run "
        "learns on top of it and is measured against it (SFT on the chosen answers, then DPO on the pairs). The new "
        "version holds both updates, and its lineage names the version it started from.",
    )
    include_review = forms.BooleanField(
        required=False, initial=True, label="Include review (blind battle) votes on train prompts",
        help_text="Iterative DPO: battles between a tuned model's answers to train prompts become new pairs.",
    )
    keep_cut_off_chosen = forms.BooleanField(
        required=False, initial=False, label="Keep pairs whose chosen answer was cut off",
        help_text="Off by default: a chosen answer that hit the token limit teaches the model to stop mid-sentence, and "
        "between two cut-off answers the shorter one is often only the denser one. Turn on when most answers are cut "
        "off (a low generation token limit) and the pairs left would be too few. An answer an annotator edited is "
        "always kept. Pairs only: thumbs (KTO) are not affected.",
    )
    include_heldout = forms.BooleanField(
        required=False, initial=False, label="Also train on votes about held-out prompts",
        help_text="Off by default: held-out votes measure the model. A version trained on them is flagged, and its "
        "held-out win rate is marked as contaminated.",
    )

    def __init__(self, *args: Any, project: Project | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["base_model"].widget.choices = [
            (m.pk, m.name) for m in BaseModel.objects.filter(status=BaseModel.Status.READY)
        ]
        self.fields["start_from"].choices = [("", "the base model")] + [
            (version.pk, f"{version.name} ({version.run.method.upper()})")
            for version in ModelVersion.objects.filter(run__project=project, run__status=TuningRun.Status.SUCCEEDED)
            .select_related("run").order_by("-run__finished_at")
        ] if project is not None else [("", "the base model")]
        self.fields["reward_model"].choices = [("", "the newest reward model")] + [
            (run.pk, f"{run.name} ({_held_out_text(run)})")
            for run in (succeeded_reward_models(project=project) if project is not None else [])
        ]
        for name, field in self.fields.items():
            field.default_text = _default_text(field, self.get_initial_for_field(field, name))

    def essential_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in ESSENTIAL_FIELDS]

    def advanced_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.fields if name not in ESSENTIAL_FIELDS]

    def advanced_has_errors(self) -> bool:
        """True when a field under "Advanced" has an error, so the page opens that section."""
        return self.is_bound and any(name in self.errors for name in self.fields if name not in ESSENTIAL_FIELDS)

    def clean_num_processes(self) -> int:
        return self.cleaned_data.get("num_processes") or 1

    def clean_quantization(self) -> str:
        return self.cleaned_data.get("quantization") or "none"

    def clean_sharding(self) -> str:
        return self.cleaned_data.get("sharding") or "none"

    def memory_note(self) -> str:
        """The chosen base model's weights per GPU in bf16 and in 4-bit, and sharded over the chosen GPUs when the
        form asks for sharding, for the page; empty when unknown."""
        base_model = BaseModel.objects.filter(pk=self.base_model_value()).first()
        shape = local_model_shape(base_model.path) if base_model is not None else None
        if shape is None or not shape.parameters:
            return ""
        gpus = self._value("num_processes") or 1
        sharding = self._value("sharding") or "none"
        if sharding == "fsdp" and gpus > 1:
            split = (
                f"sharded (FSDP) over {gpus} GPUs they take {_gib(shape.weight_gib_per_gpu(gpus=gpus, sharding=sharding))} "
                f"per GPU in bf16 (a whole copy is {_gib(shape.weight_gib('none'))}), plus the one layer being gathered."
            )
        else:
            split = (
                f"their bf16 weights take {_gib(shape.weight_gib('none'))} per GPU, {_gib(shape.weight_gib('4bit'))} in "
                "4-bit (QLoRA); sharding (fsdp) over N GPUs divides the bf16 figure by N."
            )
        return (
            f"{base_model.name}: {shape.parameters / 1e6:,.0f}M parameters; {split} "
            "Activations, the adapter and its optimizer state come on top."
        )

    def clean_noise_handling(self) -> str:
        return self.cleaned_data.get("noise_handling") or "none"

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if not self.errors:
            self._check_against_base_model(cleaned)
        return cleaned

    def _check_against_base_model(self, cleaned: dict[str, Any]) -> None:
        # Only settings that are otherwise valid are checked against the model: the launch service words the
        # generic refusals (e.g. "LoRA cannot target 'embed_tokens'") better than "no such module" would.
        try:
            settings = TrainSettings.from_dict({**self.settings_data(), "method": cleaned["method"]})
        except SettingsError:
            return
        base_model = BaseModel.objects.filter(pk=cleaned["base_model"]).first()
        shape = local_model_shape(base_model.path) if base_model is not None else None
        if shape is None:
            return
        valid = sorted(shape.linear_names - FORBIDDEN_LORA_TARGETS)
        unknown = [name for name in settings.lora.target_modules if name not in shape.linear_names]
        if unknown:
            self.add_error(
                "lora_target_modules",
                f"{base_model.name} has no linear layer named {', '.join(unknown)}. Its linear layers are: "
                f"{', '.join(valid)}.",
            )
        if shape.max_positions is not None and settings.max_length is not None and settings.max_length > shape.max_positions:
            self.add_error(
                "max_length",
                f"{base_model.name} reads at most {shape.max_positions} tokens at once (its max_position_embeddings); "
                f"{settings.max_length} is more than that.",
            )

    def data_choices(self) -> dict[str, bool]:
        """Which votes the run would train on (include_review, include_heldout, keep_cut_off_chosen), for the dataset
        preview."""
        return {name: bool(self._value(name)) for name in ("include_review", "include_heldout", "keep_cut_off_chosen")}

    def step_estimate(self, previews: dict[str, DatasetPreview]) -> StepEstimate | None:
        """Training rows and optimizer steps for the form's values (its defaults before a submit), using the
        preview of the chosen method; None while a value it needs is missing or invalid."""
        if self.is_bound and any(name in self.errors for name in ESTIMATE_FIELDS):
            return None
        return step_estimate_for(
            {name: self._value(name) for name in ESTIMATE_FIELDS}, previews,
            drops_split_pairs=self._value("noise_handling") in ("drop_split", "both"),
        )

    def base_model_value(self) -> int | None:
        """The chosen base model's id (the first in the menu before a submit), or None."""
        value = self._value("base_model")
        if value is None and not self.is_bound:
            choices = self.fields["base_model"].widget.choices
            value = choices[0][0] if choices else None
        try:
            return int(value) if value is not None else None
        except (TypeError, ValueError):
            return None

    def _value(self, name: str) -> Any:
        """The cleaned value of a submitted form (None where the field has an error), or the initial value of a
        blank one."""
        if not self.is_bound:
            return self.get_initial_for_field(self.fields[name], name)
        return None if name in self.errors else self.cleaned_data.get(name)

    def settings_data(self) -> dict[str, Any]:
        """The TrainSettings dict for TrainSettings.from_dict (the method is added by the service)."""
        data = self.cleaned_data
        settings: dict[str, Any] = {
            name: data[name]
            for name in (
                "beta", "learning_rate", "num_train_epochs", "max_steps", "per_device_batch_size",
                "gradient_accumulation_steps", "max_length", "validation_fraction", "seed",
                "desirable_weight", "undesirable_weight", "precompute_ref_log_probs", "group_by_length",
                "label_smoothing", "sft_weight", "num_processes", "quantization", "sharding", "ld_alpha",
            )
        }
        for name in ("simpo_gamma", "cpo_alpha", "center_rewards"):
            if data.get(name) is not None:
                settings[name] = data[name]
        if data.get("method") in RL_METHODS:
            settings["temperature"] = data["temperature"] if data.get("temperature") is not None else 1.0
            for name in ("num_generations", "max_completion_length"):
                if data.get(name) is not None:
                    settings[name] = data[name]
        settings["loss_type"] = data["loss_type"] or None
        settings["label_smoothing"] = data["label_smoothing"] or 0.0
        settings["lora"] = {
            "r": data["lora_r"],
            "alpha": data["lora_alpha"],
            "dropout": data["lora_dropout"],
            "target_modules": [m.strip() for m in data["lora_target_modules"].split(",") if m.strip()],
        }
        return settings


def _held_out_text(run: TuningRun) -> str:
    held = (run.outcome or {}).get("reward_model") or {}
    if held.get("accuracy") is None:
        return "no held-out accuracy"
    return f"{held['accuracy']:.0%} of {held.get('pairs')} held-out pairs"


def _gib(value: float) -> str:
    return f"{value:.2f} GiB" if value < 10 else f"{value:.0f} GiB"


def _default_text(field: forms.Field, initial: Any) -> str:
    """The default in words, shown under a field; empty where there is none (its help text says what empty does)."""
    if isinstance(field, forms.BooleanField):
        return "on" if initial else "off"
    if initial in (None, ""):
        return ""
    if isinstance(field, forms.ChoiceField):
        return str(dict(field.choices).get(initial, initial))
    return str(initial)


class BaseModelRegisterForm(forms.Form):
    source = forms.CharField(
        max_length=500, label="Model folder or Hugging Face id",
        help_text="An absolute path to a model folder on the workers (checked now), or an id such as "
        "HuggingFaceTB/SmolLM2-360M-Instruct, which a worker downloads and then checks.",
    )
    name = forms.CharField(max_length=200, required=False, help_text="Optional; the folder or repository name.")
