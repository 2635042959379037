"""TuningRun.eta_seconds: a forecast that holds steady through evaluations and checkpoints (issue 10)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.factories import ProjectFactory, make_run
from training.models import RunMetric

pytestmark = pytest.mark.django_db

STARTUP, STEP, EVAL_EVERY, EVAL_COST, TOTAL = 40.0, 1.5, 10, 6.0, 100


def _logged_at(step: int) -> float:
    """Seconds after start when training step ``step`` is logged: model loading, then steps, with an evaluation
    and a checkpoint after every 10th step that delay the next one."""
    return STARTUP + STEP * step + EVAL_COST * ((step - 1) // EVAL_EVERY)


def _running_run(upto: int, *, started, settings=None):
    run = make_run(ProjectFactory(), status="running")
    run.settings = {"save_steps": EVAL_EVERY} if settings is None else settings
    run.started_at, run.step, run.total_steps = started, upto, TOTAL
    run.save()
    for step in range(1, upto + 1):
        metric = RunMetric.objects.create(run=run, step=step, values={"loss": 0.5})
        RunMetric.objects.filter(pk=metric.pk).update(created_at=started + timedelta(seconds=_logged_at(step)))
        if step % EVAL_EVERY == 0:
            RunMetric.objects.create(run=run, step=step, split="eval", values={"eval_loss": 0.5})
    return run


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param(None, id="interval-as-configured"),
        # Automatic evaluation cadence and a checkpoint interval that says nothing about it: read from the log.
        pytest.param({"eval_steps": None, "save_steps": 50}, id="interval-as-logged"),
    ],
)
@pytest.mark.parametrize("step", [20, 35, 50, 80, 95])
def test_the_eta_stays_within_ten_percent_or_one_evaluation_of_the_time_really_left(step, settings):
    started = timezone.now() - timedelta(hours=1)
    run = _running_run(step, started=started, settings=settings)
    now = started + timedelta(seconds=_logged_at(step))

    eta = run.eta_seconds(now)

    # The run ends after its last evaluation. The old average since start said 304 s at step 20 (truth 174 s)
    # and 139 s at step 50 (truth 111 s): model loading and all.
    truth = _logged_at(TOTAL) + EVAL_COST - _logged_at(step)
    assert eta == pytest.approx(truth, rel=0.10, abs=EVAL_COST)


def test_the_eta_counts_down_between_logged_steps():
    started = timezone.now() - timedelta(hours=1)
    run = _running_run(50, started=started)
    logged = started + timedelta(seconds=_logged_at(50))

    assert run.eta_seconds(logged + timedelta(seconds=1)) == pytest.approx(run.eta_seconds(logged) - 1)


def test_steps_logged_before_this_attempt_started_are_ignored():
    first_start = timezone.now() - timedelta(hours=2)
    run = _running_run(30, started=first_start)
    # A retry resumed from step 30 an hour later; it has logged nothing yet but its step counter.
    run.started_at = first_start + timedelta(hours=1)
    run.save()
    now = run.started_at + timedelta(seconds=60)

    # The first attempt's rows give no pace for this one: no forecast until this attempt logs two steps (issue 26;
    # the average since this attempt started, 60 s for "30 steps", was the old fallback and counted loading).
    assert run.eta_seconds(now) is None
    for step, seconds in ((31, 50), (32, 53)):
        metric = RunMetric.objects.create(run=run, step=step, values={"loss": 0.5})
        RunMetric.objects.filter(pk=metric.pk).update(created_at=run.started_at + timedelta(seconds=seconds))
    run.step = 32
    assert run.eta_seconds(run.started_at + timedelta(seconds=53)) == pytest.approx(3 * (TOTAL - 32))


def test_no_eta_unless_running_with_a_step():
    run = make_run(ProjectFactory(), status="queued")

    assert run.eta_seconds(timezone.now()) is None


def test_no_forecast_until_two_steps_are_logged_so_model_loading_is_not_taken_for_training():
    # Issue 26: the first forecast said 13 minutes when 86 s were left, the model's loading counted as a step's time.
    started = timezone.now() - timedelta(seconds=_logged_at(1) + 0.5)
    run = _running_run(1, started=started)

    assert run.eta_seconds(timezone.now()) is None, "one step logged: no pace yet"

    run = _running_run(2, started=timezone.now() - timedelta(seconds=_logged_at(2)))
    eta = run.eta_seconds(timezone.now())
    assert eta == pytest.approx(STEP * (TOTAL - 2), abs=1.0), "the pace of the steps, not of the start-up"


def test_the_run_page_draws_the_run_like_every_long_job_with_steps_rate_eta_and_cancel(admin_client):
    # Issue 26: the run page had its own bar, no rate, and Cancel apart from it; generation jobs and exports had
    # theirs. Now each draws templates/_progress.html from training.presenters.progress.
    now = timezone.now()
    run = _running_run(35, started=now - timedelta(seconds=_logged_at(35)))

    html = admin_client.get(f"/runs/{run.pk}/status/").content.decode()

    assert 'data-testid="run-progress" data-status="running"' in html
    assert 'data-testid="run-percent">35%' in html and 'data-testid="run-done">step 35 of 100' in html
    assert 'data-testid="run-rate">28.6 steps a minute' in html  # 1.5 s a step and 6 s an evaluation every 10
    assert 'data-testid="run-eta">about 2 min left' in html  # 65 steps at 2.1 s
    assert f'action="/runs/{run.pk}/cancel/"' in html and 'data-testid="run-cancel">Cancel run</button>' in html


def test_a_queued_run_says_it_waits_and_a_cancelled_one_says_it_is_stopping(admin_client):
    run = make_run(ProjectFactory(), status="queued")
    html = admin_client.get(f"/runs/{run.pk}/status/").content.decode()
    assert 'data-testid="run-waiting">waiting for a worker' in html and 'data-testid="run-eta"' not in html

    run.status, run.cancel_requested, run.started_at = "running", True, timezone.now()
    run.save()
    html = admin_client.get(f"/runs/{run.pk}/status/").content.decode()
    assert 'data-testid="run-cancelling">Cancelling: training stops after the current step.' in html
    assert 'data-testid="run-cancel"' not in html and 'data-testid="run-waiting">loading the model' in html
