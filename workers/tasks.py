"""Celery tasks: each loads a row by id, claims it with a conditional update, and calls one service."""
from __future__ import annotations

import subprocess
from pathlib import Path

from celery import shared_task
from celery.signals import worker_ready, worker_shutting_down
from django.conf import settings

from training import exports, registry, requeue
from training import services as training_services
from training.playground import services as playground
from training.review import generation as review_generation
from training.watchdog import LOST_MESSAGE_AFTER, reap_stale, watchdog_start


@shared_task(name="workers.run_train", queue="gpu", bind=True, acks_late=True, time_limit=24 * 3600)
def run_train(self, run_id: int) -> str:  # noqa: ANN001
    """Train one run. A redelivered message finds the run no longer queued and does nothing."""
    hostname = self.request.hostname or "unknown"
    if not training_services.run_claim(run_id=run_id, worker=hostname):
        return "not claimed: another worker has it, or it was cancelled"
    marker = _shutdown_marker(hostname)
    run = training_services.run_execute(run_id=run_id, worker_stopping=marker.exists)
    return run.status


def _gpu_count() -> int:
    # nvidia-smi, not torch: initialising CUDA in the worker's main process would break the forked pool processes.
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in listed.stdout.splitlines() if line.startswith("GPU ")) if listed.returncode == 0 else 0


def _shutdown_marker(hostname: str) -> Path:
    return Path(settings.VAR_DIR) / "workers" / f"{hostname}.shutting-down"


@worker_shutting_down.connect
def _hand_back_training(sender=None, **kwargs) -> None:  # noqa: ANN001, ANN003
    # The worker's main process gets this; the run trains under a pool process, which polls the marker, has its
    # trainer save a checkpoint and stop, and queues the run again. A warm shutdown then ends in seconds, not
    # when the run would have finished.
    if sender:
        marker = _shutdown_marker(str(sender))
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()


@shared_task(name="workers.runs_reap_stale", queue="default", ignore_result=True)
def runs_reap_stale() -> list[int]:
    """Periodic: fail runs, generation jobs and exports whose worker stopped sending heartbeats, so none stays
    'running' forever."""
    return reap_stale()[0]


@shared_task(name="workers.runs_requeue_lost", queue="default", ignore_result=True)
def runs_requeue_lost() -> list[int]:
    """Periodic: send again the message of queued runs the broker lost (a restart without persistence)."""
    return requeue.runs_requeue_lost(older_than=LOST_MESSAGE_AFTER)


@worker_ready.connect
def _fail_runs_left_by_this_worker(sender=None, **kwargs) -> None:  # noqa: ANN001, ANN003
    # A worker that (re)starts is training nothing yet: any run still marked as its own died with it.
    hostname = getattr(sender, "hostname", None)
    if hostname:
        _shutdown_marker(hostname).unlink(missing_ok=True)
        queues = [queue.name for queue in getattr(getattr(sender, "task_consumer", None), "queues", [])]
        training_services.worker_announce(hostname=hostname, queues=queues, gpus=_gpu_count())
        training_services.runs_reap_stale(worker_name=hostname)
        review_generation.generation_jobs_reap(worker_name=hostname)
        playground.playground_requests_reap(worker_name=hostname)
        exports.version_exports_reap(worker_name=hostname)
    # In the main process, which never waits behind a task: see training/watchdog.py.
    watchdog_start("worker")


@shared_task(name="workers.generate", queue="gpu", bind=True, acks_late=True, time_limit=6 * 3600)
def generate(self, job_id: int) -> str:  # noqa: ANN001
    """Run one generation job. A redelivered message finds the job no longer queued and does nothing."""
    if not review_generation.generation_job_claim(job_id=job_id, worker=self.request.hostname or "unknown"):
        return "not claimed: another worker has it, or it already ran"
    job = review_generation.generation_job_execute(
        job_id=job_id, batch_size=settings.PREFTUNE_GENERATION_BATCH_SIZE, backend=settings.PREFTUNE_GENERATION_BACKEND
    )
    return job.status


@shared_task(name="workers.base_model_download", queue="gpu", bind=True, acks_late=True, time_limit=6 * 3600)
def base_model_download(self, model_id: int) -> str:  # noqa: ANN001
    """Download a base model registered by its Hugging Face id, then check it; a repeat finds it no longer downloading."""
    return registry.base_model_download(model_id=model_id).status


@shared_task(name="workers.version_export", queue="gpu", bind=True, acks_late=True, time_limit=2 * 3600)
def version_export(self, export_id: int) -> str:  # noqa: ANN001
    """Build one version export's zip. A redelivered message finds the export no longer queued and does nothing."""
    if not exports.version_export_claim(export_id=export_id, worker=self.request.hostname or "unknown"):
        return "not claimed: another worker has it, or it already ran"
    return exports.version_export_execute(export_id=export_id).status


@shared_task(name="workers.playground", queue="gpu", bind=True, acks_late=True, time_limit=3600)
def playground_answer(self, request_id: int) -> str:  # noqa: ANN001
    """Answer one playground question. A redelivered message finds it no longer queued and does nothing."""
    if not playground.playground_request_claim(request_id=request_id, worker=self.request.hostname or "unknown"):
        return "not claimed: another worker has it, or it was stopped"
    return playground.playground_request_execute(request_id=request_id).status
