"""What every job a worker takes from a queue records of its life, in one place: a tuning run, a generation job,
an export and a playground question are each queued, claimed by a worker, kept alive by its heartbeat (the
reaper fails one whose heartbeat went stale) and end succeeded, failed or cancelled."""
from __future__ import annotations

from django.db import models

# The statuses every job moves through; each model names them in its own words (an export "Ready", a playground
# question "Writing") in its Status choices.
STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"]


class WorkerJob(models.Model):
    worker = models.CharField(max_length=200, blank=True, help_text="The worker that claimed it (name@host).")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Touched while it runs; a stale one means its worker is gone."
    )
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(status__in=STATUSES), name="%(class)s_status_valid"),
        ]
