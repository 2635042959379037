"""Base models and the model versions (base + optional LoRA adapter) that write and get judged."""
from __future__ import annotations

from pathlib import Path

from django.db import models
from django.utils import timezone


def run_queue(num_processes: int) -> str:
    """The queue a run's message goes to: ``gpu`` for one GPU, ``gpuN`` for N. A worker with G GPUs listens on
    ``gpu,gpu2,…,gpuG``, so a run waits until a worker with enough GPUs takes it."""
    return "gpu" if num_processes <= 1 else f"gpu{num_processes}"

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


class TuningRun(models.Model):
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
    worker = models.CharField(max_length=200, blank=True, help_text="hostname:pid of the worker training it.")
    error = models.TextField(blank=True)
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
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    resent_at = models.DateTimeField(
        null=True, blank=True, help_text="When the watchdog last sent the run's message again (the broker had lost it)."
    )

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="tuningrun_status_idx")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["queued", "running", "succeeded", "failed", "cancelled"]),
                name="tuningrun_status_valid",
            ),
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
        """Seconds left at the recent pace; None before the first step or when not running.

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
            pace = (last_at - first_at).total_seconds() / (last_step - first_step)
            left = pace * max(0, self.total_steps - last_step) - (now - last_at).total_seconds()
            return max(0.0, left)
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


# ---------------------------------------------------------------- review: generation jobs and blind battles (issue #4)


class GenerationJob(models.Model):
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
    settings = models.JSONField(help_text="GenerationSettings as a dict (training.trainer.review).")
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
    worker = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey("auth.User", null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Touched while the job runs; a stale one means its worker is gone."
    )
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["queued", "running", "succeeded", "failed", "cancelled"]),
                name="generationjob_status_valid",
            ),
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


class VersionExport(models.Model):
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
    worker = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey("auth.User", null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Touched while the export runs; a stale one means its worker is gone."
    )
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["queued", "running", "succeeded", "failed", "cancelled"]),
                name="versionexport_status_valid",
            ),
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


class PlaygroundRequest(models.Model):
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
    worker = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    kept_prompt = models.ForeignKey(
        "labeling.Prompt", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The project prompt this question became (Keep this prompt, or Send to battle).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["queued", "running", "succeeded", "failed", "cancelled"]),
                name="playgroundrequest_status_valid",
            ),
        ]

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
