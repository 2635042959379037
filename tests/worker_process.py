"""A real Celery worker process for integration tests, on the pytest test database and the Redis broker.

The worker is a separate OS process (``celery -A webapp worker``), so the test must commit what the
worker should see: use ``@pytest.mark.django_db(transaction=True)``.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def database_url_for_workers() -> str:
    db = connection.settings_dict
    if connection.vendor != "postgresql":
        raise RuntimeError("A worker process needs the PostgreSQL test database (the test command sets DATABASE_URL).")
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def purge_queues(*queues: str) -> None:
    from webapp.celery import app

    with app.connection_for_write() as conn:
        for queue in queues:
            conn.default_channel.queue_purge(queue)


@contextmanager
def celery_worker(
    name: str, *, queues: str = "default,gpu", log_path: Path | None = None, extra_env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen]:
    """Start a worker named ``name@<host>``, wait until it is ready, and stop it (SIGTERM, then SIGKILL) after."""
    if not settings.CELERY_BROKER_URL.startswith("redis://"):
        raise RuntimeError("Integration tests need the Redis broker (the test command sets CELERY_BROKER_URL).")
    # Under pytest-xdist two test processes may start a worker of the same name: the host part keeps their
    # hostnames (and so their shutdown markers) and their logs apart; `name@` still starts every hostname.
    xdist = os.environ.get("PYTEST_XDIST_WORKER", "")
    host = f"%h-{xdist}" if xdist else "%h"
    log_path = log_path or Path(settings.VAR_DIR) / f"test-worker-{name}{'-' + xdist if xdist else ''}.log"
    env = {
        **os.environ,
        "DATABASE_URL": database_url_for_workers(),
        "DB_CONN_MAX_AGE": "0",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TQDM_DISABLE": "1",
        **(extra_env or {}),
    }
    log = open(log_path, "w")  # noqa: SIM115 - closed in finally
    process = subprocess.Popen(
        [
            sys.executable, "-m", "celery", "-A", "webapp", "worker", "-Q", queues, "--concurrency", "1",
            "--hostname", f"{name}@{host}", "--without-gossip", "--without-mingle", "--loglevel", "INFO",
        ],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        _wait_until_ready(process, log_path)
        yield process
    finally:
        stop_worker(process)
        log.close()


def _wait_until_ready(process: subprocess.Popen, log_path: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"The worker exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
        if " ready." in log_path.read_text():
            return
        time.sleep(0.2)
    raise RuntimeError(f"The worker was not ready in {timeout} s:\n{log_path.read_text()[-4000:]}")


def kill_worker(process: subprocess.Popen) -> None:
    """SIGKILL the worker and its pool children at once, as an OOM killer or a pulled plug would."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def stop_worker(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        kill_worker(process)
    except ProcessLookupError:
        pass


def trainer_pids(output_dir: str | Path) -> list[int]:
    """Processes running `python -m training.trainer <output_dir>/…/run-spec.json` (a run folder: any attempt), but not
    one a trainer forked: between its fork and its exec a helper shows the trainer's command line too. (Suspected,
    not shown, in a busy-suite failure whose real cause was the worker importing transformers at the first event.)"""
    folder = str(Path(output_dir)).encode() + b"/"
    parents = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
                state, parent = (proc / "stat").read_text().split(") ", 1)[1].split()[:2]
            except (OSError, IndexError, ValueError):
                continue
            if any(arg.startswith(folder) and arg.endswith(b"/run-spec.json") for arg in cmdline) and state != "Z":
                parents[int(proc.name)] = int(parent)
    return sorted(pid for pid, parent in parents.items() if parent not in parents)


def wait_for(predicate, *, timeout: float, interval: float = 0.5, what: str = "condition"):  # noqa: ANN001, ANN201
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"Timed out after {timeout} s waiting for {what}")
