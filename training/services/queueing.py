"""Sending a run's training message once the transaction that queued it commits: a launch, a retry and a worker's
hand-back all queue a run this way."""
from __future__ import annotations

from django.db import transaction

from training.requeue import run_send


def run_enqueue_on_commit(run_id: int) -> None:
    """Send the run's ``workers.run_train`` message once the current transaction commits."""
    # run_send never raises: with the broker down the run stays queued and runs_requeue_lost sends it later.
    transaction.on_commit(lambda: run_send(run_id=run_id))
