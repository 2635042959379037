"""A run cancelled from its page, and a worker killed mid-run: both end in a clear state, and the killed run
resumes from its last checkpoint when retried. Real worker processes, Redis, PostgreSQL, a tiny model."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from tests.factories import ProjectFactory, make_run
from tests.training.conftest import LONG_RUN, voted_compare_project
from tests.worker_process import celery_worker, kill_worker, purge_queues, trainer_pids, wait_for
from training import services
from training.models import TuningRun
from training.trainer.checkpoints import latest_checkpoint

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.worker,
    pytest.mark.postgres,
    pytest.mark.timeout(480),
]

# A run a fault test catches part-way: the tests hold its trainer (SIGSTOP) once its events say it has taken two
# steps, and on the tiny model a CPU step takes about 0.15 s, so the run leaves room for a busy machine.
MID_RUN_STEPS = 60


def _launch(project, base, admin, **settings) -> TuningRun:
    purge_queues("default", "gpu")
    return services.run_launch(
        project=project, base_model_id=base.pk, method="dpo", settings_data={**LONG_RUN, **settings}, created_by=admin
    )


def _status(run_id: int) -> str:
    return TuningRun.objects.values_list("status", flat=True).get(pk=run_id)


def _checkpoint(run: TuningRun) -> str | None:
    """The newest complete checkpoint of the run's latest attempt."""
    run = TuningRun.objects.get(pk=run.pk)
    return latest_checkpoint(run.attempt_dir()) if run.attempt else None


def _training_child(run: TuningRun) -> int:
    def started() -> int | None:
        # The trainer's own events, not the run's row, which the worker writes a moment later.
        run.refresh_from_db()
        if not run.output_dir or not run.attempt or max(_events_steps(run.attempt_dir()), default=0) < 2:
            return None
        pids = trainer_pids(run.output_dir)
        return pids[0] if pids else None

    try:
        return wait_for(started, timeout=180, interval=0.1, what="the training child to take a step")
    except AssertionError as timed_out:
        run.refresh_from_db()
        raise AssertionError(
            f"{timed_out}: the run is {run.status} at step {run.step} of {run.total_steps} on {run.worker!r}, "
            f"error {run.error[-300:]!r}"
        ) from None


def _held_at_a_checkpoint(run: TuningRun, child: int) -> str:
    """Stop the trainer and let it go on 50 ms at a time until its attempt has a complete checkpoint; the newest.

    The tiny run ends seconds after its first checkpoint: a test that waited for one and then acted could find,
    on a busy machine, a run already finished (no lock held, no child left to kill)."""
    os.kill(child, signal.SIGSTOP)
    deadline = time.monotonic() + 180
    while not (checkpoint := _checkpoint(run)):
        assert time.monotonic() < deadline, "no complete checkpoint after 180 s"
        os.kill(child, signal.SIGCONT)
        time.sleep(0.05)
        os.kill(child, signal.SIGSTOP)
    return checkpoint


def test_cancel_from_the_run_page_stops_at_the_next_step_and_frees_the_worker(client, admin, tiny_base):
    project = voted_compare_project(8, name="Cancel me")
    run = _launch(project, tiny_base, admin)

    with celery_worker("cancel"):
        wait_for(lambda: TuningRun.objects.filter(pk=run.pk, step__gte=2).exists(), timeout=180, what="training to start")
        response = client.post(f"/runs/{run.pk}/cancel/")
        wait_for(lambda: _status(run.pk) == "cancelled", timeout=120, what="the run to stop")
        follow_up = _launch(project, tiny_base, admin, max_steps=2)
        wait_for(lambda: _status(follow_up.pk) == "succeeded", timeout=180, what="the freed worker to train the next run")

    run.refresh_from_db()
    assert response.status_code == 302
    assert trainer_pids(run.output_dir) == [], "the cancelled run's training process is gone"
    assert run.step < LONG_RUN["max_steps"] and run.model_version is None
    assert run.error == "Cancelled by an admin."
    assert "Cancelled" in client.get(f"/runs/{run.pk}/").content.decode()


def test_a_queued_run_is_cancelled_at_once_without_a_worker(client, admin):
    run = make_run(ProjectFactory(), status="queued")

    client.post(f"/runs/{run.pk}/cancel/")

    run.refresh_from_db()
    assert (run.status, run.error) == ("cancelled", "Cancelled before it started.")


@pytest.mark.parametrize("status", ["succeeded", "failed"])
def test_cancel_on_a_finished_run_says_there_is_nothing_to_cancel_and_changes_nothing(client, admin, status):
    run = make_run(ProjectFactory(), status=status)

    response = client.post(f"/runs/{run.pk}/cancel/", follow=True)

    run.refresh_from_db()
    html = response.content.decode()
    assert f"Nothing to cancel: run {run.pk} has already ended ({status})." in html and "cancelling" not in html
    assert (run.status, run.cancel_requested) == (status, False)


def test_a_worker_killed_mid_run_leaves_the_run_failed_and_a_retry_resumes(client, admin, tiny_base):
    project = voted_compare_project(8, name="Kill the worker")
    run = _launch(project, tiny_base, admin, max_steps=MID_RUN_STEPS)

    with celery_worker("doomed") as worker:
        _held_at_a_checkpoint(run, _training_child(run))
        kill_worker(worker)
    assert _status(run.pk) == "running", "nothing has noticed yet: the worker died without a word"

    # The same worker coming back knows it is training nothing, so the run it held died with it.
    with celery_worker("doomed"):
        wait_for(lambda: _status(run.pk) == "failed", timeout=60, what="the restarted worker to fail the orphaned run")
        run.refresh_from_db()
        assert "worker training this run stopped" in run.error
        assert "worker training this run stopped" in client.get(f"/runs/{run.pk}/").content.decode()

        client.post(f"/runs/{run.pk}/retry/")
        wait_for(lambda: _status(run.pk) in ("succeeded", "failed"), timeout=240, what="the retried run to finish")

    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert run.attempt == 2
    assert "checkpoint-" in run.resumed_from
    assert (run.step, run.model_version is not None) == (MID_RUN_STEPS, True)


def test_a_silent_worker_is_reaped_by_its_stale_heartbeat():
    run = make_run(ProjectFactory(), status="running")
    TuningRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=10), worker="gone@host")
    fresh = make_run(ProjectFactory(), status="running")
    TuningRun.objects.filter(pk=fresh.pk).update(heartbeat_at=timezone.now(), worker="alive@host")

    reaped = services.runs_reap_stale(older_than=timedelta(minutes=2))

    assert reaped == [run.pk]
    assert _status(run.pk) == "failed" and _status(fresh.pk) == "running"


def test_a_redelivered_message_for_a_claimed_run_does_nothing():
    run = make_run(ProjectFactory(), status="queued")

    assert services.run_claim(run_id=run.pk, worker="first@host") is True
    assert services.run_claim(run_id=run.pk, worker="second@host") is False
    run.refresh_from_db()
    assert (run.status, run.worker, run.attempt) == ("running", "first@host", 1)


def test_only_failed_or_cancelled_runs_can_be_retried(client, admin):
    run = make_run(ProjectFactory(), status="succeeded")

    response = client.post(f"/runs/{run.pk}/retry/", follow=True)

    assert "Only a failed or cancelled run can be retried." in response.content.decode()
    assert _status(run.pk) == "succeeded"


def test_a_training_child_killed_by_the_os_fails_the_run_at_once_and_the_worker_serves_the_next(client, admin, tiny_base):
    project = voted_compare_project(8, name="Kill the trainer")
    run = _launch(project, tiny_base, admin)

    with celery_worker("survivor") as worker:
        child = _training_child(run)
        os.kill(child, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_for(lambda: _status(run.pk) == "failed", timeout=30, interval=0.05, what="the run to fail")
        noticed_after = time.monotonic() - killed_at
        follow_up = _launch(project, tiny_base, admin, max_steps=2)
        wait_for(lambda: _status(follow_up.pk) == "succeeded", timeout=180, what="the same worker to train the next run")
        assert worker.poll() is None, "the worker process stayed up"

    run.refresh_from_db()
    assert noticed_after < 5, f"noticed after {noticed_after:.1f} s"
    # The test sent kill -9 itself, and the kernel's count of out-of-memory kills did not move.
    assert run.error.startswith(
        "The training process was killed by SIGKILL (not the out-of-memory killer, which killed nothing meanwhile"
    )
    assert "The training process was killed by SIGKILL" in client.get(f"/runs/{run.pk}/").content.decode()


def test_a_sigterm_from_outside_is_not_taken_for_an_admin_s_cancel(client, admin, tiny_base):
    project = voted_compare_project(8, name="Stopped from outside")
    run = _launch(project, tiny_base, admin)

    with celery_worker("outside"):
        os.kill(_training_child(run), signal.SIGTERM)  # what `docker stop` or an orchestrator sends
        wait_for(lambda: _status(run.pk) in ("failed", "cancelled", "succeeded"), timeout=60, what="the run to end")

    run.refresh_from_db()
    assert run.status == "failed" and run.cancel_requested is False
    assert run.error.startswith("The training process was stopped by a SIGTERM from outside preftune")
    assert "not by an admin" in client.get(f"/runs/{run.pk}/").content.decode()


def test_a_kill_while_a_checkpoint_is_written_resumes_from_the_newest_complete_one(client, admin, tiny_base):
    project = voted_compare_project(8, name="Kill mid-checkpoint")
    run = _launch(project, tiny_base, admin, max_steps=MID_RUN_STEPS)

    with celery_worker("checkpoints"):
        child = _training_child(run)
        _held_at_a_checkpoint(run, child)
        os.kill(child, signal.SIGKILL)
        wait_for(lambda: _status(run.pk) == "failed", timeout=30, what="the run to fail")
        complete = _checkpoint(run)
        # What a kill part-way through writing the next checkpoint leaves: the adapter card and nothing else.
        partial = Path(complete).parent / f"checkpoint-{int(complete.rsplit('-', 1)[1]) + 1}"
        partial.mkdir()
        (partial / "README.md").write_text("# adapter card, written first")

        client.post(f"/runs/{run.pk}/retry/")
        wait_for(lambda: _status(run.pk) in ("succeeded", "failed"), timeout=240, what="the retried run to finish")

    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert run.resumed_from == complete
    assert (run.step, run.attempt) == (MID_RUN_STEPS, 2)


def _events_steps(attempt_dir: Path) -> list[int]:
    events = attempt_dir / "events.jsonl"
    lines = events.read_text().splitlines() if events.exists() else []
    return [json.loads(line)["step"] for line in lines if '"progress"' in line]


def _checkpoint_names(attempt_dir: Path) -> set[str]:
    folder = attempt_dir / "checkpoints"
    return {path.name for path in folder.iterdir()} if folder.is_dir() else set()


def test_a_frozen_worker_that_wakes_after_its_run_moved_on_trains_and_writes_nothing_more(client, admin, tiny_base, tmp_path):
    # Given a run whose worker (and its trainer) froze after a checkpoint, was failed by the reaper, and was
    # retried: a second worker takes it as attempt 2
    project = voted_compare_project(8, name="Two workers")
    run = _launch(project, tiny_base, admin, max_steps=MID_RUN_STEPS)
    with celery_worker("frozen") as frozen:
        old_child = _training_child(run)
        _held_at_a_checkpoint(run, old_child)
        os.killpg(frozen.pid, signal.SIGSTOP)
        try:
            at_freeze = TuningRun.objects.get(pk=run.pk)
            old_dir, old_steps, old_checkpoints = (
                at_freeze.attempt_dir(), _events_steps(at_freeze.attempt_dir()), _checkpoint_names(at_freeze.attempt_dir())
            )
            assert services.runs_reap_stale(worker_name=at_freeze.worker) == [run.pk]
            client.post(f"/runs/{run.pk}/retry/")
            with celery_worker("second"):
                new_log = at_freeze.attempt_dir(2) / "trainer.log"
                # Then the new attempt's trainer waits while the old one, frozen, still holds the run
                wait_for(lambda: new_log.exists() and "Waiting for the trainer of an earlier attempt" in new_log.read_text(),
                         timeout=120, interval=0.2, what="attempt 2's trainer to wait for attempt 1's")
                time.sleep(2)
                assert _events_steps(at_freeze.attempt_dir(2)) == [] and not _checkpoint_names(at_freeze.attempt_dir(2))
                # When the frozen worker and trainer wake up
                os.kill(old_child, signal.SIGCONT)
                os.killpg(frozen.pid, signal.SIGCONT)
                wait_for(lambda: _status(run.pk) in ("succeeded", "failed"), timeout=240, what="attempt 2 to finish")
        finally:
            for send in (lambda: os.kill(old_child, signal.SIGCONT), lambda: os.killpg(frozen.pid, signal.SIGCONT)):
                with contextlib.suppress(ProcessLookupError):
                    send()

    # Then the old trainer stopped on waking, having written no event and no checkpoint past the freeze, and the
    # new attempt trained the run to the end from the old attempt's newest checkpoint
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert (run.attempt, run.step) == (2, MID_RUN_STEPS)
    # (Whichever notices first stops it: its own check of the run folder, which logs "was superseded by attempt 2",
    # or its woken worker, which finds the row no longer its attempt's and kills it.)
    assert not Path(f"/proc/{old_child}").exists() or "Z" in Path(f"/proc/{old_child}/stat").read_text().split(") ")[1][:1]
    assert _events_steps(old_dir) == old_steps and _checkpoint_names(old_dir) == old_checkpoints
    assert run.resumed_from.startswith(str(old_dir)) and run.model_version.adapter_path.startswith(str(run.attempt_dir(2)))
    assert sorted(set(_events_steps(run.attempt_dir(2)))) == list(range(int(run.resumed_from.rsplit("-", 1)[1]) + 1, MID_RUN_STEPS + 1))
    # And its adapter is bit for bit the one a trainer that was never interrupted makes from the same spec
    assert _adapter_bytes(run.model_version.adapter_path) == _uninterrupted_adapter_bytes(run.attempt_dir(2), tmp_path)


def _adapter_bytes(adapter_dir: str | Path) -> dict[str, bytes]:
    from safetensors.torch import load_file

    weights = load_file(str(Path(adapter_dir) / "adapter_model.safetensors"))
    return {name: tensor.numpy().tobytes() for name, tensor in weights.items()}


def _uninterrupted_adapter_bytes(attempt_dir: Path, tmp_path: Path) -> dict[str, bytes]:
    """The same spec (rows, settings, model) trained start to end by the training child, as a worker starts it."""
    import subprocess
    import sys

    from training.trainer.child import RunSpec

    spec = RunSpec.read(attempt_dir / "run-spec.json")
    spec.output_dir, spec.events_path = str(tmp_path / "attempt-1"), str(tmp_path / "attempt-1" / "events.jsonl")
    spec.run_dir, spec.attempt, spec.resume_from_checkpoint = str(tmp_path), 1, None
    Path(spec.output_dir).mkdir(parents=True)
    spec.write(tmp_path / "run-spec.json")
    subprocess.run([sys.executable, "-m", "training.trainer", str(tmp_path / "run-spec.json")], check=True, timeout=300,
                   cwd=Path(__file__).resolve().parents[2])
    return _adapter_bytes(Path(spec.output_dir) / "adapter")


def test_the_reaper_failing_a_run_stops_its_training_child(admin, tiny_base):
    project = voted_compare_project(8, name="Reap me")
    run = _launch(project, tiny_base, admin)

    with celery_worker("reaped"):
        child = _training_child(run)
        reaped = services.runs_reap_stale(worker_name=TuningRun.objects.get(pk=run.pk).worker)
        wait_for(lambda: not trainer_pids(run.output_dir), timeout=30, what="the child to be stopped")

    run.refresh_from_db()
    assert reaped == [run.pk] and child
    assert run.status == "failed" and "worker training this run stopped" in run.error
    assert run.model_version is None


def test_a_snapshot_changed_after_launch_is_refused_before_training(client, admin, tiny_base):
    project = voted_compare_project(8, name="Tampered")
    run = _launch(project, tiny_base, admin, max_steps=2)
    snapshot = run.snapshot
    snapshot.rows[0]["chosen"][0]["content"] = "An answer nobody voted for."
    snapshot.save(update_fields=["rows"])

    with celery_worker("tamper"):
        wait_for(lambda: _status(run.pk) in ("failed", "succeeded"), timeout=120, what="the run to end")

    run.refresh_from_db()
    assert run.status == "failed"
    assert run.error.startswith("SnapshotMismatch: The snapshot's rows do not match the hash recorded when it was taken")
    assert run.step == 0 and run.model_version is None


def test_a_worker_shut_down_mid_run_hands_the_run_back_to_resume_elsewhere(admin, tiny_base):
    project = voted_compare_project(8, name="Hand it back")
    run = _launch(project, tiny_base, admin, max_steps=2 * MID_RUN_STEPS, save_steps=1000)

    with celery_worker("leaving") as worker:
        _training_child(run)
        os.kill(worker.pid, signal.SIGTERM)  # a warm shutdown: systemd stop, a deploy, `celery control shutdown`
        asked_at = time.monotonic()
        worker.wait(timeout=90)
        shutdown_took = time.monotonic() - asked_at

    run.refresh_from_db()
    assert (run.status, run.error, run.worker) == ("queued", "", ""), (
        f"attempt {run.attempt} at step {run.step} of {run.total_steps}, resumed from {run.resumed_from!r}, "
        f"shutdown took {shutdown_took:.1f} s"
    )
    assert shutdown_took < 60, f"the shutdown waited {shutdown_took:.0f} s"
    handed_back_at = run.step
    checkpoint = _checkpoint(run)
    assert checkpoint and checkpoint.endswith(f"checkpoint-{handed_back_at}"), "saved where it stopped"
    assert trainer_pids(run.output_dir) == []

    with celery_worker("arriving"):
        wait_for(lambda: _status(run.pk) in ("succeeded", "failed"), timeout=240, what="the run to resume and finish")

    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert (run.attempt, run.step, run.resumed_from) == (2, 2 * MID_RUN_STEPS, checkpoint)


def test_a_worker_announces_its_queues_and_gpus_and_the_pages_say_who_takes_what(client, admin):
    from training.models import Worker

    queued = make_run(ProjectFactory(), status="queued")
    TuningRun.objects.filter(pk=queued.pk).update(settings={**queued.settings, "num_processes": 2})
    assert "No worker that listens there has started yet" in client.get(f"/runs/{queued.pk}/").content.decode()

    with celery_worker("announcer", queues="default,gpu,gpu2"):
        worker = wait_for(lambda: Worker.objects.filter(hostname__startswith="announcer@").first(), timeout=30,
                          what="the worker's announcement")

    assert worker.queues == ["default", "gpu", "gpu2"] and worker.gpus == 0 and worker.max_run_gpus == 2
    page = client.get(f"/projects/{queued.project_id}/runs/new/").content.decode()
    assert f"Workers: {worker.hostname} takes runs on up to 2 GPUs (a CPU worker)." in page
    run_page = client.get(f"/runs/{queued.pk}/").content.decode()
    assert "Waiting for a worker with 2 GPUs" in run_page and "No worker that listens there" not in run_page
