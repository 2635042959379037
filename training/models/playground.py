"""The playground: a question asked of several model versions side by side, and their answers."""
from __future__ import annotations

from django.db import models

from training.models.jobs import WorkerJob
from training.models.versions import ModelVersion


class PlaygroundRequest(WorkerJob):
    """One question asked on a project's playground: a prompt, the versions to answer it side by side, and the
    sampling settings; a gpu worker writes the answers into PlaygroundAnswer rows as they are generated."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Writing"
        SUCCEEDED = "succeeded", "Done"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Stopped"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    project = models.ForeignKey("labeling.Project", on_delete=models.CASCADE, related_name="playground_requests")
    created_by = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="+")
    messages = models.JSONField(help_text="The chat messages asked: an optional system message, then the user's.")
    settings = models.JSONField(help_text="GenerationSettings as a dict (one sample).")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    engine = models.CharField(max_length=64, blank=True)
    kept_prompt = models.ForeignKey(
        "labeling.Prompt", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The project prompt this question became (Keep this prompt, or Send to battle).",
    )

    def __str__(self) -> str:
        return f"Playground question {self.pk}: {self.prompt_text[:60]}"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def prompt_text(self) -> str:
        return next((str(m.get("content", "")) for m in self.messages if m.get("role") == "user"), "")

    @property
    def system_text(self) -> str:
        return next((str(m.get("content", "")) for m in self.messages if m.get("role") == "system"), "")


class PlaygroundAnswer(models.Model):
    """One version's answer to a playground question, written while it is generated (``text`` grows)."""

    request = models.ForeignKey(PlaygroundRequest, on_delete=models.CASCADE, related_name="answers")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="+")
    position = models.PositiveSmallIntegerField(help_text="Its column, left to right.")
    text = models.TextField(blank=True)
    finish_reason = models.CharField(max_length=16, blank=True, help_text="stop, length, or empty while writing.")
    tokens = models.PositiveIntegerField(default=0)
    seconds = models.FloatField(default=0.0, help_text="Time spent writing it, model loading excluded.")
    best_of = models.PositiveSmallIntegerField(
        default=1, help_text="Best of N: N samples (seeds seed … seed+N−1) written, the reward model's favourite shown."
    )
    samples = models.JSONField(
        default=list, blank=True, help_text="Best of N: every sample as {text, finish_reason, score}, in seed order.",
    )

    class Meta:
        ordering = ["position"]
        constraints = [
            models.UniqueConstraint(fields=["request", "position"], name="playgroundanswer_one_per_column"),
        ]

    def __str__(self) -> str:
        return f"{self.model_version}: {self.text[:60]}"

    @property
    def done(self) -> bool:
        return bool(self.finish_reason)

    @property
    def is_truncated(self) -> bool:
        return self.finish_reason == "length"

    @property
    def tokens_per_second(self) -> float | None:
        return self.tokens / self.seconds if self.seconds > 0 and self.tokens else None

    @property
    def best_sample(self) -> int | None:
        """Best of N: which sample (0-based) is shown, once scored."""
        scores = [sample.get("score") for sample in self.samples]
        if self.best_of <= 1 or not scores or None in scores:
            return None
        return max(range(len(scores)), key=scores.__getitem__)
