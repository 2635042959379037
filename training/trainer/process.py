"""The worker's side of a training child process: start it, follow its events, and own its lifetime.

Training in a child keeps the Celery worker alive when CUDA runs out of memory or the OS kills the trainer,
and lets the worker stop a run it no longer owns (cancelled, or failed by the reaper). No Django here:
`training.services.run_execute` passes in what to do with each event and when to stop.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .child import EXIT_REFUSED, WORKER_PID_ENV, RunSpec
from .sharding import fsdp_launch_flags

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LOG_TAIL_LINES = 12
# How long a child asked to stop may take to finish its current step before it is killed.
STOP_GRACE_SECONDS = 30.0


@dataclass
class ChildOutcome:
    """How a child ended: with a result (finished or cancelled), stopped by us, or failed with a reason."""

    result: dict[str, Any] | None = None
    stopped: bool = False
    yielded: bool = False  # stopped, or paused with a checkpoint, because should_yield() said so
    error: str = ""
    returncode: int | None = None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def trainer_command(spec_path: Path, num_processes: int, *, cuda: bool, sharding: str = "none") -> list[str]:
    """`python -m training.trainer SPEC`, or the same under a launcher for several processes.

    On CUDA: `accelerate launch --multi_gpu` (DDP over NCCL), or `--use_fsdp` with the options of `sharding.py`
    when `sharding` is "fsdp" (the Trainer builds the same FSDP config from the run's settings). On CPU, accelerate
    can only start several processes through MPI, so torch's own launcher starts them and the Trainer joins them
    over gloo; accelerate does not shard on CPU, and the trainer refuses a sharded run there.
    """
    module = ["-m", "training.trainer", str(spec_path)]
    if num_processes <= 1:
        return [sys.executable, *module]
    port = str(_free_port())
    if cuda:
        mode = fsdp_launch_flags() if sharding == "fsdp" else ["--multi_gpu"]
        launch = ["-m", "accelerate.commands.launch", *mode, "--num_processes", str(num_processes)]
        return [sys.executable, *launch, "--num_machines", "1", "--main_process_port", port, *module]
    launch = ["-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(num_processes)]
    return [sys.executable, *launch, "--master_addr", "127.0.0.1", "--master_port", port, *module]


# The web app's and the worker's own settings: the child reads only its spec, so it gets no database, broker or
# Django secret to leak in a crash dump, a log line or a custom training callback. Names that say "secret" go too
# (AWS_SECRET_ACCESS_KEY, SENTRY_DSN, GITHUB_TOKEN…), except the Hugging Face token: a base model given by hub id
# is loaded by the child, and a gated one needs it.
_WEB_ONLY_PREFIXES = ("DJANGO_", "DATABASE_", "CELERY_", "DB_", "PG", "REDIS_")
_SECRET_SUFFIXES = ("_SECRET", "_SECRET_KEY", "_SECRET_ACCESS_KEY", "_PASSWORD", "_TOKEN", "_API_KEY", "_DSN", "_CREDENTIALS")
_CHILD_NEEDS = ("HF_", "HUGGING_FACE_")


def child_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without what only the web app and the worker need, and without secrets the trainer has no use
    for (see ``_WEB_ONLY_PREFIXES`` and ``_SECRET_SUFFIXES``); PATH, HOME, HF_*, CUDA_*, NCCL_*, OMP_* and the
    like stay."""
    return {
        name: value for name, value in environ.items()
        if not name.startswith(_WEB_ONLY_PREFIXES)
        and (name.startswith(_CHILD_NEEDS) or not name.upper().endswith(_SECRET_SUFFIXES))
    }


class TrainerProcess:
    """A started child: its events file is read incrementally, its whole process group can be stopped."""

    def __init__(self, spec: RunSpec, spec_path: Path, log_path: Path, *, cuda: bool = False) -> None:
        self.spec = spec
        self.log_path = log_path
        self._offset = 0
        self._partial = ""
        env = {
            **child_environment(os.environ),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1",
            "TQDM_DISABLE": "1",
            WORKER_PID_ENV: str(os.getpid()),
        }
        Path(spec.events_path).write_text("")
        self.oom_kills_at_start = oom_kills()
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(f"--- trainer started {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n")
            log.flush()
            # The child starts with SIGUSR1 (yield) blocked, and unblocks it once its handler is in place: a yield
            # sent during its start-up (the worker told to shut down as the run began) then waits for the handler
            # instead of killing the child, which would fail the run rather than hand it back.
            previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
            try:
                # Its own session, so a stop reaches every process of a multi-process launch.
                self.popen = subprocess.Popen(
                    trainer_command(spec_path, spec.num_processes, cuda=cuda, sharding=spec.sharding),
                    cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)

    @classmethod
    def start(cls, spec: RunSpec, *, cuda: bool = False) -> TrainerProcess:
        out = Path(spec.output_dir)
        spec_path = out / "run-spec.json"
        spec.write(spec_path)
        return cls(spec, spec_path, out / "trainer.log", cuda=cuda)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def events(self) -> list[dict[str, Any]]:
        """Events written since the last call (complete lines only)."""
        try:
            with open(self.spec.events_path, encoding="utf-8") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
                self._offset = fh.tell()
        except FileNotFoundError:
            return []
        text = self._partial + chunk
        lines = text.split("\n")
        self._partial = lines.pop()
        return [json.loads(line) for line in lines if line.strip()]

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signum)

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Ask the child to stop after its current step; kill it if it has not within `grace` seconds."""
        self.signal_group(signal.SIGTERM)
        try:
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.signal_group(signal.SIGKILL)
            self.popen.wait()
        # A multi-process launch can leave ranks behind its launcher.
        self.signal_group(signal.SIGKILL)

    def failure_reason(self) -> str:
        code = self.popen.returncode
        tail = _log_tail(self.log_path)
        if code == EXIT_REFUSED and tail:
            return tail[-1]
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            why = _sigkill_reason(self.oom_kills_at_start, oom_kills()) if name == "SIGKILL" else ""
            head = f"The training process was killed by {name}{why}."
        else:
            head = f"The training process exited with status {code}."
        return head + ("\nLast lines of its output:\n" + "\n".join(tail) if tail else "")


def oom_kills() -> int | None:
    """How many processes the kernel's out-of-memory killer has killed since boot (/proc/vmstat), or None where
    the kernel does not say."""
    try:
        with open("/proc/vmstat", encoding="ascii") as vmstat:
            for line in vmstat:
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _sigkill_reason(before: int | None, after: int | None) -> str:
    """Who sent a SIGKILL, as far as the kernel's count of out-of-memory kills tells."""
    if before is None or after is None:
        return " (the out-of-memory killer sends this, and so does kill -9)"
    if after > before:
        return (
            " from the kernel's out-of-memory killer: the machine ran out of memory. A smaller batch, a shorter max "
            "length or 4-bit quantization needs less"
        )
    return " (not the out-of-memory killer, which killed nothing meanwhile: a kill -9, or a container or job limit)"


def _log_tail(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    run = text.rsplit("--- trainer started", 1)[-1].split("\n", 1)[-1]
    return [line for line in run.splitlines() if line.strip()][-LOG_TAIL_LINES:]


def _split_events(
    events: list[dict[str, Any]], result: dict[str, Any] | None, refused: str
) -> tuple[list[dict[str, Any]], dict[str, Any] | None, str]:
    """A read's progress events, and the result or refusal among them (else those known before)."""
    progress = []
    for event in events:
        if event.get("type") == "progress":
            progress.append(event)
        elif event.get("type") == "result":
            result = event
        elif event.get("type") == "refused":
            refused = str(event.get("reason") or "")
    return progress, result, refused


def run_supervised(
    spec: RunSpec,
    *,
    on_progress: Callable[[list[dict[str, Any]]], None],
    should_cancel: Callable[[], bool],
    still_ours: Callable[[], bool],
    cuda: bool = False,
    on_start: Callable[[int], None] | None = None,
    should_yield: Callable[[], bool] | None = None,
    poll_seconds: float = 0.2,
    check_seconds: float = 1.0,
) -> ChildOutcome:
    """Run the trainer child to its end, forwarding its progress events: `on_progress` gets those of each read
    together, in order, so a caller can record many in one write (a busy trainer writes dozens between reads).

    Every `check_seconds`: `should_cancel()` asks the child to stop after its step (it then reports a cancelled
    result); `still_ours()` False (the run was failed by the reaper, say) stops it and returns `stopped=True`.
    A child that exits without a result (crash, OOM kill) returns its reason. `on_start` gets the child's pid.
    `should_yield()` True (the worker is shutting down) pauses the child: it saves a checkpoint at its step and
    stops, and the outcome says `yielded`.
    """
    child = TrainerProcess.start(spec, cuda=cuda)
    if on_start is not None:
        on_start(child.pid)
    result: dict[str, Any] | None = None
    refused = ""
    cancel_sent_at: float | None = None
    yield_sent_at: float | None = None
    next_check = 0.0
    try:
        while True:
            exited = child.popen.poll() is not None
            # Read after looking at the exit, so the events of a child that exited meanwhile are all read: a fast
            # run's last steps were written between the read and the look and dropped (issue 24's e2e test).
            progress, result, refused = _split_events(child.events(), result, refused)
            if progress:
                on_progress(progress)
            if exited:
                break
            now = time.monotonic()
            if now >= next_check:
                next_check = now + check_seconds
                if not still_ours():
                    # At once, not after its step: a newer attempt may already be training this run.
                    child.stop(grace=0.0)
                    return ChildOutcome(stopped=True, returncode=child.popen.returncode)
                if yield_sent_at is None and should_yield is not None and should_yield():
                    if spec.num_processes > 1:
                        child.stop(grace=5.0)
                        return ChildOutcome(stopped=True, yielded=True, returncode=child.popen.returncode)
                    child.signal_group(signal.SIGUSR1)
                    yield_sent_at = now
                elif yield_sent_at is not None and now - yield_sent_at > STOP_GRACE_SECONDS:
                    child.stop(grace=0.0)
                    return ChildOutcome(stopped=True, yielded=True, returncode=child.popen.returncode)
                if cancel_sent_at is None and should_cancel():
                    if spec.num_processes > 1:
                        # Ranks must stop at the same step or the others hang in a collective: stop them all.
                        child.stop(grace=5.0)
                        return ChildOutcome(stopped=True, returncode=child.popen.returncode)
                    child.signal_group(signal.SIGTERM)
                    cancel_sent_at = now
                elif cancel_sent_at is not None and now - cancel_sent_at > STOP_GRACE_SECONDS:
                    child.stop(grace=0.0)
                    return ChildOutcome(stopped=True, returncode=child.popen.returncode)
            time.sleep(poll_seconds)
    except BaseException:
        child.stop(grace=5.0)
        raise
    finally:
        if child.popen.poll() is None:
            child.stop(grace=5.0)
    if result is not None and child.popen.returncode == 0:
        return ChildOutcome(result=result, returncode=0, yielded=bool(result.get("paused")))
    return ChildOutcome(error=refused or child.failure_reason(), returncode=child.popen.returncode)
