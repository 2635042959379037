"""Keeps pytest-xdist's worker processes out of each other's way; loaded with ``-p`` before Django's settings.

pytest-django already gives each xdist worker its own test database (``test_preftune_gw0``, ``…_gw1``). The
broker is the other thing they would share: a Celery worker started by one test process would take the tasks
the other one queued (into a database where their rows do not exist), and ``purge_queues`` in one would empty
the other's queues. So each xdist worker gets its own Redis database number, set in the environment before the
settings read it; the Celery workers, gunicorn and training children that a test starts inherit it.

The cores are the third: torch sizes its thread pool to every core, so two test processes each training or
generating would run twice as many spinning threads as there are cores, and both slow down far more than
twice. Each xdist worker (and what it starts) gets its share of the cores instead, unless OMP_NUM_THREADS is set.
"""
from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

_worker = os.environ.get("PYTEST_XDIST_WORKER", "")


def _redis_url_for_worker(url: str, worker_number: int) -> str:
    parts = urlsplit(url)
    base_db = int(parts.path.strip("/") or 0)
    # Databases above the one the suite was given: gw0 → base + 1, gw1 → base + 2 (Redis has 16 by default).
    return urlunsplit(parts._replace(path=f"/{base_db + 1 + worker_number}"))


if _worker:
    _share = max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    os.environ.setdefault("OMP_NUM_THREADS", str(_share))
    _broker = os.environ.get("CELERY_BROKER_URL", "")
    if _broker.startswith("redis://"):
        os.environ["CELERY_BROKER_URL"] = _redis_url_for_worker(_broker, int(_worker.removeprefix("gw")))
