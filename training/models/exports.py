"""Exports of a model version as a zip, built by a gpu worker."""
from __future__ import annotations

from django.db import models

from training.models.jobs import WorkerJob
from training.models.versions import ModelVersion


class VersionExport(WorkerJob):
    """One export of a model version as a zip, built by a gpu worker (never in a web request): its adapter as
    trained, or the adapter merged into the base weights as a standalone safetensors model. Every export of one
    version and kind builds the same file (``training.exports.version_export_zip_path``); at most one is queued or
    running at a time."""

    class Kind(models.TextChoices):
        ADAPTER = "adapter", "The adapter"
        MERGED = "merged", "Merged into the base model"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Ready"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="exports")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    stage = models.CharField(max_length=200, blank=True, help_text="What the worker is doing now, for the page.")
    cancel_requested = models.BooleanField(default=False)
    bytes_done = models.BigIntegerField(default=0, help_text="Bytes written into the zip so far.")
    bytes_total = models.BigIntegerField(default=0, help_text="Bytes the zip will hold (0 before the zip stage).")
    bytes_per_second = models.FloatField(null=True, blank=True, help_text="The zip stage's rate so far, on the worker's clock.")
    created_by = models.ForeignKey("auth.User", null=True, on_delete=models.SET_NULL, related_name="+")

    class Meta(WorkerJob.Meta):
        constraints = [
            *WorkerJob.Meta.constraints,
            models.CheckConstraint(condition=models.Q(kind__in=["adapter", "merged"]), name="versionexport_kind_valid"),
            # Two builds of one zip at once would only race each other: a second request finds the first.
            models.UniqueConstraint(
                fields=["version", "kind"], condition=models.Q(status__in=["queued", "running"]),
                name="versionexport_one_active_per_kind",
            ),
        ]

    def __str__(self) -> str:
        return f"Export {self.pk} of {self.version} ({self.kind}, {self.status})"

    @property
    def eta_seconds(self) -> float | None:
        """Seconds the zip stage has left at its rate so far; None before a rate is known."""
        if not self.bytes_per_second or not self.bytes_total:
            return None
        return max(0.0, (self.bytes_total - self.bytes_done) / self.bytes_per_second)

    @property
    def percent(self) -> int:
        return round(100 * self.bytes_done / self.bytes_total) if self.bytes_total else 0

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE
