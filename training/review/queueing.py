"""Sending a generation job to a gpu worker once its row is committed: one home for the generation and reward
services, which both queue jobs and neither imports the other for it."""
from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from training.broker import send_by_name
from training.models import GenerationJob

logger = logging.getLogger(__name__)

GENERATE_TASK = "workers.generate"
JobStatus = GenerationJob.Status


def generation_job_enqueue_on_commit(job_id: int) -> None:
    """Send the job's message once the transaction that made it commits."""
    transaction.on_commit(lambda: _send(job_id))


def _send(job_id: int) -> None:
    """Publish the job's message; with the broker unreachable, fail the job with the reason instead of a 500."""
    error = send_by_name(GENERATE_TASK, args=[job_id], queue="gpu")
    if error is not None:
        logger.error("Generation job %s could not be queued: the broker is unreachable (%s).", job_id, error)
        GenerationJob.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(
            status=JobStatus.FAILED,
            finished_at=timezone.now(),
            error="The task broker could not be reached, so the job was not queued. Start it again once the "
            "broker is back.",
        )
