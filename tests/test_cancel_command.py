"""manage.py cancel: the Cancel buttons from a shell, for runs and generation jobs."""
from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from tests.factories import ProjectFactory, make_run
from training.models import GenerationJob

pytestmark = pytest.mark.django_db


def _cancel(**options) -> str:
    out = StringIO()
    call_command("cancel", stdout=out, **options)
    return out.getvalue().strip()


def test_it_cancels_a_queued_run_and_asks_a_running_one_to_stop():
    queued = make_run(ProjectFactory(), status="queued")
    running = make_run(ProjectFactory(), status="running")

    assert _cancel(run=queued.pk) == f"Run {queued.pk} cancelled."
    assert _cancel(run=running.pk) == f"Run {running.pk} cancelling: training stops after the current step."

    queued.refresh_from_db()
    running.refresh_from_db()
    assert queued.status == "cancelled" and (running.status, running.cancel_requested) == ("running", True)


def test_a_finished_run_is_left_as_it_was():
    done = make_run(ProjectFactory(), status="succeeded")

    assert _cancel(run=done.pk) == f"Nothing to cancel: run {done.pk} has already ended (succeeded)."
    done.refresh_from_db()
    assert done.status == "succeeded"


def test_it_cancels_generation_jobs():
    job = GenerationJob.objects.create(project=ProjectFactory(), prompt_ids=[], settings={}, status="running")

    assert _cancel(job=job.pk) == f"Job {job.pk} cancelled: it stops once the batch it is writing is stored."
    job.refresh_from_db()
    assert job.status == "cancelled"


def test_it_needs_one_existing_thing_to_cancel():
    with pytest.raises(CommandError, match="No run with id 999999"):
        _cancel(run=999999)
    with pytest.raises(CommandError, match="No generation job with id 999999"):
        _cancel(job=999999)
    with pytest.raises(CommandError, match="one of the arguments --run --job is required"):
        _cancel()
