"""What a trainer child reports while it trains, one line of its events file each. No torch here: the worker
that reads the events records them with this, and importing torch took it 5 s, during which it noticed no
cancel, no shutdown and no dead child (a tiny run trained to its end after its worker was told to stop)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class ProgressEvent:
    """One log line from the trainer.

    kind: "train" (a training step's metrics: loss, rewards/chosen, rewards/rejected,
    rewards/margins, rewards/accuracies, logps/chosen, logps/rejected, kl for KTO, grad_norm,
    learning_rate, num_tokens, ...), "eval" (the same with an "eval_" prefix, computed on the
    validation split), or "summary" (train_runtime, train_loss, ... once at the end).
    """

    step: int
    total_steps: int
    metrics: dict[str, float]
    kind: str = "train"
    epoch: float | None = None
    # What an online RL run's watch found at an evaluation (its answers, with text), beside the figures.
    details: dict[str, Any] | None = None
