"""Reads of how far a tuned version moved from its base: what a review job measured (identical share, per-token
KL), else the identical share of a comparison's matched pairs counted here."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labeling.models import Project
from training.models import GenerationJob, ModelVersion, TuningRun
from training.review import figures
from training.review.comparisons import comparison_key
from training.review.matched_outputs import Comparison, engines_of_pairs, matched_pairs
from training.trainer.movement import Movement


@dataclass(frozen=True)
class MovementSummary(Movement):
    """Identical share and per-token KL of a comparison (``Movement``: the one rule for "did it move"): measured by
    the worker (``GenerationJob.movement``) when a review job made these outputs, else counted here (and the KL is
    unknown), with the page's wording."""

    job_id: int | None = None
    engines: str = ""  # "transformers float32"; "vllm bfloat16 against transformers float32" where mixed
    mixed_engines: int = 0  # pairs whose two answers came from different engines or precisions (only when asked)

    @classmethod
    def from_stored(cls, movement: dict[str, Any], *, job_id: int) -> MovementSummary:
        """What review job ``job_id`` stored in ``GenerationJob.movement``."""
        return cls(
            pairs=int(movement["pairs"]), identical=int(movement.get("identical") or 0),
            kl_per_token=movement.get("kl_per_token"), tokens=int(movement.get("tokens") or 0), job_id=job_id,
            engines=str(movement.get("engines") or ""), mixed_engines=int(movement.get("mixed_engines") or 0),
        )

    @property
    def identical_percent(self) -> str:
        return figures.percent(self.identical_share)

    @property
    def kl_text(self) -> str:
        return "not measured" if self.kl_per_token is None else figures.significant(self.kl_per_token)

    @property
    def warning(self) -> str:
        kl = "" if self.kl_per_token is None else f" (KL {figures.significant(self.kl_per_token)} per token)"
        return (
            f"The tuned model did not move: {self.identical} of {self.pairs} outputs are identical to the base's{kl}. "
            "Try more steps, a larger learning rate, or more data."
        )


def comparison_movement(
    *, project: Project, run: TuningRun | None, base: ModelVersion, tuned: ModelVersion, comparison: Comparison | None
) -> MovementSummary | None:
    """How far ``tuned`` moved from ``base`` in ``comparison``: what the newest review job of ``run`` in it
    measured, else the identical share of its matched pairs counted here (the KL then unknown)."""
    if comparison is None or not comparison.pairs:
        return None
    if run is not None:
        jobs = GenerationJob.objects.filter(run=run, purpose=GenerationJob.Purpose.REVIEW).exclude(movement={}).order_by("-id")
        for job_id, job_settings, movement in jobs.values_list("id", "settings", "movement"):
            if comparison_key(job_settings) == comparison.key and movement.get("pairs"):
                return MovementSummary.from_stored(movement, job_id=job_id)
    pairs = matched_pairs(project=project, first=tuned, second=base, settings=comparison.settings)
    return MovementSummary(
        pairs=len(pairs), identical=sum(1 for p in pairs if p.identical), kl_per_token=None, tokens=0, job_id=None,
        engines=engines_of_pairs(pairs),
    )


def run_movement(*, run: TuningRun) -> MovementSummary | None:
    """What the newest review job of ``run`` measured of how far it moved (identical share, per-token KL of tuned
    against base on its held-out outputs), for the run page; None before any review measured it."""
    jobs = GenerationJob.objects.filter(run=run, purpose=GenerationJob.Purpose.REVIEW).exclude(movement={}).order_by("-id")
    for job_id, movement in jobs.values_list("id", "movement"):
        if movement.get("pairs"):
            return MovementSummary.from_stored(movement, job_id=job_id)
    return None
