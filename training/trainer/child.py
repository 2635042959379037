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
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import SettingsError, TrainSettings
from .rows import RowsError, rows_hash

SPEC_FILENAME = "run-spec.json"
ROWS_FILENAME = "rows.json"
EXIT_REFUSED = 3
WORKER_PID_ENV = "PREFTUNE_WORKER_PID"


class SnapshotMismatch(Exception):
    """The rows handed to the trainer are not the rows the snapshot recorded."""


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
    argv = sys.argv[1:] if argv is None else argv
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
    try:
        rows = load_checked_rows(spec)
        settings = TrainSettings.from_dict(spec.settings)
    except (SnapshotMismatch, SettingsError, RowsError) as exc:
        return _refuse(exc, spec)

    events = open(spec.events_path, "a", buffering=1, encoding="utf-8") if _is_rank_zero() else None  # noqa: SIM115

    def emit(payload: dict[str, Any]) -> None:
        if events is not None:
            events.write(json.dumps(_to_json(payload)) + "\n")

    def progress(event: Any) -> None:
        emit({"type": "progress", **dataclasses.asdict(event)})

    from .core import train  # torch and TRL load here, after the cheap checks

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
