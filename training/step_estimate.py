"""How long a run launched with the launch form's values would train, worked out before it is launched: its
training rows, optimizer steps and epochs, from the dataset preview of the chosen method."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from training.data_needs import DataNeeds
from training.models import TuningRun
from training.selectors import training_device
from training.services import DatasetPreview
from training.trainer.config import RL_METHODS, SettingsError, TrainSettings
from training.trainer.rows import RowsError, rows_format, split_rows

# The form's values an estimate reads; an error on any of them means no estimate.
ESTIMATE_FIELDS = (
    "method", "num_train_epochs", "max_steps", "per_device_batch_size", "gradient_accumulation_steps",
    "validation_fraction", "seed", "num_processes", "max_length",
)


@dataclass(frozen=True)
class StepEstimate:
    """How long a run launched with the form's values would train, before it is launched."""

    method: str
    train_rows: int
    steps: int
    epochs: float
    automatic_epochs: bool
    max_steps: bool
    drops_split_pairs: bool
    validation_rows: int = 0
    ready_rows: int = 0
    validation_fraction: float = 0.0
    max_length: int | None = None
    device: str = "cuda"
    automatic_max_length: bool = False

    @property
    def needs(self) -> DataNeeds | None:
        """What the validation split can resolve; None for SFT, whose validation gives a loss, not an accuracy."""
        if self.method == "sft" or self.method in RL_METHODS:
            return None
        noun = "rated answers" if self.method == "kto" else "pairs"
        return DataNeeds(
            ready=self.ready_rows, train=self.train_rows, validation=self.validation_rows,
            validation_fraction=self.validation_fraction, noun=noun,
        )

    @property
    def note(self) -> str:
        if self.max_steps:
            how = "max steps"
        elif self.automatic_epochs:
            how = f"{self.epochs:g} epoch{'s' if self.epochs != 1 else ''}, chosen automatically"
        else:
            how = f"{self.epochs:g} epoch{'s' if self.epochs != 1 else ''}"
        if self.automatic_max_length and self.max_length:
            worker = "the CPU worker" if self.device == "cpu" else "a GPU worker"
            how += f"; rows cut at {self.max_length} tokens for {worker}"
        return how + ("; before pairs whose annotators disagreed are dropped" if self.drops_split_pairs else "")



def step_estimate_for(
    values: dict[str, Any], previews: dict[str, DatasetPreview], *, drops_split_pairs: bool
) -> StepEstimate | None:
    """The estimate for ``values`` (one per ESTIMATE_FIELDS name), using the preview of the chosen method; None when
    there is no preview for it or the values are invalid."""
    values = {**values, "num_processes": values["num_processes"] or 1}
    method = values.pop("method")
    fmt = rows_format(method) if method in TuningRun.Method.values else None
    if fmt not in previews:
        return None
    try:
        settings = TrainSettings(
            method=method, **{k: v for k, v in values.items() if k not in ("validation_fraction", "seed")}
        ).validate()
        train, validation = split_rows(
            previews[fmt].rows, validation_fraction=values["validation_fraction"], seed=values["seed"], method=method
        )
        # No rows, no steps: an estimate for an empty project would promise a run that cannot start.
        device = training_device(settings.num_processes)
        resolved, _ = settings.resolve(max(len(train), 1), device=device)
        steps = resolved.total_steps(len(train)) if train else 0
    except (RowsError, SettingsError):
        return None
    return StepEstimate(
        method=method,
        train_rows=len(train),
        validation_rows=len(validation),
        ready_rows=len(previews[fmt].rows),
        validation_fraction=float(values["validation_fraction"] or 0),
        steps=steps,
        epochs=float(resolved.num_train_epochs or 1),
        automatic_epochs=settings.num_train_epochs is None,
        max_steps=settings.max_steps > 0,
        drops_split_pairs=drops_split_pairs,
        max_length=resolved.max_length,
        device=device,
        automatic_max_length=settings.max_length is None,
    )
