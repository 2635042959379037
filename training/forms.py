"""The launch form: every field a TrainSettings knob, with sensible defaults; TrainSettings validates the rest."""
from __future__ import annotations

from typing import Any

from django import forms

from training.models import BaseModel, TuningRun
from training.services import NOISE_HANDLING
from training.trainer.config import (
    AUTO_MAX_EPOCHS,
    AUTO_TARGET_STEPS,
    DPO_LOSS_TYPES,
    KTO_LOSS_TYPES,
    LoraSettings,
    TrainSettings,
)

_DEFAULTS = TrainSettings()
_LORA = LoraSettings()


class RunLaunchForm(forms.Form):
    name = forms.CharField(max_length=200, required=False, help_text="Optional; a dated name is made for you.")
    method = forms.ChoiceField(choices=TuningRun.Method.choices, initial="dpo")
    base_model = forms.IntegerField(widget=forms.Select, help_text="From the model registry.")
    loss_type = forms.ChoiceField(
        choices=[("", "default (sigmoid for DPO, kto for KTO)")] + [(t, t) for t in DPO_LOSS_TYPES + KTO_LOSS_TYPES],
        required=False,
        help_text="DPO variants: sigmoid is the original DPO, ipo is IPO.",
    )
    beta = forms.FloatField(initial=_DEFAULTS.beta)
    learning_rate = forms.FloatField(
        required=False,
        help_text="Empty: chosen for the adapter: 5e-4 at LoRA rank 16, scaled by √(16 / rank). A LoRA adapter starts at "
        "zero and needs a far larger rate than full fine-tuning; TRL's default of 1e-6 barely moves it.",
    )
    num_train_epochs = forms.FloatField(
        required=False,
        label="Epochs",
        help_text=f"Empty: enough passes over the data for about {AUTO_TARGET_STEPS} optimizer steps (at most "
        f"{AUTO_MAX_EPOCHS}); small sets need several passes to move an adapter. The checkpoint with the best "
        "validation score is kept, so an extra pass costs time, not quality.",
    )
    max_steps = forms.IntegerField(initial=_DEFAULTS.max_steps, help_text="-1 trains whole epochs.")
    per_device_batch_size = forms.IntegerField(initial=_DEFAULTS.per_device_batch_size, label="Batch size")
    gradient_accumulation_steps = forms.IntegerField(initial=_DEFAULTS.gradient_accumulation_steps)
    max_length = forms.IntegerField(initial=_DEFAULTS.max_length, help_text="Tokens, prompt and answer together.")
    validation_fraction = forms.FloatField(initial=_DEFAULTS.validation_fraction)
    seed = forms.IntegerField(initial=_DEFAULTS.seed)
    lora_r = forms.IntegerField(initial=_LORA.r, label="LoRA r")
    lora_alpha = forms.IntegerField(initial=_LORA.alpha, label="LoRA alpha")
    lora_dropout = forms.FloatField(initial=_LORA.dropout, label="LoRA dropout")
    lora_target_modules = forms.CharField(
        initial=",".join(_LORA.target_modules), label="LoRA target modules", help_text="Comma-separated."
    )
    desirable_weight = forms.FloatField(required=False, help_text="KTO only; empty balances from the data.")
    undesirable_weight = forms.FloatField(required=False, help_text="KTO only; empty balances from the data.")
    precompute_ref_log_probs = forms.BooleanField(required=False, label="Precompute reference log-probs")
    group_by_length = forms.BooleanField(required=False, label="Group batches by length (DPO)")
    label_smoothing = forms.FloatField(
        required=False, initial=_DEFAULTS.label_smoothing, min_value=0, max_value=0.49,
        help_text="DPO: the share of votes you expect to be flipped. With the robust loss it corrects for that much noise.",
    )
    noise_handling = forms.ChoiceField(
        choices=list(NOISE_HANDLING.items()), initial="none", label="Annotator noise",
        help_text="When tasks have two or more votes, split pairs can be dropped and the robust loss set from the flip "
        "rate estimated from how often annotators agree. What was done is recorded in the run's lineage.",
    )
    include_review = forms.BooleanField(
        required=False, initial=True, label="Include review (blind battle) votes on train prompts",
        help_text="Iterative DPO: battles between a tuned model's answers to train prompts become new pairs.",
    )
    include_heldout = forms.BooleanField(
        required=False, initial=False, label="Also train on votes about held-out prompts",
        help_text="Off by default: held-out votes measure the model. A version trained on them is flagged, and its "
        "held-out win rate is marked as contaminated.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["base_model"].widget.choices = [(m.pk, m.name) for m in BaseModel.objects.all()]

    def settings_data(self) -> dict[str, Any]:
        """The TrainSettings dict for TrainSettings.from_dict (the method is added by the service)."""
        data = self.cleaned_data
        settings: dict[str, Any] = {
            name: data[name]
            for name in (
                "beta", "learning_rate", "num_train_epochs", "max_steps", "per_device_batch_size",
                "gradient_accumulation_steps", "max_length", "validation_fraction", "seed",
                "desirable_weight", "undesirable_weight", "precompute_ref_log_probs", "group_by_length",
                "label_smoothing",
            )
        }
        settings["loss_type"] = data["loss_type"] or None
        settings["label_smoothing"] = data["label_smoothing"] or 0.0
        settings["lora"] = {
            "r": data["lora_r"],
            "alpha": data["lora_alpha"],
            "dropout": data["lora_dropout"],
            "target_modules": [m.strip() for m in data["lora_target_modules"].split(",") if m.strip()],
        }
        return settings
