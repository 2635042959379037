"""The launch form: every field a TrainSettings knob, with sensible defaults; TrainSettings validates the rest."""
from __future__ import annotations

from typing import Any

from django import forms

from training.models import BaseModel, TuningRun
from training.trainer.config import DPO_LOSS_TYPES, KTO_LOSS_TYPES, LoraSettings, TrainSettings

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
    learning_rate = forms.FloatField(initial=_DEFAULTS.learning_rate)
    num_train_epochs = forms.FloatField(initial=_DEFAULTS.num_train_epochs)
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
    include_review = forms.BooleanField(
        required=False, initial=True, label="Include review (blind battle) votes", help_text="Iterative DPO."
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
            )
        }
        settings["loss_type"] = data["loss_type"] or None
        settings["lora"] = {
            "r": data["lora_r"],
            "alpha": data["lora_alpha"],
            "dropout": data["lora_dropout"],
            "target_modules": [m.strip() for m in data["lora_target_modules"].split(",") if m.strip()],
        }
        return settings
