"""The training app's models, one module by topic; Django finds them here, so every model is imported below.

- ``versions``: base models and the model versions (base + optional LoRA adapter) that write and get judged;
- ``runs``: tuning runs, their frozen datasets and metrics, and the workers that take them;
- ``review``: generation jobs, reward-model scores and blind battles;
- ``exports``: a model version's zip exports;
- ``playground``: questions asked of several versions side by side, and their answers;
- ``jobs``: what every job a worker takes records of its life (worker, heartbeat, times, error, the statuses).
"""
from __future__ import annotations

from training.models.exports import VersionExport
from training.models.playground import PlaygroundAnswer, PlaygroundRequest
from training.models.review import Battle, GenerationJob, RewardScore
from training.models.runs import DatasetSnapshot, RunMetric, TuningRun, Worker, run_queue
from training.models.versions import BaseModel, ModelVersion

__all__ = [
    "BaseModel",
    "Battle",
    "DatasetSnapshot",
    "GenerationJob",
    "ModelVersion",
    "PlaygroundAnswer",
    "PlaygroundRequest",
    "RewardScore",
    "RunMetric",
    "TuningRun",
    "VersionExport",
    "Worker",
    "run_queue",
]
