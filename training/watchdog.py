"""The watchdog: fails runs, generation jobs and exports whose worker went quiet, and sends again the messages of queued
runs that the broker lost.

It is a thread in every worker's main process and in every web process, not a Celery task: a task waits on a
queue, and with one worker at concurrency 1 (what `make run` starts) it waited behind the very run it should
watch, and never ran at all while that worker was frozen. A worker's main process only consumes messages (its
pool processes train), so its thread runs while the run trains; the web process's runs while every worker is
frozen or gone. Each pass is conditional updates, so any number of watchdogs at once fail a run once.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections, connection

logger = logging.getLogger(__name__)

# A quiet run is failed within PREFTUNE_RUN_STALE_SECONDS plus PREFTUNE_WATCHDOG_SECONDS (15 by default).
LOST_MESSAGE_AFTER = timedelta(seconds=60)

_started: threading.Thread | None = None
_lock = threading.Lock()


@dataclass(frozen=True)
class WatchdogPass:
    runs_failed: list[int]
    jobs_failed: list[int]
    exports_failed: list[int]
    runs_resent: list[int]


def reap_stale() -> tuple[list[int], list[int], list[int]]:
    """Fail the runs, generation jobs and exports whose heartbeat is older than PREFTUNE_RUN_STALE_SECONDS:
    (runs, jobs, exports)."""
    from training import exports, services
    from training.playground.services import playground_requests_reap
    from training.review import generation

    stale = timedelta(seconds=settings.PREFTUNE_RUN_STALE_SECONDS)
    playground_requests_reap(older_than=stale)
    return (
        services.runs_reap_stale(older_than=stale), generation.generation_jobs_reap(older_than=stale),
        exports.version_exports_reap(older_than=stale),
    )


def watchdog_pass() -> WatchdogPass:
    """One look: fail stale runs, jobs and exports, send lost run messages again."""
    from training import requeue

    runs_failed, jobs_failed, exports_failed = reap_stale()
    return WatchdogPass(
        runs_failed=runs_failed, jobs_failed=jobs_failed, exports_failed=exports_failed,
        runs_resent=requeue.runs_requeue_lost(older_than=LOST_MESSAGE_AFTER),
    )


def _watch(where: str, interval: float) -> None:
    stop = threading.Event()
    while not stop.wait(interval):
        try:
            close_old_connections()
            done = watchdog_pass()
            if done.runs_failed or done.jobs_failed or done.exports_failed or done.runs_resent:
                logger.warning(
                    "Watchdog (%s): failed runs %s, jobs %s and exports %s whose worker went quiet; re-sent runs %s.",
                    where, done.runs_failed, done.jobs_failed, done.exports_failed, done.runs_resent,
                )
        except Exception:  # a database or broker outage must not end the thread: the next pass tries again
            logger.exception("Watchdog (%s) pass failed", where)
        finally:
            connection.close()


def watchdog_start(where: str, *, interval: float | None = None) -> threading.Thread | None:
    """Start this process's watchdog thread once (``where`` names the process in its log lines), a pass every
    ``interval`` seconds (PREFTUNE_WATCHDOG_SECONDS by default); None when PREFTUNE_WATCHDOG is off."""
    global _started
    if not settings.PREFTUNE_WATCHDOG:
        return None
    interval = interval or settings.PREFTUNE_WATCHDOG_SECONDS
    with _lock:
        if _started is None or not _started.is_alive():
            _started = threading.Thread(target=_watch, args=(where, interval), daemon=True, name=f"watchdog-{where}")
            _started.start()
        return _started
