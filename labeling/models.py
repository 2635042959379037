"""Projects, prompts, completions, the tasks annotators work, and their judgements."""
from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q


class Project(models.Model):
    class Mode(models.TextChoices):
        COMPARE = "compare", "Compare two completions"
        RATE = "rate", "Rate one completion (thumbs)"

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    guidelines = models.TextField(blank=True, help_text="Markdown, shown to annotators beside every task.")
    guideline_version = models.PositiveIntegerField(default=1)
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.COMPARE)
    overlap = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(50)],
        help_text="Votes wanted per task, from distinct annotators (1 to 50).",
    )
    class LabelOrder(models.TextChoices):
        IN_ORDER = "in_order", "In order: pairs with votes first, then the oldest"
        UNCERTAIN_FIRST = "uncertain_first", "Uncertain first: the pairs the reward model is least sure about"

    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="labeling_projects", blank=True)
    label_order = models.CharField(
        max_length=16, choices=LabelOrder.choices, default=LabelOrder.IN_ORDER,
        help_text="Which open pair an annotator gets next. Uncertain first needs a reward model trained in this project: "
        "pairs whose two answers it scores closest come first (a vote there teaches the most), pairs it has not "
        "scored come last. Pairs other annotators started are still finished first.",
    )
    playground_for_annotators = models.BooleanField(
        default=False, verbose_name="Annotators may use the playground",
        help_text="Members may ask the project's models their own questions on the playground page (admins always "
        "can). Their prompts run on the gpu worker like any generation.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(overlap__gte=1) & Q(overlap__lte=50), name="project_overlap_1_to_50"),
            models.CheckConstraint(condition=Q(mode__in=["compare", "rate"]), name="project_mode_valid"),
            models.CheckConstraint(
                condition=Q(label_order__in=["in_order", "uncertain_first"]), name="project_label_order_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def is_member(self, user: settings.AUTH_USER_MODEL) -> bool:
        return self.members.filter(pk=user.pk).exists()


class Prompt(models.Model):
    class Split(models.TextChoices):
        TRAIN = "train", "Train"
        HELDOUT = "heldout", "Held out"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="prompts")
    external_id = models.CharField(max_length=200, blank=True, help_text="The id given in the imported file, if any.")
    messages = models.JSONField(help_text='Chat messages: [{"role": "user", "content": "..."}, ...]')
    split = models.CharField(max_length=16, choices=Split.choices, default=Split.TRAIN)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(split__in=["train", "heldout"]), name="prompt_split_valid"),
            models.UniqueConstraint(
                fields=["project", "external_id"], condition=~Q(external_id=""), name="prompt_external_id_unique"
            ),
        ]

    def __str__(self) -> str:
        return self.text[:60]

    @property
    def text(self) -> str:
        """The last user message: what a one-line summary of the prompt shows."""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return str(message.get("content", ""))
        return str(self.messages[-1].get("content", "")) if self.messages else ""


class Completion(models.Model):
    class Source(models.TextChoices):
        IMPORTED = "imported", "Imported"
        GENERATED = "generated", "Generated"
        EDITED = "edited", "Edited by an annotator"

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="completions")
    text = models.TextField()
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.IMPORTED)
    model_name = models.CharField(max_length=200, blank=True, help_text="Who wrote it, as given on import.")
    model_version = models.ForeignKey(
        "training.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="completions"
    )
    generation_settings = models.JSONField(default=dict, blank=True)
    finish_reason = models.CharField(
        max_length=8,
        blank=True,
        choices=[("stop", "Ended on its own"), ("length", "Cut off at the token limit")],
        help_text="Generated completions: whether the model ended the answer or hit max_new_tokens. Empty if unknown.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(source__in=["imported", "generated", "edited"]), name="completion_source_valid"),
            models.CheckConstraint(condition=Q(finish_reason__in=["", "stop", "length"]), name="completion_finish_reason_valid"),
        ]

    def __str__(self) -> str:
        return self.text[:60]

    @property
    def is_truncated(self) -> bool:
        """The model was still writing when it hit the token limit: the answer is unfinished."""
        return self.finish_reason == "length"


class TaskStatus(models.TextChoices):
    OPEN = "open", "Needs votes"
    COMPLETE = "complete", "Complete"


class PairTask(models.Model):
    class Purpose(models.TextChoices):
        LABEL = "label", "Labeling"
        REVIEW = "review", "Review (blind battle)"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="pair_tasks")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="pair_tasks")
    completion_a = models.ForeignKey(Completion, on_delete=models.CASCADE, related_name="+")
    completion_b = models.ForeignKey(Completion, on_delete=models.CASCADE, related_name="+")
    purpose = models.CharField(max_length=16, choices=Purpose.choices, default=Purpose.LABEL)
    overlap = models.PositiveSmallIntegerField(help_text="Votes wanted; copied from the project when created.")
    vote_count = models.PositiveSmallIntegerField(default=0)
    status = models.CharField(max_length=16, choices=TaskStatus.choices, default=TaskStatus.OPEN)
    matched_settings = models.JSONField(
        default=dict,
        blank=True,
        help_text="Review pairs: the generation settings both outputs were made with (matched comparisons only).",
    )
    adjudicated_choice = models.CharField(max_length=16, blank=True, help_text="An admin's final word, if given.")
    adjudicated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["project", "status", "id"], name="pairtask_queue_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(purpose__in=["label", "review"]), name="pairtask_purpose_valid"),
            models.CheckConstraint(condition=Q(status__in=["open", "complete"]), name="pairtask_status_valid"),
            models.CheckConstraint(condition=Q(vote_count__lte=models.F("overlap")), name="pairtask_not_overfilled"),
            models.CheckConstraint(condition=~Q(completion_a=models.F("completion_b")), name="pairtask_distinct_sides"),
            models.CheckConstraint(
                condition=Q(adjudicated_choice__in=["", "a", "b", "tie", "both_bad"]), name="pairtask_adjudication_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"Pair {self.pk} ({self.prompt.text[:40]})"

    def a_side_for(self, annotator_id: int) -> str:
        """Which side completion A is shown on for this annotator: stable, and random across annotators."""
        digest = hashlib.sha256(f"pair:{self.pk}:{annotator_id}".encode()).digest()
        return "left" if digest[0] % 2 == 0 else "right"


class RateTask(models.Model):
    class Purpose(models.TextChoices):
        LABEL = "label", "Labeling"
        REVIEW = "review", "Review (held-out thumbs on a model version's output)"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="rate_tasks")
    completion = models.ForeignKey(Completion, on_delete=models.CASCADE, related_name="rate_tasks")
    purpose = models.CharField(max_length=16, choices=Purpose.choices, default=Purpose.LABEL)
    overlap = models.PositiveSmallIntegerField()
    vote_count = models.PositiveSmallIntegerField(default=0)
    status = models.CharField(max_length=16, choices=TaskStatus.choices, default=TaskStatus.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["project", "status", "id"], name="ratetask_queue_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=["open", "complete"]), name="ratetask_status_valid"),
            models.CheckConstraint(condition=Q(purpose__in=["label", "review"]), name="ratetask_purpose_valid"),
            models.CheckConstraint(condition=Q(vote_count__lte=models.F("overlap")), name="ratetask_not_overfilled"),
            models.UniqueConstraint(fields=["project", "completion"], name="ratetask_one_per_completion"),
        ]

    def __str__(self) -> str:
        return f"Rate {self.pk}"


class PairVote(models.Model):
    class Choice(models.TextChoices):
        A = "a", "A is better"
        B = "b", "B is better"
        TIE = "tie", "Tie"
        BOTH_BAD = "both_bad", "Both bad"

    class Side(models.TextChoices):
        LEFT = "left", "Left"
        RIGHT = "right", "Right"

    task = models.ForeignKey(PairTask, on_delete=models.CASCADE, related_name="votes")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="pair_votes")
    choice = models.CharField(max_length=16, choices=Choice.choices)
    a_side = models.CharField(max_length=8, choices=Side.choices, help_text="Where completion A was shown.")
    strength = models.PositiveSmallIntegerField(null=True, blank=True, help_text="1 slight, 2 clear, 3 decisive.")
    rationale = models.TextField(blank=True)
    edited_text = models.TextField(blank=True, help_text="The annotator's rewrite of the better answer, if any.")
    time_spent_ms = models.PositiveIntegerField(default=0)
    client_key = models.CharField(max_length=64, unique=True, help_text="Idempotency key: a resubmit is stored once.")
    guideline_version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["task", "annotator"], name="pairvote_one_per_annotator"),
            models.CheckConstraint(condition=Q(choice__in=["a", "b", "tie", "both_bad"]), name="pairvote_choice_valid"),
            models.CheckConstraint(condition=Q(a_side__in=["left", "right"]), name="pairvote_side_valid"),
            models.CheckConstraint(
                condition=Q(strength__isnull=True) | (Q(strength__gte=1) & Q(strength__lte=3)),
                name="pairvote_strength_1_to_3",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.annotator} → {self.choice} on {self.task_id}"

    @property
    def picked_side(self) -> str | None:
        """The side the annotator clicked, for position-bias figures; None for tie and both-bad."""
        if self.choice not in ("a", "b"):
            return None
        other = "right" if self.a_side == "left" else "left"
        return self.a_side if self.choice == "a" else other


class Rating(models.Model):
    class Value(models.TextChoices):
        UP = "up", "Thumbs up"
        DOWN = "down", "Thumbs down"

    task = models.ForeignKey(RateTask, on_delete=models.CASCADE, related_name="ratings")
    completion = models.ForeignKey(Completion, on_delete=models.CASCADE, related_name="ratings")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ratings")
    value = models.CharField(max_length=8, choices=Value.choices)
    rationale = models.TextField(blank=True)
    time_spent_ms = models.PositiveIntegerField(default=0)
    client_key = models.CharField(max_length=64, unique=True)
    guideline_version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["task", "annotator"], name="rating_one_per_annotator"),
            models.CheckConstraint(condition=Q(value__in=["up", "down"]), name="rating_value_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.annotator} → {self.value} on {self.completion_id}"


class TaskLease(models.Model):
    """A slot on a task held for one annotator while they look at it; expires so an abandoned slot frees up."""

    class Kind(models.TextChoices):
        PAIR = "pair", "Pair"
        RATE = "rate", "Rate"

    kind = models.CharField(max_length=8, choices=Kind.choices)
    task_id = models.BigIntegerField()
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    leased_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind", "task_id", "annotator"], name="tasklease_one_per_annotator"),
        ]
        indexes = [
            models.Index(fields=["kind", "task_id", "expires_at"], name="tasklease_task_idx"),
            models.Index(fields=["annotator", "project", "expires_at"], name="tasklease_annotator_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.annotator_id} holds {self.kind} {self.task_id} until {self.expires_at:%H:%M:%S}"


class TaskSkip(models.Model):
    kind = models.CharField(max_length=8, choices=TaskLease.Kind.choices)
    task_id = models.BigIntegerField()
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind", "task_id", "annotator"], name="taskskip_one_per_annotator"),
        ]

    def __str__(self) -> str:
        return f"{self.annotator_id} skipped {self.kind} {self.task_id}"


def _token_digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(models.Model):
    """A bearer token for scripts. Only its hash is stored; the raw value is shown once at creation."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.user} {self.name}".strip()

    @staticmethod
    def new_raw() -> str:
        return "pt_" + secrets.token_urlsafe(32)

    @staticmethod
    def digest_of(raw: str) -> str:
        return _token_digest(raw)
