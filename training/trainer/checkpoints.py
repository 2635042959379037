"""Where a run keeps its checkpoints and adapter, which checkpoint a retry resumes from, and the hook that runs
before each checkpoint is written.

Plain files and JSON, no torch: finding the checkpoint to resume from does not load the trainer.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

ADAPTER_DIRNAME = "adapter"
CHECKPOINTS_DIRNAME = "checkpoints"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_complete(path: str | os.PathLike[str]) -> bool:
    """Whether a `checkpoint-N` folder holds everything a resume reads.

    transformers writes the adapter, then the optimizer, scheduler and RNG state, and `trainer_state.json`
    last; a process killed part-way leaves a folder without (or with a cut-off) trainer state, and resuming
    from it fails with "Can't find a valid checkpoint".
    """
    folder = Path(path)
    if not any((folder / name).is_file() for name in ("adapter_model.safetensors", "model.safetensors")):
        return False
    # optimizer.bin: a sharded (FSDP) run's optimizer state, gathered whole by accelerate.
    if not any((folder / name).is_file() for name in ("optimizer.pt", "optimizer.bin")):
        return False
    try:
        state = json.loads((folder / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and "global_step" in state


def latest_checkpoint(output_dir: str | os.PathLike[str]) -> str | None:
    """Newest complete `checkpoint-N` folder that `train(output_dir=...)` left, or None; pass it to resume.

    Incomplete folders (the process died while writing one) are skipped, so a retry resumes from the
    newest checkpoint that was written in full.
    """
    folder = Path(output_dir) / CHECKPOINTS_DIRNAME
    if not folder.is_dir():
        return None
    found = sorted(
        ((int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _CHECKPOINT_RE.match(p.name))),
        reverse=True,
    )
    for step, path in found:
        if checkpoint_complete(path):
            return str(path)
        logger.warning("Skipping incomplete checkpoint %s (step %s): it was not written in full", path, step)
    return None


def checkpoint_is_final(checkpoint: str) -> bool:
    """Was ``checkpoint`` saved at the run's last step (its trainer state at or past its own max_steps)?"""
    state_file = Path(checkpoint) / "trainer_state.json"
    if not state_file.is_file():
        return False
    state = json.loads(state_file.read_text())
    return int(state.get("max_steps") or 0) > 0 and int(state.get("global_step") or 0) >= int(state["max_steps"])


def guard_checkpoints(trainer: Any, before_save: Callable[[], None] | None) -> None:  # noqa: ANN401
    """Call `before_save` right before each checkpoint is written. transformers saves a checkpoint after the step's
    log and evaluation: a trainer frozen after those, and woken once its run has moved on, must not write it (the
    log and evaluation check through `progress`)."""
    if before_save is None:
        return
    save_checkpoint = trainer._save_checkpoint  # noqa: SLF001

    def checked_save(*args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
        before_save()
        return save_checkpoint(*args, **kwargs)

    trainer._save_checkpoint = checked_save  # noqa: SLF001
