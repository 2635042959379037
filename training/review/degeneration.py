"""Reads of a comparison's matched outputs that are not answers (loops, fragments, symbol soup) or were cut off at
the token limit, base against tuned (``training.trainer.degeneration`` decides what is degenerate)."""
from __future__ import annotations

from dataclasses import dataclass

from labeling.models import Project
from training.models import ModelVersion
from training.review.matched_outputs import Comparison, matched_pairs
from training.trainer.degeneration import degeneration

# From a quarter of the matched answers cut off, the comparison judges unfinished answers more than finished ones.
CUT_OFF_WARNING_SHARE = 0.25


@dataclass(frozen=True)
class DegenerationSummary:
    """Matched outputs that are not answers (loops, fragments, symbol soup), base against tuned."""

    pairs: int
    base: int
    tuned: int
    examples: list[tuple[str, str]]  # (reason, the start of a tuned output)
    base_cut_off: int = 0  # still writing at the token limit: unfinished, so a vote on it judges where it stops
    tuned_cut_off: int = 0
    token_limit: int | None = None

    @property
    def cut_off_share(self) -> float:
        return (self.base_cut_off + self.tuned_cut_off) / (2 * self.pairs) if self.pairs else 0.0

    @property
    def many_cut_off(self) -> bool:
        return self.cut_off_share >= CUT_OFF_WARNING_SHARE

    @property
    def worse(self) -> bool:
        # More than chance alone: at least 3 more broken answers than the base, and 5% of the pairs.
        return self.tuned - self.base >= max(3, 0.05 * self.pairs)

    @property
    def warning(self) -> str:
        return (
            f"{self.tuned} of {self.pairs} tuned answers are not answers (loops, fragments, symbol soup) against "
            f"{self.base} of the base's: the run pushed the model past what it can say well, and a win rate can hide "
            "it. Try a larger SFT weight, a lower learning rate, or the checkpoint of an earlier step."
        )


def comparison_degeneration(
    *, project: Project, base: ModelVersion, tuned: ModelVersion, comparison: Comparison | None
) -> DegenerationSummary | None:
    """How many of the comparison's matched base and tuned outputs are degenerate (``degeneration``)."""
    if comparison is None or not comparison.pairs:
        return None
    pairs = matched_pairs(project=project, first=tuned, second=base, settings=comparison.settings)
    if not pairs:
        return None
    examples = []
    tuned_count = 0
    for pair in pairs:
        reason = degeneration(pair.first.text)
        if reason is not None:
            tuned_count += 1
            if len(examples) < 3:
                examples.append((reason, pair.first.text[:160]))
    base_count = sum(1 for pair in pairs if degeneration(pair.second.text) is not None)
    limit = comparison.settings.get("max_new_tokens")
    return DegenerationSummary(
        pairs=len(pairs), base=base_count, tuned=tuned_count, examples=examples,
        base_cut_off=sum(1 for pair in pairs if pair.second.is_truncated),
        tuned_cut_off=sum(1 for pair in pairs if pair.first.is_truncated),
        token_limit=limit if isinstance(limit, int) else None,
    )
