"""What writes text: the base models runs start from, and the model versions (a base model with an optional
LoRA adapter) that generate completions and get judged."""
from __future__ import annotations

from django.db import models


class BaseModel(models.Model):
    """A model runs start from. Registered from the models page (checked and measured there) or in the admin."""

    class Status(models.TextChoices):
        READY = "ready", "Ready"
        DOWNLOADING = "downloading", "Downloading"
        FAILED = "failed", "Failed"

    name = models.CharField(max_length=200, unique=True)
    path = models.CharField(max_length=500, help_text="A local folder or a Hugging Face model id.")
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    hub_id = models.CharField(max_length=200, blank=True, help_text="The Hugging Face id it was downloaded from.")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.READY)
    error = models.TextField(blank=True)
    architecture = models.CharField(max_length=100, blank=True)
    parameters = models.BigIntegerField(null=True, blank=True)
    quantizable_parameters = models.BigIntegerField(null=True, blank=True)
    context_length = models.PositiveIntegerField(null=True, blank=True)
    linear_layers = models.JSONField(default=list, blank=True, help_text="Names LoRA target modules can use.")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ModelVersion(models.Model):
    """What generated a completion: a base model alone, or a base model with a trained adapter."""

    name = models.CharField(max_length=200, unique=True)
    base_model = models.ForeignKey(BaseModel, on_delete=models.PROTECT, related_name="versions")
    adapter_path = models.CharField(max_length=500, blank=True, help_text="Empty for the base model itself.")
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children",
        help_text="The version its run started from (SFT, then DPO); its adapter already holds the parent's update.",
    )
    saw_heldout = models.BooleanField(
        default=False,
        help_text="Trained on votes about held-out prompts (an admin opted in): its held-out win rate is contaminated.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name
