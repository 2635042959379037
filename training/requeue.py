"""Sending a queued run's training message, and sending it again when the broker lost it.

A run is queued in two places: its row (status ``queued``) and a ``workers.run_train`` message in the
broker. The row is the truth. The message can be lost while the row stays queued:

- the broker was down when the run was launched or retried (the send failed after the row committed);
- Redis restarted without persistence (the default in our compose file and CI), dropping every message.

Nothing would ever start such a run. ``runs_requeue_lost`` (periodic, from beat) finds queued runs with
no message waiting in the broker and sends one again. Sending twice is harmless: the worker claims a run
with a conditional update (queued → running), so a second message finds it no longer queued and does
nothing. That is also why the broker check may be approximate: on a transport we cannot inspect, or in
the instant between a worker popping a message and recording it as unacknowledged, a run may be sent
twice, never lost.
"""
from __future__ import annotations

import base64
import json
import logging
from datetime import timedelta
from typing import Any

from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerUnavailable

from training.broker import send_by_name
from training.models import TuningRun, run_queue

logger = logging.getLogger(__name__)

TASK_NAME = "workers.run_train"
# Kombu's Redis transport keeps one list per priority step: "gpu", "gpu\x06\x163", … (kombu.transport.redis).
_REDIS_PRIORITY_STEPS = (0, 3, 6, 9)
_REDIS_PRIORITY_SEP = "\x06\x16"


def _queue_of(run_id: int) -> str:
    settings = TuningRun.objects.values_list("settings", flat=True).get(pk=run_id) or {}
    return run_queue(int(settings.get("num_processes") or 1))


def run_send(*, run_id: int) -> bool:
    """Publish the training message for ``run_id`` on its queue (see ``run_queue``); False (logged, not raised)
    if the broker is unreachable.

    The run row stays queued either way; ``runs_requeue_lost`` sends it once the broker is back.
    """
    error = send_by_name(TASK_NAME, args=[run_id], queue=_queue_of(run_id))
    if error is not None:
        logger.warning("Run %s stays queued: the broker is unreachable (%s); it is re-sent when it is back.", run_id, error)
        return False
    return True


def runs_requeue_lost(*, older_than: timedelta) -> list[int]:
    """Send again every run queued for longer than ``older_than`` whose message is not in the broker.

    Returns the ids sent. ``older_than`` keeps a run just launched (its message may still be on its way)
    out of the check. Runs with a message waiting, or held unacknowledged by a worker, are left alone,
    so calling this every minute adds no duplicates on Redis.
    """
    cutoff = timezone.now() - older_than
    candidates = list(
        TuningRun.objects.filter(status=TuningRun.Status.QUEUED, cancel_requested=False, created_at__lte=cutoff)
        .order_by("id")
        .values_list("pk", flat=True)
    )
    if not candidates:
        return []
    queues = sorted({_queue_of(run_id) for run_id in candidates})
    try:
        waiting = run_ids_in_broker(queues)
    except BrokerUnavailable as exc:
        logger.warning("Cannot look for lost run messages: the broker is unreachable (%s).", exc)
        return []
    sent = []
    for run_id in candidates:
        if waiting is not None and run_id in waiting:
            continue
        if run_send(run_id=run_id):
            TuningRun.objects.filter(pk=run_id, status=TuningRun.Status.QUEUED).update(resent_at=timezone.now())
            sent.append(run_id)
    if sent:
        logger.warning("Re-sent the training message of queued run(s) %s: the broker had lost it.", sent)
    return sent


def run_ids_in_broker(queues: list[str] | None = None) -> set[int] | None:
    """Run ids with a ``run_train`` message waiting in, or taken unacknowledged from, the broker.

    None when the transport cannot be inspected (anything but Redis): then every candidate is re-sent.
    """
    from django.conf import settings

    from webapp.celery import app

    queues = queues or [settings.CELERY_TASK_ROUTES.get(TASK_NAME, {}).get("queue", "gpu")]
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1)
            if conn.transport.driver_type != "redis":
                return None
            channel = conn.default_channel
            client = channel.client
            raw: list[bytes] = []
            for queue in queues:
                for step in _REDIS_PRIORITY_STEPS:
                    raw.extend(client.lrange(f"{queue}{_REDIS_PRIORITY_SEP}{step}" if step else queue, 0, -1))
            # Unacknowledged deliveries are stored as JSON [message, exchange, routing_key].
            unacked = [json.dumps(json.loads(item)[0]).encode() for item in client.hvals(channel.unacked_key)]
    except BrokerUnavailable:
        raise
    except OSError as exc:
        raise BrokerUnavailable(str(exc)) from exc
    return {run_id for item in raw + unacked if (run_id := _run_id_of(item)) is not None}


def _run_id_of(raw: bytes) -> int | None:
    """The run id in a serialised Celery (protocol 2) message for run_train, or None for anything else."""
    try:
        message: dict[str, Any] = json.loads(raw)
        if message.get("headers", {}).get("task") != TASK_NAME:
            return None
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return int(args[0])
    except (ValueError, KeyError, IndexError, TypeError):
        return None
