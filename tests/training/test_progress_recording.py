"""A worker records its trainer's progress one read at a time: the newest step on the run, one metric row a step,
in a handful of statements whatever the number of events (a busy trainer writes dozens between two reads, and
a statement each stalled the worker's look for a cancel or a shutdown by seconds)."""
from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.factories import ProjectFactory, make_run
from training.models import RunMetric, TuningRun
from training.services.execution import _record_progress
from training.trainer.events import ProgressEvent

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def _train(step: int, loss: float) -> ProgressEvent:
    return ProgressEvent(step=step, total_steps=100, metrics={"loss": loss, "note": "not a number"}, kind="train")


def _running_run() -> TuningRun:
    run = make_run(ProjectFactory(name="Progress"), status="running")
    TuningRun.objects.filter(pk=run.pk).update(attempt=2)
    return run


def test_one_read_writes_the_newest_step_and_one_metric_row_a_step_keeping_a_relogged_steps_first_time():
    run = _running_run()
    first_logged = timezone.now() - timedelta(minutes=5)
    earlier = RunMetric.objects.create(run=run, split="train", step=1, values={"loss": 0.9})
    RunMetric.objects.filter(pk=earlier.pk).update(created_at=first_logged)
    evaluation = ProgressEvent(step=4, total_steps=100, metrics={"eval_loss": 0.4}, kind="eval")
    summary = ProgressEvent(step=4, total_steps=100, metrics={"train_runtime": 12.5}, kind="summary")

    _record_progress(run.pk, 2, [_train(1, 0.7), _train(2, 0.6), _train(3, 0.5), _train(4, 0.45), evaluation, summary])

    run.refresh_from_db()
    assert (run.step, run.total_steps) == (4, 100) and run.heartbeat_at is not None
    rows = {(m.split, m.step): m for m in RunMetric.objects.filter(run=run)}
    assert sorted(rows) == [("eval", 4), ("train", 1), ("train", 2), ("train", 3), ("train", 4)]
    assert rows[("train", 1)].values == {"loss": 0.7}, "the re-logged step has the newest values"
    assert rows[("train", 1)].created_at == first_logged, "and keeps its first time, which the ETA's pace reads"
    assert rows[("eval", 4)].values == {"eval_loss": 0.4}


def test_the_statements_do_not_grow_with_the_events_and_none_waits_for_the_disk():
    run = _running_run()

    with CaptureQueriesContext(connection) as few:
        _record_progress(run.pk, 2, [_train(1, 0.5)])
    with CaptureQueriesContext(connection) as many:
        _record_progress(run.pk, 2, [_train(step, 0.5) for step in range(2, 62)])

    writes = [q["sql"] for q in many.captured_queries if q["sql"].split()[0] in ("UPDATE", "INSERT")]
    assert len(many.captured_queries) == len(few.captured_queries) and len(writes) == 2, many.captured_queries
    if connection.vendor == "postgresql":
        assert sum("synchronous_commit TO OFF" in q["sql"] for q in many.captured_queries) == 2
    assert RunMetric.objects.filter(run=run).count() == 61


def test_a_superseded_attempt_records_nothing():
    run = _running_run()

    _record_progress(run.pk, 1, [_train(1, 0.5), _train(2, 0.4)])

    run.refresh_from_db()
    assert run.step == 0 and not RunMetric.objects.filter(run=run).exists()


def test_a_worker_recording_progress_imports_no_torch():
    # Importing torch took the worker 5 s at the run's first event, in which it noticed no cancel, no shutdown
    # and no dead child: a tiny run trained to its end after its worker was told to shut down.
    code = (
        "import sys, django; django.setup()\n"
        "from training.services.execution import _progress_event\n"
        "from training.trainer import child, process\n"
        "_progress_event({'step': 1, 'total_steps': 2, 'metrics': {'loss': 0.5}})\n"
        "print(sorted(m for m in ('torch', 'transformers', 'peft', 'trl') if m in sys.modules))\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stderr[-2000:]
