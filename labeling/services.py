"""Writes for labeling: handing out tasks under leases, recording votes and ratings, projects, tokens.

Assignment in one paragraph: a task wants ``overlap`` votes from distinct annotators. Showing a task
to an annotator takes a *lease* on one of its free slots; a slot is free when
``vote_count + unexpired leases held by others < overlap``. Leases are taken while holding the task
row's lock (``SELECT … FOR UPDATE SKIP LOCKED``, so concurrent annotators pass each other instead of
queueing), and votes are written while holding the same lock, checking ``vote_count < overlap``.
So a task is never over-filled, a lease that expires frees its slot, and a stale vote whose slot was
taken by someone else is refused with a message rather than squeezed in.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, F, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from labeling.errors import Conflict, InvalidInput, NotFound
from labeling.extensions import EXTENSIONS
from labeling.models import ApiToken, PairTask, PairVote, Project, RateTask, Rating, TaskLease, TaskSkip, TaskStatus

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# Leases that find candidates inspect this many locked rows before giving up on a pass.
_CANDIDATES_PER_PASS = 8
_MAX_TIME_SPENT_MS = 6 * 3600 * 1000
_MAX_RATIONALE_CHARS = 5000
_MAX_EDIT_CHARS = 50_000
# How stale an API token's last_used_at may be before a request refreshes it.
_TOKEN_TOUCH_SECONDS = 60


@dataclass(frozen=True)
class _Kind:
    name: str
    task_model: type[PairTask] | type[RateTask]
    vote_model: type[PairVote] | type[Rating]


_PAIR = _Kind("pair", PairTask, PairVote)
_RATE = _Kind("rate", RateTask, Rating)


def _kind_for(project: Project) -> _Kind:
    return _PAIR if project.mode == Project.Mode.COMPARE else _RATE


def _kind_named(name: str) -> _Kind:
    if name == "pair":
        return _PAIR
    if name == "rate":
        return _RATE
    raise InvalidInput(f"Unknown task kind {name!r}: use 'pair' or 'rate'.")


def _lease_seconds() -> int:
    return settings.PREFTUNE_LEASE_SECONDS


def _with_display(kind: _Kind, queryset):  # noqa: ANN001, ANN202
    """Join what a task's card shows (prompt, completions), so showing a task costs no further queries."""
    if kind is _PAIR:
        return queryset.select_related("prompt", "completion_a", "completion_b")
    return queryset.select_related("completion__prompt")


def _held_by_others(kind: _Kind, task_id: int, annotator_id: int, now) -> int:  # noqa: ANN001
    return (
        TaskLease.objects.filter(kind=kind.name, task_id=task_id, expires_at__gt=now)
        .exclude(annotator_id=annotator_id)
        .count()
    )


def task_lease_next(*, project: Project, annotator: User, purpose: str | None = None) -> PairTask | RateTask | None:
    """Give ``annotator`` the task they should see next in ``project``, holding a slot on it; None when done.

    The annotator's own unexpired lease is returned first, so a reload shows the same task. Otherwise a
    task they have neither voted on nor skipped, with a free slot, is leased; tasks that already have
    votes come first so that finished pairs accumulate steadily. Must not be called inside a transaction
    that holds other task locks.
    """
    kind = _kind_for(project)
    now = timezone.now()
    with transaction.atomic():
        own = (
            TaskLease.objects.filter(kind=kind.name, project=project, annotator=annotator, expires_at__gt=now)
            .order_by("leased_at")
            .first()
        )
        if own is not None:
            task = _with_display(kind, kind.task_model.objects.filter(pk=own.task_id, status=TaskStatus.OPEN)).first()
            voted = kind.vote_model.objects.filter(task_id=own.task_id, annotator=annotator).exists()
            if task is not None and not voted:
                return task
            own.delete()

        held = Subquery(
            TaskLease.objects.filter(kind=kind.name, task_id=OuterRef("pk"), expires_at__gt=now)
            .exclude(annotator=annotator)
            .values("task_id")
            .annotate(n=Count("pk"))
            .values("n")[:1]
        )
        candidates = (
            kind.task_model.objects.filter(project=project, status=TaskStatus.OPEN)
            .exclude(pk__in=kind.vote_model.objects.filter(annotator=annotator).values("task_id"))
            .exclude(pk__in=TaskSkip.objects.filter(kind=kind.name, annotator=annotator).values("task_id"))
            .annotate(held=Coalesce(held, Value(0)))
            .filter(vote_count__lt=F("overlap") - F("held"))
        )
        if purpose is not None and kind is _PAIR:
            candidates = candidates.filter(purpose=purpose)
        locked_ids = list(
            _in_label_order(project, kind, candidates)
            .select_for_update(skip_locked=True, of=("self",))
            .values_list("pk", flat=True)[:_CANDIDATES_PER_PASS]
        )
        for task_id in locked_ids:
            # The candidate query read leases from its own snapshot; with the row lock held, count again.
            task = _with_display(kind, kind.task_model.objects).get(pk=task_id)
            if task.vote_count + _held_by_others(kind, task_id, annotator.pk, now) >= task.overlap:
                continue
            # One upsert statement: an expired lease of this annotator on this task is renewed in place.
            TaskLease.objects.bulk_create(
                [
                    TaskLease(
                        kind=kind.name,
                        task_id=task_id,
                        project=project,
                        annotator=annotator,
                        leased_at=now,
                        expires_at=now + timedelta(seconds=_lease_seconds()),
                    )
                ],
                update_conflicts=True,
                unique_fields=["kind", "task_id", "annotator"],
                update_fields=["project", "leased_at", "expires_at"],
            )
            return task
    return None


def _in_label_order(project: Project, kind: _Kind, candidates):  # noqa: ANN001, ANN202 - a queryset in, one out
    """Open tasks in the order annotators get them: started tasks first (so finished pairs accumulate), then by the
    project's label order: the oldest first, or for compare projects with a reward model the pairs whose two answers
    it scores closest (least sure), unscored pairs after them."""
    if kind is _PAIR and project.label_order == Project.LabelOrder.UNCERTAIN_FIRST and EXTENSIONS.pair_order is not None:
        ordered = EXTENSIONS.pair_order(project, candidates)
        if ordered is not None:
            return ordered
    return candidates.order_by("-vote_count", "id")


def task_skip(*, project: Project, annotator: User, kind: str, task_id: int) -> None:
    """Hide a task from this annotator for good and free the slot they held on it."""
    task_kind = _kind_named(kind)
    if not task_kind.task_model.objects.filter(pk=task_id, project=project).exists():
        raise NotFound("That task does not exist in this project.")
    with transaction.atomic():
        TaskSkip.objects.get_or_create(kind=task_kind.name, task_id=task_id, annotator=annotator, project=project)
        TaskLease.objects.filter(kind=task_kind.name, task_id=task_id, annotator=annotator).delete()


def _validated_client_key(client_key: str) -> str:
    key = (client_key or "").strip()
    if not key:
        raise InvalidInput("The vote has no idempotency key (client_key); reload the page and vote again.")
    if len(key) > 64 or not all(ch.isalnum() or ch in "-_" for ch in key):
        raise InvalidInput("The idempotency key must be 1–64 letters, digits, '-' or '_'.")
    return key


def _validated_time_spent(time_spent_ms: int | None, lease: TaskLease | None, now) -> int:  # noqa: ANN001
    if time_spent_ms is not None:
        if time_spent_ms < 0:
            raise InvalidInput("time_spent_ms cannot be negative.")
        return min(int(time_spent_ms), _MAX_TIME_SPENT_MS)
    if lease is None:
        return 0
    return min(int((now - lease.leased_at).total_seconds() * 1000), _MAX_TIME_SPENT_MS)


def _claim_slot(kind: _Kind, task: PairTask | RateTask, annotator: User, now) -> TaskLease | None:  # noqa: ANN001
    """Check, under the task's row lock, that this annotator may add a vote; return their lease if any."""
    if kind.vote_model.objects.filter(task=task, annotator=annotator).exists():
        raise Conflict("You have already voted on this task; your earlier vote stands.")
    if task.vote_count >= task.overlap:
        raise Conflict("This task already has all the votes it needs, so this vote was not recorded.")
    lease = TaskLease.objects.filter(kind=kind.name, task_id=task.pk, annotator=annotator).first()
    lease_lapsed = lease is None or lease.expires_at <= now
    if lease_lapsed and task.vote_count + _held_by_others(kind, task.pk, annotator.pk, now) >= task.overlap:
        raise Conflict(
            "Your hold on this task expired and other annotators took the remaining slots, "
            "so this vote was not recorded."
        )
    return lease


def _count_vote(task: PairTask | RateTask, lease: TaskLease | None) -> None:
    task.vote_count += 1
    if task.vote_count >= task.overlap:
        task.status = TaskStatus.COMPLETE
    task.save(update_fields=["vote_count", "status"])
    if lease is not None:
        lease.delete()


def _record_judgement(
    kind: _Kind,
    *,
    task_id: int,
    annotator: User,
    key: str,
    project: Project | None,
    create: Callable[[PairTask | RateTask, TaskLease | None, datetime], PairVote | Rating],
    already_message: str,
) -> tuple[PairVote | Rating, bool]:
    """The write both judgement kinds share: idempotency, the row lock, the slot check, counting.

    ``create(task, lease, now)`` builds the row once the slot is claimed; it runs inside the transaction.
    """
    existing = kind.vote_model.objects.filter(client_key=key).first()
    if existing is not None:
        return _same_vote_or_conflict(existing, task_id, annotator), False
    try:
        with transaction.atomic():
            try:
                task = kind.task_model.objects.select_related("project").select_for_update(of=("self",)).get(pk=task_id)
            except kind.task_model.DoesNotExist as exc:
                raise NotFound("That task does not exist.") from exc
            if project is not None and task.project_id != project.pk:
                raise NotFound("That task does not belong to this project.")
            # A duplicate that was waiting on the lock behind the first copy finds it here.
            existing = kind.vote_model.objects.filter(client_key=key).first()
            if existing is not None:
                return _same_vote_or_conflict(existing, task_id, annotator), False
            now = timezone.now()
            lease = _claim_slot(kind, task, annotator, now)
            judgement = create(task, lease, now)
            _count_vote(task, lease)
            return judgement, True
    except IntegrityError:
        # Only reachable without row locks (SQLite) or on a racing key reuse: the first write wins.
        existing = kind.vote_model.objects.filter(client_key=key).first()
        if existing is None:
            raise Conflict(already_message) from None
        return _same_vote_or_conflict(existing, task_id, annotator), False


def _same_vote_or_conflict(existing: PairVote | Rating, task_id: int, annotator: User) -> PairVote | Rating:
    if existing.annotator_id != annotator.pk or existing.task_id != task_id:
        raise Conflict("This idempotency key was already used for a different vote; send a fresh key.")
    return existing


def _validated_rationale(rationale: str) -> str:
    rationale = (rationale or "").strip()
    if len(rationale) > _MAX_RATIONALE_CHARS:
        raise InvalidInput(f"The rationale is too long (at most {_MAX_RATIONALE_CHARS} characters).")
    return rationale


def pair_vote_record(
    *,
    task_id: int,
    annotator: User,
    pick: str,
    client_key: str,
    strength: int | None = None,
    rationale: str = "",
    edited_text: str = "",
    time_spent_ms: int | None = None,
    project: Project | None = None,
) -> tuple[PairVote, bool]:
    """Record a compare vote; returns (vote, created). A repeat of the same ``client_key`` returns the first vote.

    ``pick`` is what the annotator clicked: ``left``, ``right``, ``tie`` or ``both_bad``; the side each
    completion was shown on is derived from the task, never trusted from the client. Raises
    InvalidInput, NotFound or Conflict with the message to show; on any error nothing is written.
    """
    key = _validated_client_key(client_key)
    if pick not in ("left", "right", "tie", "both_bad"):
        raise InvalidInput(f"Unknown choice {pick!r}: use left, right, tie or both_bad.")
    if strength is not None and strength not in (1, 2, 3):
        raise InvalidInput("Strength must be 1 (slight), 2 (clear) or 3 (decisive).")
    rationale = _validated_rationale(rationale)
    edited_text = (edited_text or "").strip()
    if len(edited_text) > _MAX_EDIT_CHARS:
        raise InvalidInput(f"The edited answer is too long (at most {_MAX_EDIT_CHARS} characters).")

    def create(task: PairTask, lease: TaskLease | None, now: datetime) -> PairVote:
        a_side = task.a_side_for(annotator.pk)
        if pick in ("left", "right"):
            choice = PairVote.Choice.A if pick == a_side else PairVote.Choice.B
        else:
            choice = pick
        # Only an edit needs the original texts (to drop an "edit" that changed nothing): skip the read otherwise.
        # On a tie or both-bad the edit is the answer neither side gave, so it must differ from both.
        originals: set[str] = set()
        if edited_text:
            sides = {"a": [task.completion_a], "b": [task.completion_b]}.get(choice, [task.completion_a, task.completion_b])
            originals = {completion.text.strip() for completion in sides}
        return PairVote.objects.create(
            task=task,
            annotator=annotator,
            choice=choice,
            a_side=a_side,
            strength=strength,
            rationale=rationale,
            edited_text=edited_text if edited_text not in originals else "",
            time_spent_ms=_validated_time_spent(time_spent_ms, lease, now),
            client_key=key,
            guideline_version=task.project.guideline_version,
        )

    return _record_judgement(
        _PAIR, task_id=task_id, annotator=annotator, key=key, project=project, create=create,
        already_message="You have already voted on this task; your earlier vote stands.",
    )


def rating_record(
    *,
    task_id: int,
    annotator: User,
    value: str,
    client_key: str,
    rationale: str = "",
    time_spent_ms: int | None = None,
    project: Project | None = None,
) -> tuple[Rating, bool]:
    """Record a thumbs rating; returns (rating, created). Same idempotency and slot rules as pair votes."""
    key = _validated_client_key(client_key)
    if value not in ("up", "down"):
        raise InvalidInput(f"Unknown rating {value!r}: use up or down.")
    rationale = _validated_rationale(rationale)

    def create(task: RateTask, lease: TaskLease | None, now: datetime) -> Rating:
        return Rating.objects.create(
            task=task,
            completion_id=task.completion_id,
            annotator=annotator,
            value=value,
            rationale=rationale,
            time_spent_ms=_validated_time_spent(time_spent_ms, lease, now),
            client_key=key,
            guideline_version=task.project.guideline_version,
        )

    return _record_judgement(
        _RATE, task_id=task_id, annotator=annotator, key=key, project=project, create=create,
        already_message="You have already rated this completion; your earlier rating stands.",
    )


def client_key_new() -> str:
    """A fresh idempotency key, embedded in each rendered task form so a double submit is stored once."""
    return uuid.uuid4().hex


def project_create(
    *, name: str, mode: str, overlap: int, guidelines: str = "", description: str = "", members: list | None = None,
    label_order: str = Project.LabelOrder.IN_ORDER,
) -> Project:
    project = Project(
        name=name.strip(), mode=mode, overlap=overlap, guidelines=guidelines, description=description,
        label_order=label_order,
    )
    project.full_clean()
    with transaction.atomic():
        project.save()
        if members:
            project.members.set(members)
    return project


def project_update(
    *,
    project: Project,
    name: str,
    overlap: int,
    guidelines: str,
    description: str,
    members: list,
    label_order: str | None = None,
) -> Project:
    """Edit a project. Changing the guidelines bumps ``guideline_version``, which each new vote records.

    A new overlap applies to tasks created from now on and to open tasks (raised or lowered, never below
    the votes a task already has).
    """
    with transaction.atomic():
        project = Project.objects.select_for_update().get(pk=project.pk)
        if guidelines.strip() != project.guidelines.strip():
            project.guideline_version += 1
        project.name = name.strip()
        project.guidelines = guidelines
        project.description = description
        if label_order is not None:
            project.label_order = label_order
        if overlap != project.overlap:
            project.overlap = overlap
            for task_model in (PairTask, RateTask):
                open_tasks = task_model.objects.filter(project=project, status=TaskStatus.OPEN)
                open_tasks.filter(vote_count__lt=overlap).update(overlap=overlap)
                open_tasks.filter(vote_count__gte=overlap).update(overlap=F("vote_count"), status=TaskStatus.COMPLETE)
        project.full_clean()
        project.save()
        project.members.set(members)
    return project


def api_token_create(*, user: User, name: str = "") -> str:
    """Create a token for ``user`` and return its raw value, which is not stored and cannot be shown again."""
    raw = ApiToken.new_raw()
    ApiToken.objects.create(user=user, name=name, digest=ApiToken.digest_of(raw))
    return raw


def api_token_user(*, raw: str) -> User | None:
    token = ApiToken.objects.select_related("user").filter(digest=ApiToken.digest_of(raw)).first()
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    # A write (and a commit) on every API call would cost more than the call itself: a minute is precise enough.
    if token.last_used_at is None or now - token.last_used_at > timedelta(seconds=_TOKEN_TOUCH_SECONDS):
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user


def adjudicate_pair(*, task: PairTask, admin: User, choice: str) -> PairTask:
    """Set an admin's final choice on a pair, which export uses instead of the majority; '' clears it."""
    if choice not in ("", "a", "b", "tie", "both_bad"):
        raise InvalidInput(f"Unknown choice {choice!r}: use a, b, tie, both_bad, or empty to clear.")
    updated = PairTask.objects.filter(pk=task.pk).update(
        adjudicated_choice=choice, adjudicated_by=admin if choice else None
    )
    if updated != 1:
        raise NotFound("That task no longer exists.")
    task.refresh_from_db()
    return task
