"""One training run in its own process: `python -m training.trainer SPEC.json`.

The worker writes a run spec (what to train on, where to write) and starts this module, alone or under
`accelerate launch` for several processes. It reports back through an events file of JSON lines that the
worker tails, rank 0 only:

    {"type": "progress", "step": 3, "total_steps": 40, "kind": "train", "metrics": {...}, "epoch": 0.1}
    {"type": "result", ...TrainResult without its history...}
    {"type": "refused", "reason": "SettingsError: ..."}

A failure is a non-zero exit with the traceback on stderr; the worker records its last lines. Input the run cannot
train on is refused: one line on stderr, exit status EXIT_REFUSED, and the reason as an event too, since a
multi-process launcher exits with its own status and buries the line under its report. SIGTERM asks
for a stop after the current optimizer step (the result then says cancelled). No Django here.

Each claim of a run is an attempt with its own folder, and two attempts never train at once: the worker writes
the newest attempt's number into the run folder (``announce_attempt``) before it starts its child; a child
whose attempt has been superseded (its worker froze, the run was reaped and retried elsewhere, and it woke up)
kills itself within half a second, and a child holds the run folder's lock while it lives, so a newer
attempt's child waits for an older one still alive before it trains.
"""

from __future__ import annotations

import ctypes
import dataclasses
import fcntl
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .config import RL_METHODS, SettingsError, TrainSettings
from .rows import RowsError, rows_hash

SPEC_FILENAME = "run-spec.json"
ROWS_FILENAME = "rows.json"
EXIT_REFUSED = 3
WORKER_PID_ENV = "PREFTUNE_WORKER_PID"
ATTEMPT_FILENAME = "attempt"  # in the run folder: the number of the newest attempt, written by its worker
LOCK_FILENAME = "trainer.lock"  # in the run folder: held by the one child that may train the run
# How long a new attempt's child waits for an older attempt's child to let go of the run: one that still holds it
# after this is frozen or hung, and an operator has to stop it.
LOCK_WAIT_SECONDS = 300
SUPERSEDED_CHECK_SECONDS = 0.5


class SnapshotMismatch(Exception):
    """The rows handed to the trainer are not the rows the snapshot recorded."""


class RunLocked(Exception):
    """An older attempt's trainer still holds the run folder."""


def newest_attempt(run_dir: str | os.PathLike[str]) -> int:
    """The attempt number the run folder names as the newest (0 when none has announced itself)."""
    try:
        return int((Path(run_dir) / ATTEMPT_FILENAME).read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def announce_attempt(run_dir: str | os.PathLike[str], attempt: int) -> None:
    """Name ``attempt`` the run's newest, unless a newer one already is (a superseded worker that wakes up and
    announces late must not take the run back)."""
    if newest_attempt(run_dir) >= attempt:
        return
    tmp = Path(run_dir) / f".{ATTEMPT_FILENAME}.{os.getpid()}"
    tmp.write_text(str(attempt))
    os.replace(tmp, Path(run_dir) / ATTEMPT_FILENAME)


@dataclass
class RunSpec:
    """Everything the child needs, as plain JSON: written by the worker, read by every rank."""

    model_path: str
    rows_path: str
    rows_hash: str
    settings: dict[str, Any]
    output_dir: str
    events_path: str
    resume_from_checkpoint: str | None = None
    num_processes: int = 1
    sharding: str = "none"  # "fsdp": the processes shard the model (see sharding.py); the launch command follows it
    run_dir: str | None = None  # the folder of all the run's attempts (output_dir is this attempt's, inside it)
    attempt: int = 0

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(dataclasses.asdict(self), indent=1))

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> RunSpec:
        return cls(**json.loads(Path(path).read_text()))


def load_checked_rows(spec: RunSpec) -> list[dict[str, Any]]:
    """The spec's rows, refused when they do not hash to what the snapshot recorded."""
    rows = json.loads(Path(spec.rows_path).read_text())
    actual = rows_hash(rows)
    if actual != spec.rows_hash:
        raise SnapshotMismatch(
            f"The snapshot's rows do not match the hash recorded when it was taken (recorded {spec.rows_hash[:12]}, "
            f"found {actual[:12]}): the training data changed after it was frozen, so this run refuses to train on it. "
            "Launch a new run to take a fresh snapshot."
        )
    return rows


def _is_rank_zero() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _die_with_parent() -> None:
    """End this process's whole group once the worker that started it is gone.

    A worker killed outright must not leave a trainer holding the GPU. Linux's parent-death signal covers a
    single child; under a multi-process launcher the ranks' parent is the launcher, so a watchdog thread also
    checks that the worker itself is alive.
    """
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    worker = os.environ.get(WORKER_PID_ENV)
    if not worker:
        return

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(int(worker), 0)
            except ProcessLookupError:
                os.killpg(os.getpgrp(), signal.SIGKILL)
            except PermissionError:
                pass

    threading.Thread(target=watch, daemon=True, name="worker-watchdog").start()


def _stop_if_superseded(spec: RunSpec) -> None:
    """Kill this process group, at once and writing nothing more, when the run folder names a newer attempt."""
    if not spec.run_dir or not spec.attempt:
        return
    newest = newest_attempt(spec.run_dir)
    if newest > spec.attempt:
        print(f"Attempt {spec.attempt} was superseded by attempt {newest}: stopping at once.", file=sys.stderr, flush=True)
        os.killpg(os.getpgrp(), signal.SIGKILL)


def _exit_when_superseded(spec: RunSpec) -> None:
    """Check for a newer attempt twice a second, besides before each event (see ``main``)."""
    if not spec.run_dir or not spec.attempt:
        return

    def watch() -> None:
        while True:
            _stop_if_superseded(spec)
            time.sleep(SUPERSEDED_CHECK_SECONDS)

    threading.Thread(target=watch, daemon=True, name="superseded-watchdog").start()


def _hold_run_lock(spec: RunSpec, wait_seconds: float = LOCK_WAIT_SECONDS) -> IO[str] | None:
    """Take the run folder's lock (kept until this process ends), waiting for an older attempt's child that
    still holds it; RunLocked if it does not let go in ``wait_seconds``."""
    if not spec.run_dir or not _is_rank_zero():
        return None
    handle = open(Path(spec.run_dir) / LOCK_FILENAME, "a+", encoding="utf-8")  # noqa: SIM115 - held for life
    deadline = time.monotonic() + wait_seconds
    said = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "an unknown process"
            if time.monotonic() > deadline:
                handle.close()
                raise RunLocked(
                    f"The trainer of an earlier attempt ({holder}) still holds this run after {wait_seconds:.0f} s: "
                    "its worker is frozen or hung. Stop that process, then Retry."
                ) from None
            if not said:
                print(f"Waiting for the trainer of an earlier attempt ({holder}) to stop.", file=sys.stderr, flush=True)
                said = True
            time.sleep(0.2)
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {os.uname().nodename}, attempt {spec.attempt}")
    handle.flush()
    return handle


def _to_json(value: Any) -> Any:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_json(v) for v in value]
    return value


def _refuse(exc: Exception, spec: RunSpec) -> int:
    # Input the run cannot train on: one line, no traceback, so the run page shows just the reason.
    reason = f"{type(exc).__name__}: {exc}"
    print(reason, file=sys.stderr)
    if _is_rank_zero():
        with open(spec.events_path, "a", encoding="utf-8") as events:
            events.write(json.dumps({"type": "refused", "reason": reason}) + "\n")
    return EXIT_REFUSED


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(sys.argv[1:] if argv is None else argv)
    finally:
        # Python gives its handled signals their default action back as the interpreter shuts down, and for
        # these two that action kills: a yield or stop the worker sends as the child exits would turn a run whose
        # result is written into "killed by SIGUSR1". Ignored (process-wide, unlike a thread's mask) they cannot.
        for signum in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(signum, signal.SIG_IGN)


def _main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m training.trainer RUN_SPEC.json", file=sys.stderr)
        return 2
    _die_with_parent()
    spec = RunSpec.read(argv[0])
    stop = {"requested": False, "pause": False}
    parent = os.getppid()

    def request_stop(signum: int, frame: object) -> None:  # noqa: ARG001 - signal handler signature
        stop["requested"] = True

    def request_pause(signum: int, frame: object) -> None:  # noqa: ARG001
        stop["pause"] = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGUSR1, request_pause)
    # The parent started us with SIGUSR1 blocked (see TrainerProcess): one sent before now is delivered here.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})
    _exit_when_superseded(spec)
    try:
        lock = _hold_run_lock(spec)  # noqa: F841 - held, not used: the lock lasts as long as the open file
        rows = load_checked_rows(spec)
        settings = TrainSettings.from_dict(spec.settings)
    except (SnapshotMismatch, SettingsError, RowsError, RunLocked) as exc:
        return _refuse(exc, spec)

    events = open(spec.events_path, "a", buffering=1, encoding="utf-8") if _is_rank_zero() else None  # noqa: SIM115

    def emit(payload: dict[str, Any]) -> None:
        if events is not None:
            events.write(json.dumps(_to_json(payload)) + "\n")

    def progress(event: Any) -> None:
        # Events are logged before the step's checkpoint is saved: a trainer that wakes up superseded dies here,
        # before writing the event or the checkpoint, even inside the watchdog's half second.
        _stop_if_superseded(spec)
        emit({"type": "progress", **dataclasses.asdict(event)})

    # torch and TRL load here, after the cheap checks.
    if settings.method in RL_METHODS:
        from .online import train_online as train
    else:
        from .core import train

    try:
        result = train(
            model_path=spec.model_path,
            rows=rows,
            settings=settings,
            output_dir=spec.output_dir,
            progress=progress,
            should_stop=lambda: stop["requested"] or os.getppid() != parent,
            should_pause=lambda: stop["pause"],
            resume_from_checkpoint=spec.resume_from_checkpoint,
            before_save=lambda: _stop_if_superseded(spec),
        )
    except (SettingsError, RowsError) as exc:
        return _refuse(exc, spec)
    summary = dataclasses.asdict(result)
    summary.pop("history", None)
    summary["settings"] = result.settings.to_dict() if result.settings else None
    summary["world_size"] = int(os.environ.get("WORLD_SIZE", "1"))
    emit({"type": "result", **summary})
    if events is not None:
        events.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
