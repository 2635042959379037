"""A run's validation headline for the review pages, in words: what training measured on its validation rows at
the checkpoint it kept (from ``run.outcome``), never the last train batch."""
from __future__ import annotations

from dataclasses import dataclass

from training.models import TuningRun
from training.review import figures
from training.trainer.json_numbers import number_or_none


@dataclass(frozen=True)
class ValidationHeadline:
    """What training measured on its validation rows at the checkpoint it kept; never the last train batch."""

    text: str
    figures: list[tuple[str, str]]


_DPO_FIGURES = (("rewards/accuracies", "implicit-reward accuracy"), ("rewards/margins", "reward margin"), ("loss", "loss"))
_KTO_FIGURES = (("loss", "loss"), ("kl", "KL"), ("ranking_accuracy", "ranking accuracy"))


def run_validation(*, run: TuningRun) -> ValidationHeadline | None:
    """The headline from ``run.outcome``, e.g. "validation implicit-reward accuracy 0.93 on 20 pairs (kept
    checkpoint, step 120)"; None for a run that recorded no outcome (trained before runs kept one)."""
    outcome = run.outcome or {}
    if not outcome:
        return None
    validation = {key.removeprefix("eval_"): value for key, value in (outcome.get("validation") or {}).items()}
    kept = outcome.get("kept_step")
    kept_text = f"kept checkpoint, step {kept}" if kept is not None else "kept checkpoint"
    rows = outcome.get("validation_rows", run.validation_rows)
    known = [(label, number_or_none(validation.get(key))) for key, label in (_KTO_FIGURES if run.method == "kto" else _DPO_FIGURES)]
    shown = [(label, figures.significant(value)) for label, value in known if value is not None]
    if not shown:
        return ValidationHeadline(
            text=f"no validation set, so nothing held back was measured during training ({kept_text})", figures=[]
        )
    unit = "pairs" if run.method == "dpo" else "rows"
    if run.method == "kto":
        lead = ", ".join(f"{label} {value}" for label, value in shown)
    else:
        lead = f"{shown[0][0]} {shown[0][1]}"
    return ValidationHeadline(text=f"validation {lead} on {rows} {unit} ({kept_text})", figures=shown)
