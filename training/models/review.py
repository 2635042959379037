"""Review (issue #4): generation jobs that write candidates and review outputs, the reward-model scores of
completions, and the blind battles between two model versions."""
from __future__ import annotations

from django.db import models
from django.utils import timezone

from training.models.jobs import WorkerJob
from training.models.runs import TuningRun
from training.models.versions import ModelVersion


class GenerationJob(WorkerJob):
    """Completions for a set of prompts from one or more model versions, made by a gpu worker.

    ``candidates`` jobs turn each prompt's new completions into labeling pair tasks; ``review`` jobs make
    the base and tuned outputs that the side-by-side page shows and blind battles use.
    """

    class Purpose(models.TextChoices):
        CANDIDATES = "candidates", "Candidates for labeling"
        REVIEW = "review", "Review outputs"
        SCORES = "scores", "Reward-model scores"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    project = models.ForeignKey("labeling.Project", on_delete=models.CASCADE, related_name="generation_jobs")
    model_versions = models.ManyToManyField(ModelVersion, related_name="generation_jobs")
    run = models.ForeignKey(
        TuningRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="generation_jobs",
        help_text="The run whose review this job serves, if any.",
    )
    prompt_ids = models.JSONField(help_text="The prompts to complete, fixed when the job is created.")
    settings = models.JSONField(help_text="GenerationSettings as a dict (training.trainer.generation_settings).")
    purpose = models.CharField(max_length=16, choices=Purpose.choices, default=Purpose.REVIEW)
    create_review_tasks = models.BooleanField(
        default=False,
        help_text="Review jobs: when done, blind battles (compare projects) or held-out thumbs tasks (rate projects).",
    )
    pairing = models.CharField(
        max_length=24,
        default="all",
        help_text="Candidate jobs: how each prompt's candidates are paired (see training.review.generation.PAIRINGS).",
    )
    cut_off = models.CharField(
        max_length=24,
        default="against_finished",
        help_text="Candidate jobs: how answers cut off at the token limit are paired "
        "(see training.trainer.candidates.CUT_OFF_CHOICES).",
    )
    reuse_other_engines = models.BooleanField(
        default=False,
        help_text="Reuse outputs another engine or precision wrote, and match across engines; such comparisons "
        "are labelled mixed. Off: only outputs of the engine this job runs on are reused and matched.",
    )
    engine = models.CharField(
        max_length=64, blank=True, help_text="The engine and precision the job ran on, e.g. 'transformers float32'."
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    prompt_count = models.PositiveIntegerField(default=0)
    completions_total = models.PositiveIntegerField(default=0, help_text="Completions this job has to make.")
    completions_created = models.PositiveIntegerField(default=0)
    completions_skipped = models.PositiveIntegerField(default=0, help_text="Already there from an earlier job.")
    tasks_created = models.PositiveIntegerField(default=0)
    movement = models.JSONField(
        default=dict,
        blank=True,
        help_text="Review jobs: did the tuned model move? Identical share and per-token KL of tuned vs base.",
    )
    notes = models.JSONField(default=list, blank=True, help_text="What the job left out and why, for the jobs table.")
    created_by = models.ForeignKey("auth.User", null=True, on_delete=models.SET_NULL, related_name="+")

    class Meta(WorkerJob.Meta):
        constraints = [
            *WorkerJob.Meta.constraints,
            models.CheckConstraint(
                condition=models.Q(purpose__in=["candidates", "review", "scores"]), name="generationjob_purpose_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"Generation {self.pk} ({self.purpose}, {self.status})"

    @property
    def seconds_left(self) -> float | None:
        """At the pace so far: the seconds a running job needs for the answers it has still to write."""
        if self.status != self.Status.RUNNING or self.started_at is None or not self.completions_created:
            return None
        elapsed = (timezone.now() - self.started_at).total_seconds()
        left = self.completions_total - self.completions_skipped - self.completions_created
        return max(0.0, elapsed / self.completions_created * left)

    @property
    def per_minute(self) -> float | None:
        """Answers written a minute so far (model loading included), for a running job that has written some."""
        if self.status != self.Status.RUNNING or self.started_at is None or not self.completions_created:
            return None
        elapsed = (timezone.now() - self.started_at).total_seconds()
        return 60 * self.completions_created / elapsed if elapsed > 0 else None

    @property
    def is_active(self) -> bool:
        return self.status in (self.Status.QUEUED, self.Status.RUNNING)

    @property
    def percent(self) -> int:
        if self.status == self.Status.SUCCEEDED:
            return 100
        done = self.completions_created + self.completions_skipped
        return min(100, round(100 * done / self.completions_total)) if self.completions_total else 0


class RewardScore(models.Model):
    """What a reward model (a succeeded reward run) scored one completion, prompt included. Scores compare only
    within one reward model: each model has its own scale."""

    reward_run = models.ForeignKey(TuningRun, on_delete=models.CASCADE, related_name="reward_scores")
    completion = models.ForeignKey("labeling.Completion", on_delete=models.CASCADE, related_name="reward_scores")
    score = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["reward_run", "completion"], name="rewardscore_once_per_model"),
        ]

    def __str__(self) -> str:
        return f"{self.score:.3f} by run {self.reward_run_id} for completion {self.completion_id}"


class Battle(models.Model):
    """One creation of blind review pairs between two model versions: what was asked for and made."""

    project = models.ForeignKey("labeling.Project", on_delete=models.CASCADE, related_name="battles")
    version_a = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="+")
    version_b = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="+")
    run = models.ForeignKey(TuningRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="battles")
    tasks_created = models.PositiveIntegerField(default=0)
    prompts_missing_outputs = models.PositiveIntegerField(default=0)
    settings = models.JSONField(
        default=dict, blank=True, help_text="The generation settings both sides' outputs were made with."
    )
    identical_skipped = models.PositiveIntegerField(
        default=0, help_text="Matched pairs left out because both versions wrote the same text."
    )
    engines = models.CharField(
        max_length=200, blank=True,
        help_text="The engine(s) and precision(s) the battled outputs were written with, e.g. 'transformers float32'.",
    )
    mixed_engines = models.PositiveIntegerField(
        default=0, help_text="Pairs whose two outputs came from different engines or precisions (only when asked for)."
    )
    created_by = models.ForeignKey("auth.User", null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=~models.Q(version_a=models.F("version_b")), name="battle_distinct_versions"),
        ]

    def __str__(self) -> str:
        return f"{self.version_a} vs {self.version_b}: {self.tasks_created} pairs"
