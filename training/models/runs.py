"""Tuning runs: the frozen dataset a run trains on, the run itself and the metrics it logs, and the workers
that announce which runs they can take."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from django.db import models

from training.models.jobs import WorkerJob
from training.models.versions import BaseModel, ModelVersion


def run_queue(num_processes: int) -> str:
    """The queue a run's message goes to: ``gpu`` for one GPU, ``gpuN`` for N. A worker with G GPUs listens on
    ``gpu,gpu2,…,gpuG``, so a run waits until a worker with enough GPUs takes it."""
    return "gpu" if num_processes <= 1 else f"gpu{num_processes}"


class DatasetSnapshot(models.Model):
    """The exact training rows a run uses, frozen at launch so later votes never change a queued or running run."""

    project = models.ForeignKey("labeling.Project", on_delete=models.CASCADE, related_name="dataset_snapshots")
    method = models.CharField(max_length=8)
    rows = models.JSONField()
    rows_hash = models.CharField(max_length=64)
    row_count = models.PositiveIntegerField()
    summary = models.JSONField(default=dict, help_text="Export counts: ties, both-bad, disagreements left out.")
    lineage = models.JSONField(default=dict, help_text="Annotators, agreement, guideline versions, review rounds.")
    includes_heldout = models.BooleanField(
        default=False, help_text="Holds votes on held-out prompts: an admin opted in, and the trained version is flagged."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.method} snapshot of {self.row_count} rows ({self.rows_hash[:12]})"


class TuningRun(WorkerJob):
    class Method(models.TextChoices):
        DPO = "dpo", "DPO (pairs)"
        KTO = "kto", "KTO (thumbs)"
        SIMPO = "simpo", "SimPO (pairs, no reference model)"
        CPO = "cpo", "CPO (pairs, no reference model)"
        ORPO = "orpo", "ORPO (pairs, no reference model)"
        SFT = "sft", "SFT (imitate chosen and thumbs-up answers)"
        REWARD = "reward", "Reward model (scores answers; writes nothing)"
        GRPO = "grpo", "GRPO (online RL against the reward model)"
        RLOO = "rloo", "RLOO (online RL against the reward model)"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    project = models.ForeignKey("labeling.Project", on_delete=models.CASCADE, related_name="tuning_runs")
    name = models.CharField(max_length=200)
    method = models.CharField(max_length=8, choices=Method.choices)
    base_model = models.ForeignKey(BaseModel, on_delete=models.PROTECT, related_name="runs")
    settings = models.JSONField(help_text="TrainSettings as a dict: parsed and validated by training.trainer.config.")
    snapshot = models.ForeignKey(DatasetSnapshot, on_delete=models.PROTECT, related_name="runs")
    train_rows = models.PositiveIntegerField(default=0)
    validation_rows = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    cancel_requested = models.BooleanField(default=False)
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    attempt = models.PositiveSmallIntegerField(default=0)
    output_dir = models.CharField(max_length=500, blank=True)
    resumed_from = models.CharField(max_length=500, blank=True, help_text="The checkpoint the last attempt resumed from.")
    outcome = models.JSONField(
        default=dict,
        blank=True,
        help_text="What training found: the best validation step and its metrics, the final train batch, the verdict.",
    )
    model_version = models.OneToOneField(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="run"
    )
    start_from = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="continued_by",
        help_text="A trained version this run starts from instead of the bare base model.",
    )
    reward_model = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="policies",
        help_text="An online RL run's reward model: the reward-model run whose scores it was trained to raise.",
    )
    created_by = models.ForeignKey("auth.User", null=True, on_delete=models.SET_NULL, related_name="+")
    resent_at = models.DateTimeField(
        null=True, blank=True, help_text="When the watchdog last sent the run's message again (the broker had lost it)."
    )

    class Meta(WorkerJob.Meta):
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="tuningrun_status_idx")]
        constraints = [
            *WorkerJob.Meta.constraints,
            models.CheckConstraint(
                condition=models.Q(method__in=["dpo", "kto", "simpo", "cpo", "orpo", "sft", "reward", "grpo", "rloo"]),
                name="tuningrun_method_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def attempt_dir(self, attempt: int | None = None) -> Path:
        """The folder one attempt (this row's latest by default) writes in: its checkpoints, events, log and adapter.
        Each claim takes a new attempt number, so two trainers of one run never write the same files."""
        return Path(self.output_dir) / f"attempt-{self.attempt if attempt is None else attempt}"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def rows_format(self) -> str:
        """The rows it trains on: "dpo" (pairs, for DPO, SimPO, CPO, ORPO), "kto" (thumbs) or "sft"."""
        return {self.Method.KTO: "kto", self.Method.SFT: "sft", self.Method.GRPO: "prompt", self.Method.RLOO: "prompt"}.get(
            self.method, "dpo"
        )

    @property
    def gpus(self) -> int:
        """Data-parallel processes the run trains on (GPUs, or CPU processes on a CPU worker)."""
        settings = self.settings if isinstance(self.settings, dict) else {}
        return int(settings.get("num_processes") or 1)

    @property
    def queue(self) -> str:
        return run_queue(self.gpus)

    @property
    def quantized(self) -> bool:
        return isinstance(self.settings, dict) and self.settings.get("quantization") == "4bit"

    @property
    def sharded(self) -> bool:
        """Whether its processes share the model's weights (FSDP full shard) rather than each holding a copy."""
        return isinstance(self.settings, dict) and self.settings.get("sharding") == "fsdp"

    @property
    def percent(self) -> int:
        if self.status == self.Status.SUCCEEDED:
            return 100
        return round(100 * self.step / self.total_steps) if self.total_steps else 0

    def eta_seconds(self, now) -> float | None:  # noqa: ANN001
        """Seconds left at the recent pace (`step_pace`); None before a pace is known or when not running."""
        return self.seconds_left_at(self.step_pace(), now)

    def seconds_left_at(self, pace: tuple[float, int, Any] | None, now) -> float | None:  # noqa: ANN001
        """Seconds left at `pace` (from `step_pace`), counted from its last logged step."""
        if pace is None:
            return None
        seconds_per_step, last_step, last_at = pace
        left = seconds_per_step * max(0, self.total_steps - last_step) - (now - last_at).total_seconds()
        return max(0.0, left)

    def step_pace(self) -> tuple[float, int, Any] | None:
        """Seconds a step at the recent pace, with the last logged step and its time; None before the first step or
        when not running.

        The pace comes from the timestamps of this attempt's last logged training steps (one RunMetric row a
        step), over a window at least one evaluation interval long (the gap between the last two evaluations
        logged, else ``eval_steps`` or ``save_steps`` from the settings). Each window then holds one evaluation
        and its checkpoint, so their cost is spread over the steps instead of making the forecast jump whenever
        one happens; model loading before the first step no longer counts either. Until two steps of this
        attempt are logged there is no pace, and no forecast: the average since start counts the model's loading
        as if it were training (13 minutes forecast when 86 s were left, issue 26). Runs two small queries.
        """
        if self.status != self.Status.RUNNING or not self.started_at or self.step == 0 or not self.total_steps:
            return None
        logged_evals = list(self.metrics.filter(split="eval").order_by("-step").values_list("step", flat=True)[:2])
        settings = self.settings if isinstance(self.settings, dict) else {}
        configured = [v for v in (settings.get("eval_steps"), settings.get("save_steps")) if isinstance(v, int) and v > 0]
        if len(logged_evals) == 2:
            interval = logged_evals[0] - logged_evals[1]
        else:
            interval = configured[0] if configured else (logged_evals[0] if logged_evals else 0)
        window = max(10, interval)  # at least 10 steps, so one slow step does not swing the forecast
        # Rows re-logged after a resume keep their first timestamp (update_or_create), hence the started_at filter.
        recent = list(
            self.metrics.filter(split="train", created_at__gte=self.started_at)
            .order_by("-step")
            .values_list("step", "created_at")[: window + 1]
        )
        if len(recent) >= 2 and recent[0][0] > recent[-1][0]:
            (last_step, last_at), (first_step, first_at) = recent[0], recent[-1]
            return (last_at - first_at).total_seconds() / (last_step - first_step), last_step, last_at
        return None

    def duration_seconds(self, now) -> float | None:  # noqa: ANN001
        if not self.started_at:
            return None
        return ((self.finished_at or now) - self.started_at).total_seconds()


class RunMetric(models.Model):
    """One logging event of a run: TRL's metric keys (loss, rewards/margins, ...) at a step."""

    class Split(models.TextChoices):
        TRAIN = "train", "Train"
        EVAL = "eval", "Validation"

    run = models.ForeignKey(TuningRun, on_delete=models.CASCADE, related_name="metrics")
    step = models.PositiveIntegerField()
    split = models.CharField(max_length=8, choices=Split.choices, default=Split.TRAIN)
    values = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "step", "id"]
        constraints = [models.UniqueConstraint(fields=["run", "split", "step"], name="runmetric_one_per_step")]

    def __str__(self) -> str:
        return f"run {self.run_id} {self.split} step {self.step}"


class Worker(models.Model):
    """A Celery worker as it announced itself when it started: its queues and GPUs, so the launch form can say
    which runs will find a worker (a run on N GPUs waits on queue gpuN for one that listens there)."""

    hostname = models.CharField(max_length=255, unique=True)
    queues = models.JSONField(default=list)
    gpus = models.PositiveIntegerField(default=0, help_text="CUDA GPUs it sees; 0 on a CPU worker.")
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField()

    class Meta:
        ordering = ["hostname"]

    def __str__(self) -> str:
        return self.hostname

    @property
    def max_run_gpus(self) -> int:
        """The most GPUs (processes) a run it takes may ask for: the largest N of the gpuN queues it listens on."""
        sizes = [1 if q == "gpu" else int(q[3:]) for q in self.queues if q == "gpu" or (q.startswith("gpu") and q[3:].isdigit())]
        return max(sizes, default=0)
