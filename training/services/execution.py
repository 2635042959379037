"""What a gpu worker does with a run: announce itself, claim the run (queued → running) and train it in a child
process, recording progress, the outcome and the new model version. Every write after the claim is fenced by the
attempt number, so a superseded attempt (a frozen worker that woke up) changes nothing."""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.db import connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from training.access import describe_failure
from training.heartbeat import Heartbeat
from training.models import ModelVersion, RunMetric, TuningRun, Worker
from training.review.rewards import reward_scoring_job_create
from training.services.launch import new_output_dir
from training.services.queueing import run_enqueue_on_commit
from training.trainer.events import ProgressEvent

if TYPE_CHECKING:
    from training.trainer.process import ChildOutcome

logger = logging.getLogger(__name__)
Status = TuningRun.Status

OUTSIDE_STOP = (
    "The training process was stopped by a SIGTERM from outside preftune (a container stop, an orchestrator or a "
    "kill), not by an admin. Retry resumes from the last checkpoint, if one was saved."
)


def worker_announce(*, hostname: str, queues: list[str], gpus: int) -> Worker:
    """Record a worker that has just started: which queues it takes and how many GPUs it sees."""
    now = timezone.now()
    worker, _ = Worker.objects.update_or_create(
        hostname=hostname, defaults={"queues": sorted(queues), "gpus": gpus, "started_at": now, "seen_at": now}
    )
    return worker


def run_claim(*, run_id: int, worker: str) -> bool:
    """Move a queued run to running for ``worker``; False if another worker got there first or it was cancelled."""
    now = timezone.now()
    claimed = TuningRun.objects.filter(pk=run_id, status=Status.QUEUED, cancel_requested=False).update(
        status=Status.RUNNING, worker=worker, started_at=now, heartbeat_at=now, attempt=F("attempt") + 1
    )
    if claimed == 1:
        Worker.objects.filter(hostname=worker).update(seen_at=now)
        return True
    # A cancel that arrived while queued ends here, without ever loading a model.
    TuningRun.objects.filter(pk=run_id, status=Status.QUEUED, cancel_requested=True).update(
        status=Status.CANCELLED, finished_at=now
    )
    return False


def _ours(run_id: int, attempt: int) -> QuerySet[TuningRun]:
    """The run's row while ``attempt`` still owns it: running, and not claimed again since (the fencing token)."""
    return TuningRun.objects.filter(pk=run_id, status=Status.RUNNING, attempt=attempt)


def _record_progress(run_id: int, attempt: int, events: list[ProgressEvent]) -> None:
    """The events the trainer wrote since the last read: the run's step from the newest, every metric, any watch
    points. A handful of statements whatever the number of events, none waiting for the disk: the worker reads
    the next events and looks for a cancel or a shutdown only once these are written."""
    # The row first: a superseded attempt's events (a frozen worker that woke up) write nothing. Not in one
    # transaction with the metrics: a worker frozen between the two would hold the row's lock, and the watchdog's
    # update of that very row would wait on it for as long as the worker stays frozen.
    newest = events[-1]
    with _without_waiting_for_the_disk():
        ours = _ours(run_id, attempt).update(step=newest.step, total_steps=newest.total_steps, heartbeat_at=timezone.now())
    if not ours:
        return
    metrics: dict[tuple[str, int], dict[str, float]] = {}
    for event in events:
        values = {k: float(v) for k, v in event.metrics.items() if isinstance(v, int | float)}
        if event.kind in ("train", "eval") and values:
            metrics[(event.kind, event.step)] = values
    if metrics:
        with _without_waiting_for_the_disk():
            RunMetric.objects.bulk_create(
                [RunMetric(run_id=run_id, split=split, step=step, values=values) for (split, step), values in metrics.items()],
                update_conflicts=True, unique_fields=["run", "split", "step"], update_fields=["values"],
            )
    for event in events:
        if event.details and ("watch_point" in event.details or "watch_restored" in event.details):
            _record_watch_point(run_id, attempt, event.details)


@contextmanager
def _without_waiting_for_the_disk() -> Iterator[None]:
    """A transaction whose commit does not wait for PostgreSQL to flush it to disk. For progress only: a database
    crash can lose the last fraction of a second of it, which the next events write again, while a commit that
    waits for fsync stalled the worker for seconds on a busy disk (a cancel or a shutdown noticed that late)."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        yield


def _record_watch_point(run_id: int, attempt: int, details: dict[str, Any]) -> None:
    """An online RL run's evaluation, answers and all, into its live watch (``outcome["watch"]``) for the run page;
    the finished run's outcome replaces it with the whole watch and its warnings."""
    with transaction.atomic():
        run = _ours(run_id, attempt).select_for_update().only("outcome").first()
        if run is None:
            return
        watch = dict((run.outcome or {}).get("watch") or {})
        if "watch_restored" in details:
            _ours(run_id, attempt).update(outcome={**(run.outcome or {}), "watch": details["watch_restored"]})
            return
        point = details["watch_point"]
        if details.get("reference"):
            watch = {"base": point, "points": []}
        else:
            watch["points"] = [p for p in watch.get("points", []) if p.get("step") != point.get("step")] + [point]
        _ours(run_id, attempt).update(outcome={**(run.outcome or {}), "watch": watch})


def _cancel_requested(run_id: int) -> bool:
    return TuningRun.objects.filter(pk=run_id, cancel_requested=True).exists()


def run_execute(*, run_id: int, worker_stopping: Callable[[], bool] | None = None) -> TuningRun:
    """Train a run this worker has claimed (status running) in a child process and record the outcome; never
    raises for a training failure: the reason is stored on the run and shown on its page.

    ``worker_stopping()`` True (the worker is shutting down) hands the run back: the child saves a checkpoint
    and stops, and the run is queued again to resume from it on the next worker."""
    from training.trainer.child import ROWS_FILENAME, RunSpec, announce_attempt
    from training.trainer.process import run_supervised

    run = TuningRun.objects.select_related("base_model", "snapshot", "start_from").get(pk=run_id)
    attempt = run.attempt
    if not run.output_dir:
        run.output_dir = new_output_dir()
    output_dir = run.attempt_dir(attempt)
    # exist_ok=False: attempt numbers come from the claim's atomic increment, so a folder already there means
    # something else is writing it, and this attempt must not.
    output_dir.mkdir(parents=True, exist_ok=False)
    checkpoint = _resume_checkpoint(Path(run.output_dir), attempt)
    if not _ours(run_id, attempt).update(output_dir=run.output_dir, resumed_from=checkpoint or ""):
        return TuningRun.objects.get(pk=run_id)
    announce_attempt(run.output_dir, attempt)  # an older attempt's trainer still alive stops on reading this
    rows_path = output_dir / ROWS_FILENAME
    rows_path.write_text(json.dumps(run.snapshot.rows, ensure_ascii=False))
    num_processes = int(run.settings.get("num_processes") or 1)
    spec = RunSpec(
        model_path=run.base_model.path, rows_path=str(rows_path), rows_hash=run.snapshot.rows_hash,
        settings=run.settings, output_dir=str(output_dir), events_path=str(output_dir / "events.jsonl"),
        resume_from_checkpoint=checkpoint, num_processes=num_processes,
        sharding=str(run.settings.get("sharding") or "none"), run_dir=run.output_dir, attempt=attempt,
    )
    try:
        with Heartbeat(TuningRun, run_id, Status.RUNNING, attempt=attempt):
            ended = run_supervised(
                spec,
                on_progress=lambda events: _record_progress(run_id, attempt, [_progress_event(e) for e in events]),
                should_cancel=lambda: _cancel_requested(run_id),
                still_ours=lambda: _ours(run_id, attempt).exists(),
                cuda=num_processes > 1 and _cuda_available(),
                should_yield=worker_stopping,
            )
    except Exception as exc:  # noqa: BLE001 - any failure ends the run with its reason recorded
        logger.exception("Run %s failed", run_id)
        _finish(run_id, attempt, Status.FAILED, error=describe_failure(exc))
        return TuningRun.objects.get(pk=run_id)
    return _record_ending(run, attempt, ended)


def _record_ending(run: TuningRun, attempt: int, ended: ChildOutcome) -> TuningRun:
    """Record how the child ended: handed back, stopped, failed, cancelled, or succeeded with its outcome."""
    if ended.yielded and not _cancel_requested(run.pk):
        _hand_back(run.pk, attempt)
        return TuningRun.objects.get(pk=run.pk)
    if ended.stopped:
        if _cancel_requested(run.pk):
            _finish(run.pk, attempt, Status.CANCELLED, error="Cancelled by an admin.")
        # Otherwise the run is no longer ours (the reaper failed it, or a newer attempt claimed it): leave the row.
        return TuningRun.objects.get(pk=run.pk)
    if ended.result is None:
        logger.error("Run %s failed: %s", run.pk, ended.error)
        _finish(run.pk, attempt, Status.FAILED, error=ended.error[:4000])
        return TuningRun.objects.get(pk=run.pk)
    result = ended.result
    if result["cancelled"] and _cancel_requested(run.pk):
        _finish(run.pk, attempt, Status.CANCELLED, error="Cancelled by an admin.")
        return TuningRun.objects.get(pk=run.pk)
    if result["cancelled"]:
        # The child stopped on a SIGTERM that this worker did not send: a container stop, an orchestrator, a kill.
        _finish(run.pk, attempt, Status.FAILED, error=OUTSIDE_STOP)
        return TuningRun.objects.get(pk=run.pk)
    if run.method == TuningRun.Method.REWARD:
        return _reward_model_finish(run, attempt, result)
    return _version_finish(run, attempt, result)


def _version_finish(run: TuningRun, attempt: int, result: dict[str, Any]) -> TuningRun:
    """A run that trained an adapter makes a model version of it, in the transaction that marks the run succeeded."""
    with transaction.atomic():
        version = ModelVersion.objects.create(
            name=f"{run.name} (run {run.pk})"[:200], base_model=run.base_model, adapter_path=str(result["adapter_dir"]),
            saw_heldout=run.snapshot.includes_heldout or bool(run.start_from and run.start_from.saw_heldout),
            parent=run.start_from,
        )
        if _mark_succeeded(run, attempt, result, model_version=version) != 1:
            # Reaped or changed underneath us: keep what the database says, drop the orphan version.
            version.delete()
    return TuningRun.objects.get(pk=run.pk)


def _mark_succeeded(run: TuningRun, attempt: int, result: dict[str, Any], **fields: Any) -> int:
    """Record a finished run's outcome if ``attempt`` still owns it; the number of rows updated, 0 or 1."""
    return _ours(run.pk, attempt).update(
        status=Status.SUCCEEDED,
        outcome={**run.outcome, **result["outcome"]},
        step=result["steps"],
        total_steps=result["total_steps"] or result["steps"],
        finished_at=timezone.now(),
        heartbeat_at=timezone.now(),
        **fields,
    )


def _reward_model_finish(run: TuningRun, attempt: int, result: dict[str, Any]) -> TuningRun:
    """A reward model writes nothing, so it makes no model version: it becomes the project's scorer, and a job
    scores the project's answers with it (review outputs for their reward spread, open pairs for labeling order)."""
    with transaction.atomic():
        if _mark_succeeded(run, attempt, result) == 1:
            reward_scoring_job_create(project=run.project, reward_run=TuningRun.objects.get(pk=run.pk))
    return TuningRun.objects.get(pk=run.pk)


def _hand_back(run_id: int, attempt: int) -> None:
    # Queued again, its message sent once this commits: another worker (or this one, restarted) resumes it.
    with transaction.atomic():
        if _ours(run_id, attempt).update(
            status=Status.QUEUED, worker="", error="", heartbeat_at=None
        ):
            logger.info("Run %s handed back: its worker is shutting down; it resumes from its last checkpoint.", run_id)
            run_enqueue_on_commit(run_id)


def _progress_event(event: dict[str, Any]) -> ProgressEvent:
    return ProgressEvent(
        step=event["step"], total_steps=event["total_steps"], metrics=event.get("metrics") or {},
        kind=event.get("kind", "train"), epoch=event.get("epoch"), details=event.get("details"),
    )


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _finish(run_id: int, attempt: int, status: str, *, error: str = "") -> None:
    _ours(run_id, attempt).update(status=status, error=error, finished_at=timezone.now())


def _resume_checkpoint(run_dir: Path, attempt: int) -> str | None:
    """The newest complete checkpoint that an earlier attempt of the run left (runs trained before attempts had
    folders of their own kept theirs in the run folder itself)."""
    from training.trainer.checkpoints import latest_checkpoint

    found = [latest_checkpoint(folder) for folder in [run_dir, *(run_dir / f"attempt-{n}" for n in range(1, attempt))]]
    return max(filter(None, found), key=lambda path: int(Path(path).name.rsplit("-", 1)[1]), default=None)
