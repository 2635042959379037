"""Writes for tuning runs, and the only bridge between the database and the Django-free training core.

A run's life: ``run_launch`` freezes the dataset and queues it (enqueued on commit) → the gpu worker
claims it with a conditional update (queued → running) and calls ``run_execute`` → succeeded, failed
or cancelled. A worker that dies leaves a stale heartbeat; ``runs_reap_stale`` (periodic, and at worker
start-up) fails such runs with a reason, and ``run_retry`` queues them again, resuming from the last
checkpoint.

The modules, in the order of that life:

- ``preview``: the rows a run launched now would train on (``dataset_preview``);
- ``launch_checks``: LaunchError and the checks a launch makes before it writes anything;
- ``launch``: ``run_launch`` (snapshot, queued run, message sent on commit);
- ``queueing``: sending a run's message once its transaction commits;
- ``execution``: the worker's side (``worker_announce``, ``run_claim``, ``run_execute``);
- ``control``: ``run_cancel``, ``run_retry`` and the reaper, ``runs_reap_stale``.
"""
from __future__ import annotations

from training.services.control import run_cancel, run_cancel_outcome, run_retry, runs_reap_stale
from training.services.execution import OUTSIDE_STOP, run_claim, run_execute, worker_announce
from training.services.launch import run_launch
from training.services.launch_checks import (
    FLIP_RATE_RANGE,
    MIN_DPO_ROWS,
    MIN_KTO_ROWS,
    MIN_SFT_ROWS,
    NOISE_HANDLING,
    LaunchError,
)
from training.services.preview import DatasetPreview, dataset_preview

__all__ = [
    "FLIP_RATE_RANGE",
    "MIN_DPO_ROWS",
    "MIN_KTO_ROWS",
    "MIN_SFT_ROWS",
    "NOISE_HANDLING",
    "OUTSIDE_STOP",
    "DatasetPreview",
    "LaunchError",
    "dataset_preview",
    "run_cancel",
    "run_cancel_outcome",
    "run_claim",
    "run_execute",
    "run_launch",
    "run_retry",
    "runs_reap_stale",
    "worker_announce",
]
