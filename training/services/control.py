"""Stopping and restarting runs from outside their worker: an admin's cancel and retry, and the reaper that fails
runs whose worker is gone."""
from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from training.heartbeat import stale_condition
from training.models import TuningRun
from training.services.launch_checks import LaunchError
from training.services.queueing import run_enqueue_on_commit

Status = TuningRun.Status


def run_cancel(*, run: TuningRun) -> TuningRun:
    """Ask a run to stop: a queued run is cancelled at once, a running one after its current step."""
    now = timezone.now()
    with transaction.atomic():
        TuningRun.objects.filter(pk=run.pk, status=Status.QUEUED).update(
            status=Status.CANCELLED, cancel_requested=True, finished_at=now, error="Cancelled before it started."
        )
        TuningRun.objects.filter(pk=run.pk, status=Status.RUNNING).update(cancel_requested=True)
    run.refresh_from_db()
    return run


def run_cancel_outcome(run: TuningRun) -> str:
    """What a cancel did to ``run`` (as ``run_cancel`` returned it), in a sentence for the page or the shell."""
    if run.status == Status.RUNNING:
        return f"Run {run.pk} cancelling: training stops after the current step."
    if run.status == Status.CANCELLED and run.cancel_requested:
        return f"Run {run.pk} cancelled."
    return f"Nothing to cancel: run {run.pk} has already ended ({run.get_status_display().lower()})."


def run_retry(*, run: TuningRun) -> TuningRun:
    """Queue a failed or cancelled run again; training resumes from its last checkpoint when one exists."""
    with transaction.atomic():
        updated = TuningRun.objects.filter(pk=run.pk, status__in=[Status.FAILED, Status.CANCELLED]).update(
            status=Status.QUEUED, cancel_requested=False, error="", finished_at=None, worker=""
        )
        if updated != 1:
            raise LaunchError("Only a failed or cancelled run can be retried.")
        run_enqueue_on_commit(run.pk)
    run.refresh_from_db()
    return run


def runs_reap_stale(*, older_than: timedelta | None = None, worker_name: str | None = None) -> list[int]:
    """Fail running runs whose worker is gone: heartbeat older than ``older_than``, or (at a worker's start)
    any run that worker was training. Returns the ids of the runs it failed."""
    condition = stale_condition(worker_name=worker_name, older_than=older_than, what="runs")
    stale = list(TuningRun.objects.filter(condition, status=Status.RUNNING).values_list("pk", flat=True))
    reason = (
        "The worker training this run stopped (it was killed or lost its connection) and the run cannot finish. "
        "Retry it to resume from the last checkpoint."
    )
    reaped = []
    for run_id in stale:
        if TuningRun.objects.filter(pk=run_id, status=Status.RUNNING).update(
            status=Status.FAILED, error=reason, finished_at=timezone.now()
        ):
            reaped.append(run_id)
    return reaped
