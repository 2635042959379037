"""The watchdog fails a run whose worker went quiet within the stale limit plus 30 s, whatever the topology: with
the only worker busy training another run, and with the only worker frozen (then a web process does it). Real
worker and gunicorn processes, PostgreSQL, Redis, a tiny model."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from tests.factories import make_run
from tests.faults.conftest import free_port
from tests.training.conftest import LONG_RUN, voted_compare_project
from tests.worker_process import celery_worker, database_url_for_workers, purge_queues, trainer_pids, wait_for
from training import services
from training.models import GenerationJob, TuningRun

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.worker,
    pytest.mark.postgres,
    pytest.mark.timeout(300),
]

# Short, so the tests take seconds: the limits scale, the topology is what is tested. Well above the heartbeat's
# 10 s, though: at 12 s a loaded machine let a healthy run's heartbeat age past the limit while its model loaded.
STALE_SECONDS = 25
WATCHED = {"PREFTUNE_WATCHDOG": "1", "PREFTUNE_RUN_STALE_SECONDS": str(STALE_SECONDS), "PREFTUNE_WATCHDOG_SECONDS": "4"}
def _status(run_id: int) -> str:
    return TuningRun.objects.values_list("status", flat=True).get(pk=run_id)


def _training(project, base, admin) -> TuningRun:  # noqa: ANN001
    purge_queues("default", "gpu")
    return services.run_launch(project=project, base_model_id=base.pk, method="dpo", settings_data={**LONG_RUN, "save_steps": 100}, created_by=admin)


@contextlib.contextmanager
def _web_process(tmp_path: Path) -> Iterator[subprocess.Popen]:
    """gunicorn serving the app on the test database, with the watchdog on, as in production."""
    port = free_port()
    env = {**os.environ, **WATCHED, "DATABASE_URL": database_url_for_workers(), "DJANGO_ALLOWED_HOSTS": "127.0.0.1"}
    log = tmp_path / "gunicorn.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "webapp.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        cwd=Path(__file__).resolve().parents[2], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        def answers() -> bool:
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/accounts/login/", timeout=2)  # noqa: S310 - loopback
                return True
            return False

        wait_for(answers, timeout=30, interval=0.2, what="gunicorn to answer")
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)


def _trainer_pid(run: TuningRun) -> int:
    def started() -> int | None:
        row = TuningRun.objects.get(pk=run.pk)
        pids = trainer_pids(row.attempt_dir()) if row.attempt and row.step >= 2 else []
        return pids[0] if pids else None

    return wait_for(started, timeout=180, interval=0.2, what="the trainer to take two steps")


def test_the_only_worker_busy_training_still_fails_a_dead_workers_run_and_job_in_time(admin, tiny_base):
    # Given a run and a candidate job left "running" by a worker that died (their last heartbeat 5 s ago), and the
    # only worker, serving default and gpu at concurrency 1 as `make run` starts it, busy training another run
    project = voted_compare_project(8, name="Busy worker")
    busy = _training(project, tiny_base, admin)
    with celery_worker("busy", extra_env=WATCHED):
        _trainer_pid(busy)
        orphan = make_run(project, status="running")
        TuningRun.objects.filter(pk=orphan.pk).update(worker="gone@host", heartbeat_at=timezone.now() - timedelta(seconds=5))
        job = GenerationJob.objects.create(project=project, purpose="candidates", prompt_ids=[], settings={}, status="running",
                                           worker="gone@host", started_at=timezone.now(),
                                           heartbeat_at=timezone.now() - timedelta(seconds=5))
        orphaned_at = time.monotonic()

        # Then the worker's own watchdog fails both while its training goes on
        wait_for(lambda: _status(orphan.pk) == "failed", timeout=STALE_SECONDS + 40, interval=0.5,
                 what="the orphaned run to be failed")
        took = time.monotonic() - orphaned_at
        wait_for(lambda: GenerationJob.objects.get(pk=job.pk).status == "failed", timeout=10, interval=0.5,
                 what="the orphaned job to be failed in the same pass")
        assert _status(busy.pk) == "running"
    assert took <= STALE_SECONDS + 15 - 5, f"failed {took:.0f} s after it went quiet"
    assert "worker training this run stopped" in TuningRun.objects.get(pk=orphan.pk).error
    assert "The worker running this job stopped before it finished" in GenerationJob.objects.get(pk=job.pk).error


def test_the_only_worker_frozen_mid_run_is_noticed_by_the_web_process(client, admin, tiny_base, tmp_path):
    # Given the only worker training a run, and the web app serving
    project = voted_compare_project(8, name="Frozen worker")
    run = _training(project, tiny_base, admin)
    with celery_worker("frozen", extra_env=WATCHED) as worker, _web_process(tmp_path):
        trainer = _trainer_pid(run)
        # When the worker and its trainer freeze (SIGSTOP: a hung machine, a debugger, a paused container)
        os.killpg(worker.pid, signal.SIGSTOP)
        os.kill(trainer, signal.SIGSTOP)
        frozen_at = time.monotonic()
        try:
            wait_for(lambda: _status(run.pk) == "failed", timeout=STALE_SECONDS + 45, interval=0.5,
                     what="the frozen worker's run to be failed")
            took = time.monotonic() - frozen_at
        finally:
            os.kill(trainer, signal.SIGCONT)
            os.killpg(worker.pid, signal.SIGCONT)

    # Then it is failed within the stale limit and a few watchdog passes (the run's 4,000 steps would take ten minutes:
    # nothing waited for them), and the page says why
    assert took <= STALE_SECONDS + 15, f"failed {took:.0f} s after the freeze"
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert "The worker training this run stopped" in page
