"""The trainer as a child process on a tiny random Llama: results and progress come back over the events
file, and the parent owns its lifetime (cancel, abandon, a kill by the OS, tampered rows)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.trainer.conftest import make_dpo_rows
from training.trainer.checkpoints import checkpoint_complete, latest_checkpoint
from training.trainer.child import RunSpec
from training.trainer.process import TrainerProcess, run_supervised
from training.trainer.rows import rows_hash

SETTINGS = {
    "max_steps": 3,
    "per_device_batch_size": 2,
    "learning_rate": 5e-3,
    "validation_fraction": 0.25,
    "max_length": 64,
    "save_steps": 1,
    "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
}


def _spec(tmp_path: Path, model_dir: Path, *, rows=None, recorded_hash: str | None = None, **settings) -> RunSpec:
    rows = make_dpo_rows(8) if rows is None else rows
    rows_path = tmp_path / "rows.json"
    rows_path.write_text(json.dumps(rows))
    return RunSpec(
        model_path=str(model_dir), rows_path=str(rows_path), rows_hash=recorded_hash or rows_hash(rows),
        settings={**SETTINGS, **settings}, output_dir=str(tmp_path), events_path=str(tmp_path / "events.jsonl"),
    )


def _never() -> bool:
    return False


def _always() -> bool:
    return True


def test_events_written_just_before_the_child_exits_are_all_forwarded(tiny_model_dir, tmp_path, monkeypatch):
    # A fast run's last steps were written between the parent's read of the events file and its look at the
    # child's exit, and the read after the exit kept only the result: a 3-step run showed step 1 alone.
    # Here every read lets the child finish before it returns, which puts each event in that window.
    read = TrainerProcess.events

    def read_then_let_it_finish(self):
        events = read(self)
        self.popen.wait()
        return events

    monkeypatch.setattr(TrainerProcess, "events", read_then_let_it_finish)
    progress = []

    ended = run_supervised(
        _spec(tmp_path, tiny_model_dir, validation_fraction=0.0), on_progress=progress.extend,
        should_cancel=_never, still_ours=_always,
    )

    assert ended.error == "" and ended.result["steps"] == 3
    assert [e["step"] for e in progress if e["kind"] == "train"] == [1, 2, 3]


def test_the_child_trains_and_reports_progress_and_its_result(tiny_model_dir, tmp_path, monkeypatch):
    progress = []
    child: dict = {}
    monkeypatch.setenv("DATABASE_URL", "postgres://user:secret@db/preftune")
    monkeypatch.setenv("DJANGO_SECRET_KEY", "not-for-the-child")
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://:secret@redis:6379/0")

    def report(events):
        if "environ" not in child:  # read while the child runs: what it was started with
            child["environ"] = Path(f"/proc/{child['pid']}/environ").read_bytes().split(b"\0")
        progress.extend(events)

    ended = run_supervised(
        _spec(tmp_path, tiny_model_dir), on_progress=report, should_cancel=_never, still_ours=_always,
        on_start=lambda pid: child.update(pid=pid),
    )

    assert ended.error == "" and ended.returncode == 0
    assert ended.result["cancelled"] is False and ended.result["steps"] == 3
    assert Path(ended.result["adapter_dir"], "adapter_model.safetensors").is_file()
    assert ended.result["outcome"]["kept_step"] in (1, 2, 3)
    assert [e["step"] for e in progress if e["kind"] == "train"] == [1, 2, 3]
    assert any(e["kind"] == "eval" and "eval_rewards/accuracies" in e["metrics"] for e in progress)
    # The child reads only its spec: none of the web app's secrets reach it.
    names = {entry.split(b"=", 1)[0] for entry in child["environ"] if entry}
    assert names and not names & {b"DATABASE_URL", b"DJANGO_SECRET_KEY", b"CELERY_BROKER_URL"}
    assert b"PYTHONPATH" in names


def test_rows_that_no_longer_match_the_snapshot_hash_are_refused(tiny_model_dir, tmp_path):
    rows = make_dpo_rows(8)
    recorded = rows_hash(rows)
    rows[0]["chosen"][0]["content"] = "Tampered after the snapshot was taken."

    ended = run_supervised(
        _spec(tmp_path, tiny_model_dir, rows=rows, recorded_hash=recorded),
        on_progress=lambda events: None, should_cancel=_never, still_ours=_always,
    )

    assert ended.result is None and ended.returncode == 3
    assert ended.error.startswith("SnapshotMismatch: The snapshot's rows do not match the hash recorded")
    assert f"recorded {recorded[:12]}" in ended.error
    assert not (tmp_path / "checkpoints").exists()


def test_a_child_killed_by_the_os_fails_with_the_signal_and_its_last_output(tiny_model_dir, tmp_path):
    child = {}

    def kill_at_first_step(events):
        if "pid" in child:
            os.kill(child.pop("pid"), signal.SIGKILL)
            child["killed_at"] = time.monotonic()

    ended = run_supervised(
        _spec(tmp_path, tiny_model_dir, max_steps=200),
        on_progress=kill_at_first_step, should_cancel=_never, still_ours=_always,
        on_start=lambda pid: child.update(pid=pid),
    )

    assert ended.result is None and ended.returncode == -signal.SIGKILL
    # The test sent kill -9 itself, and the kernel's count of out-of-memory kills did not move.
    assert ended.error.startswith(
        "The training process was killed by SIGKILL (not the out-of-memory killer, which killed nothing meanwhile"
    )
    assert "Last lines of its output:" in ended.error
    assert time.monotonic() - child["killed_at"] < 5


def test_cancel_asks_the_child_to_stop_after_its_step(tiny_model_dir, tmp_path):
    steps = []

    ended = run_supervised(
        _spec(tmp_path, tiny_model_dir, max_steps=200),
        on_progress=lambda events: steps.extend(e["step"] for e in events if e["kind"] == "train"),
        should_cancel=lambda: len(steps) >= 2,
        still_ours=_always,
    )

    assert ended.returncode == 0 and ended.result["cancelled"] is True
    assert ended.result["adapter_dir"] is None and ended.result["steps"] < 200


def test_a_run_that_is_no_longer_ours_has_its_child_stopped(tiny_model_dir, tmp_path):
    steps = []

    ended = run_supervised(
        _spec(tmp_path, tiny_model_dir, max_steps=200),
        on_progress=lambda events: steps.extend(e["step"] for e in events),
        should_cancel=_never,
        still_ours=lambda: len(steps) < 2,
    )

    assert ended.stopped and ended.result is None
    assert max(steps) < 200
    assert not (tmp_path / "adapter").exists()


def test_resume_skips_a_checkpoint_that_was_not_written_in_full(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    for step in (3, 6):
        folder = checkpoints / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        (folder / "adapter_model.safetensors").write_bytes(b"weights")
        (folder / "optimizer.pt").write_bytes(b"optimizer")
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    # Killed while writing checkpoint-9: the adapter card came first, nothing else.
    (checkpoints / "checkpoint-9").mkdir()
    (checkpoints / "checkpoint-9" / "README.md").write_text("# adapter")
    # Killed while writing the state of checkpoint-12: cut-off JSON.
    cut = checkpoints / "checkpoint-12"
    cut.mkdir()
    (cut / "adapter_model.safetensors").write_bytes(b"weights")
    (cut / "optimizer.pt").write_bytes(b"optimizer")
    (cut / "trainer_state.json").write_text('{"global_step": 1')

    assert latest_checkpoint(tmp_path) == str(checkpoints / "checkpoint-6")
    assert not checkpoint_complete(checkpoints / "checkpoint-9")
    assert not checkpoint_complete(cut)


def test_a_yield_saves_a_checkpoint_at_the_current_step_then_stops(tiny_model_dir, tmp_path):
    steps = []

    ended = run_supervised(
        _spec(tmp_path, tiny_model_dir, max_steps=200, save_steps=100),
        on_progress=lambda events: steps.extend(e["step"] for e in events if e["kind"] == "train"),
        should_cancel=_never, still_ours=_always,
        should_yield=lambda: len(steps) >= 3,
    )

    assert ended.yielded and ended.result["paused"] and ended.result["cancelled"]
    stopped_at = ended.result["steps"]
    assert 3 <= stopped_at < 100
    # save_steps is 100, so this checkpoint exists only because the yield asked for it.
    assert latest_checkpoint(tmp_path) == str(tmp_path / "checkpoints" / f"checkpoint-{stopped_at}")


def test_a_yield_sent_while_the_child_starts_hands_the_run_back_instead_of_killing_it(tiny_model_dir, tmp_path):
    """A worker told to shut down just as it starts a run asks for the yield at once, long before the child has
    imported torch and installed its handler: the signal must wait for the handler, not kill the child."""
    ended = run_supervised(
        _spec(tmp_path, tiny_model_dir, max_steps=200, save_steps=100),
        on_progress=lambda events: None, should_cancel=_never, still_ours=_always, should_yield=_always,
    )

    assert ended.yielded, ended.error
    assert "SIGUSR1" not in ended.error


@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGTERM], ids=["yield", "stop"])
def test_a_yield_or_stop_that_lands_as_the_child_exits_leaves_its_result_standing(tiny_model_dir, tmp_path, signum):
    """The worker repeats its yield (or stop) until the child is gone. Python gives its handled signals their
    default action back as the interpreter shuts down, and that action kills: one landing then turned a finished
    run into "killed by SIGUSR1" at step 120 of 120. Here the signal is sent every few milliseconds from the
    first step until the child has exited, so it lands in that window too."""
    child = TrainerProcess.start(_spec(tmp_path, tiny_model_dir, max_steps=200, save_steps=100))
    events = []
    while not events and child.popen.poll() is None:
        events += child.events()
        time.sleep(0.01)
    while child.popen.poll() is None:
        child.signal_group(signum)
        time.sleep(0.002)
    events += child.events()

    assert child.popen.returncode == 0, child.failure_reason()
    result = [event for event in events if event["type"] == "result"]
    assert len(result) == 1 and result[0]["cancelled"] and result[0]["steps"] < 200


def test_the_child_environment_drops_the_web_apps_settings_and_secrets():
    from training.trainer.process import child_environment

    needed = {
        "PATH": "/usr/bin", "HOME": "/home/w", "HF_HOME": "/models", "HF_TOKEN": "hf_x", "HF_HUB_OFFLINE": "1",
        "CUDA_VISIBLE_DEVICES": "0", "NCCL_DEBUG": "WARN", "OMP_NUM_THREADS": "1", "TORCH_HOME": "/t",
        "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True", "PREFTUNE_VAR_DIR": "/var/preftune",
    }
    kept = child_environment({
        **needed,
        "DATABASE_URL": "postgres://u:p@db/x", "DJANGO_SECRET_KEY": "k", "DJANGO_DEBUG": "0", "CELERY_BROKER_URL": "redis://",
        "PGPASSWORD": "p", "DB_CONN_MAX_AGE": "60", "REDIS_URL": "redis://", "SMTP_PASSWORD": "p", "AWS_SECRET_KEY": "s",
        "AWS_SECRET_ACCESS_KEY": "s", "AWS_SESSION_TOKEN": "t", "GITHUB_TOKEN": "t", "OPENAI_API_KEY": "k",
        "SENTRY_DSN": "https://k@sentry", "WEBHOOK_SECRET": "s", "GOOGLE_APPLICATION_CREDENTIALS": "/k.json",
    })

    assert kept == needed
