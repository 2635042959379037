"""Base models and the model versions (base + optional LoRA adapter) that write and get judged."""
from __future__ import annotations

from django.db import models


class BaseModel(models.Model):
    name = models.CharField(max_length=200, unique=True)
    path = models.CharField(max_length=500, help_text="A local folder or a Hugging Face model id.")
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ModelVersion(models.Model):
    """What generated a completion: a base model alone, or a base model with a trained adapter."""

    name = models.CharField(max_length=200, unique=True)
    base_model = models.ForeignKey(BaseModel, on_delete=models.PROTECT, related_name="versions")
    adapter_path = models.CharField(max_length=500, blank=True, help_text="Empty for the base model itself.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name
