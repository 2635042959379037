"""Writes for exporting a model version as a zip: its LoRA adapter as trained, or the adapter merged into the base
weights as a standalone safetensors model.

An export's life: an admin presses Export, ``version_export_request`` queues a VersionExport (enqueued on commit;
the one already queued or running for that version and kind is reused) → a gpu worker claims it (queued →
running) and calls ``version_export_execute``, which builds the zip unless it is there, under a heartbeat →
succeeded, or failed with the reason. ``version_export_cancel`` stops one: a queued export at once, a running one
at its next chunk of the zip. ``version_exports_reap`` fails the exports of a worker that died. The web
process only ever serves a finished zip: merging loads the whole base model, which is a worker's job.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from training.access import describe_failure
from training.broker import send_by_name
from training.heartbeat import Heartbeat, stale_condition
from training.models import ModelVersion, VersionExport

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)
ExportStatus = VersionExport.Status
EXPORT_TASK = "workers.version_export"
KINDS: tuple[str, ...] = tuple(VersionExport.Kind.values)


class ExportError(Exception):
    """Why a version cannot be exported, in words for the admin."""


def version_export_zip_path(*, version_id: int, kind: str) -> Path:
    """Where the finished zip of ``version_id`` as ``kind`` is (whether or not it exists yet)."""
    if kind not in KINDS:
        raise ExportError(f"There is no {kind!r} export: the exports are {', '.join(KINDS)}.")
    return Path(settings.PREFTUNE_ARTIFACTS_DIR) / "exports" / f"version-{version_id}" / f"{kind}.zip"


def version_export_name(version: ModelVersion, kind: str) -> str:
    """The zip's top folder and download name: the version's name made safe for a file name, and the kind."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", version.name).strip("-.") or f"version-{version.pk}"
    return f"{safe}-{kind}"


def check_exportable(*, version: ModelVersion) -> None:
    """Raise ExportError for a base model alone or an adapter no longer on disk."""
    if not version.adapter_path:
        raise ExportError(f"{version.name} is a base model alone: there is no adapter to export.")
    if not Path(version.adapter_path, "adapter_config.json").is_file():
        raise ExportError(f"The adapter of {version.name} is not on this server any more ({version.adapter_path}).")


def version_export_request(*, version: ModelVersion, kind: str, created_by: User | None) -> VersionExport | None:
    """Queue an export of ``version`` as ``kind`` (sent to a gpu worker once the transaction commits) and return
    it; the export already queued or running for that version and kind if there is one, so a second press makes
    no second export; None when the zip is already there. Raises ExportError for an unknown kind, a base model
    alone or a missing adapter."""
    zip_path = version_export_zip_path(version_id=version.pk, kind=kind)
    check_exportable(version=version)
    if zip_path.is_file():
        return None
    active = VersionExport.objects.filter(version=version, kind=kind, status__in=VersionExport.ACTIVE)
    export = active.first()
    if export is None:
        try:
            with transaction.atomic():
                export = VersionExport.objects.create(version=version, kind=kind, created_by=created_by)
        except IntegrityError:
            # Another request queued it between our look and our insert; the constraint kept it to one.
            export = active.get()
    if export.status == ExportStatus.QUEUED:
        # Pressing again while it waits sends its message again: a broker that lost the first (a restart without
        # persistence) would otherwise hold the one export allowed in the queue for good, and the worker's claim
        # makes a second message for an export already taken do nothing.
        export_id = export.pk
        transaction.on_commit(lambda: _send(export_id))
    return export


def _send(export_id: int) -> None:
    """Publish the export's message; with the broker unreachable, fail the export with the reason instead of a 500."""
    error = send_by_name(EXPORT_TASK, args=[export_id], queue="gpu")
    if error is not None:
        logger.error("Export %s could not be queued: the broker is unreachable (%s).", export_id, error)
        VersionExport.objects.filter(pk=export_id, status=ExportStatus.QUEUED).update(
            status=ExportStatus.FAILED, finished_at=timezone.now(),
            error="The task broker could not be reached, so the export was not queued. Press Export again once the "
            "broker is back.",
        )


def version_export_claim(*, export_id: int, worker: str) -> bool:
    """Move a queued export to running; False when another worker got there first (a redelivered message)."""
    now = timezone.now()
    return VersionExport.objects.filter(pk=export_id, status=ExportStatus.QUEUED).update(
        status=ExportStatus.RUNNING, worker=worker, started_at=now, heartbeat_at=now, stage="Starting"
    ) == 1


def version_export_execute(*, export_id: int) -> VersionExport:
    """On a worker, for a claimed (running) export: build the zip unless it is there, and record the outcome.
    Never raises for a failed build: the reason is stored on the export for its page."""
    from training.trainer.export import ExportStopped

    with Heartbeat(VersionExport, export_id, ExportStatus.RUNNING):
        export = VersionExport.objects.select_related("version__base_model").get(pk=export_id)
        running = VersionExport.objects.filter(pk=export_id, status=ExportStatus.RUNNING)
        try:
            version_export_build(
                version=export.version, kind=export.kind, on_stage=lambda text: running.update(stage=text),
                on_bytes=_ByteProgress(running), should_stop=running.filter(cancel_requested=True).exists,
            )
        except ExportStopped:
            running.update(status=ExportStatus.CANCELLED, error="Cancelled by an admin.", stage="", finished_at=timezone.now())
        except Exception as exc:  # noqa: BLE001 - any failure ends the export with its reason recorded
            logger.exception("Export %s failed", export_id)
            reason = str(exc) if isinstance(exc, ExportError) else describe_failure(exc)
            running.update(status=ExportStatus.FAILED, error=reason, stage="", finished_at=timezone.now())
        else:
            running.update(status=ExportStatus.SUCCEEDED, error="", stage="", finished_at=timezone.now())
    return VersionExport.objects.get(pk=export_id)


class _ByteProgress:
    """Records the zip stage's bytes and rate on the export's row; the rate runs from the first chunk, so the time a
    merge took before it does not make the zip look slow."""

    def __init__(self, running: object) -> None:
        self.running = running
        self.started: float | None = None
        self.first = 0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self.started is None:
            self.started, self.first = now, done
            rate = None
        else:
            rate = (done - self.first) / (now - self.started) if now > self.started else None
        self.running.update(bytes_done=done, bytes_total=total, bytes_per_second=rate)  # type: ignore[attr-defined]


def version_export_cancel(*, export: VersionExport) -> VersionExport:
    """Stop an export: a queued one is cancelled now, a running one stops at its next chunk of the zip (its worker
    records it cancelled). A finished one is left as it is."""
    now = timezone.now()
    with transaction.atomic():
        VersionExport.objects.filter(pk=export.pk, status=ExportStatus.QUEUED).update(
            status=ExportStatus.CANCELLED, cancel_requested=True, error="Cancelled before a worker took it.",
            finished_at=now,
        )
        VersionExport.objects.filter(pk=export.pk, status=ExportStatus.RUNNING).update(cancel_requested=True)
    export.refresh_from_db()
    return export


def version_export_build(
    *, version: ModelVersion, kind: str, on_stage: Callable[[str], object] | None = None,
    on_bytes: Callable[[int, int], object] | None = None, should_stop: Callable[[], bool] | None = None,
) -> Path:
    """The zip of ``version`` as ``kind``: built now (merging loads the base model: call it on a worker or from a
    command, never in a web request), or the one already there. Raises ExportError.

    Each call builds in a folder of its own and renames its finished zip into place, so two builds at once (a job
    and the command, say) never write the same files, and a download gets a whole zip or none. ``on_bytes(done,
    total)`` follows the zip being written; ``should_stop()`` True stops it (ExportStopped), leaving nothing behind."""
    from training.trainer.export import ExportStopped, copy_adapter, merge_adapter, zip_folder

    zip_path = version_export_zip_path(version_id=version.pk, kind=kind)
    check_exportable(version=version)
    if zip_path.is_file():
        return zip_path
    stage = on_stage or _ignore
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{kind}-", dir=zip_path.parent))
    try:
        if kind == VersionExport.Kind.MERGED:
            stage(f"Loading {version.base_model.name} and merging the adapter into it")
            merge_adapter(version.base_model.path, version.adapter_path, work / "files")
        else:
            stage("Copying the adapter")
            copy_adapter(version.adapter_path, work / "files")
        if should_stop is not None and should_stop():
            raise ExportStopped("Stopped before the zip was written.")
        stage("Writing the zip")
        partial = zip_folder(work / "files", work / f"{kind}.zip.partial", root=version_export_name(version, kind),
                             on_bytes=on_bytes, should_stop=should_stop)
        os.replace(partial, zip_path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return zip_path


def _ignore(_: str) -> None:
    return None


def version_exports_reap(*, worker_name: str | None = None, older_than: timedelta | None = None) -> list[int]:
    """Fail running exports whose worker is gone: those a (re)starting worker was running, or those whose heartbeat
    is older than ``older_than``. Pressing Export again then queues a new one (the half-built files were private
    to the dead build)."""
    condition = stale_condition(worker_name=worker_name, older_than=older_than, what="exports")
    stuck = list(VersionExport.objects.filter(condition, status=ExportStatus.RUNNING).values_list("pk", flat=True))
    VersionExport.objects.filter(pk__in=stuck, status=ExportStatus.RUNNING).update(
        status=ExportStatus.FAILED, stage="", finished_at=timezone.now(),
        error="The worker building this export stopped before it finished (it was killed, frozen or lost its "
        "connection). Press Export again.",
    )
    return stuck
