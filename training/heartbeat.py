"""A row's heartbeat, touched from a side thread while its worker is busy: a long training step or generation
batch must not look like a dead worker to the reaper, and a worker that is gone stops touching it."""
from __future__ import annotations

import threading
from datetime import timedelta

from django.db import models
from django.db.models import Q
from django.utils import timezone

# At least this often while a run trains or a job generates, even inside a long step or batch.
HEARTBEAT_SECONDS = 10


def stale_condition(*, worker_name: str | None, older_than: timedelta | None, what: str) -> Q:
    """Rows whose worker is gone: those ``worker_name`` held (a restarting worker's previous life), or those whose
    heartbeat is older than ``older_than`` or missing (a worker killed, frozen or cut off). ``what`` names the rows
    in the error for a caller that gave neither."""
    if worker_name is None and older_than is None:
        raise ValueError(f"Say which {what} are stale: worker_name, older_than, or both.")
    condition = Q()
    if worker_name is not None:
        condition |= Q(worker=worker_name)
    if older_than is not None:
        condition |= Q(heartbeat_at__lt=timezone.now() - older_than) | Q(heartbeat_at__isnull=True)
    return condition


class Heartbeat:
    """``with Heartbeat(TuningRun, run_id, "running", attempt=n):`` touches ``heartbeat_at`` every HEARTBEAT_SECONDS
    while the row has that status (and the other field values given: a superseded attempt keeps no row alive)."""

    def __init__(self, model: type[models.Model], pk: int, status: str, **still: object) -> None:
        self.model, self.pk, self.status, self.still = model, pk, status, still
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name=f"heartbeat-{model.__name__}-{pk}")

    def _beat(self) -> None:
        from django.db import connection

        try:
            while not self._stop.wait(HEARTBEAT_SECONDS):
                self.model.objects.filter(pk=self.pk, status=self.status, **self.still).update(heartbeat_at=timezone.now())
        finally:
            connection.close()

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=HEARTBEAT_SECONDS + 5)
