"""A row's heartbeat, touched from a side thread while its worker is busy: a long training step or generation
batch must not look like a dead worker to the reaper, and a worker that is gone stops touching it."""
from __future__ import annotations

import threading

from django.db import models
from django.utils import timezone

# At least this often while a run trains or a job generates, even inside a long step or batch.
HEARTBEAT_SECONDS = 10


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
