"""How much data a run needs before its validation figures can tell learning from a coin flip. Pure; no Django.

A run's verdict rests on its validation accuracy (DPO, reward model: pairs ranked right; KTO: held-out thumbs
ranked right). With n validation rows, an accuracy is known only to a Wilson interval, and the verdict can say
something only when that interval at the accuracy a run that learned typically reaches (70%) clears chance
(50%). ``ROWS_TO_TELL`` is the fewest rows from which that always holds (24); below it the launch form warns
and says how many more decided pairs make a run whose validation can tell, and the run page gives no verdict.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from labeling.statistics import wilson_interval

EXPECTED_ACCURACY = 0.7
CHANCE = 0.5


def accuracy_interval(rows: int, accuracy: float = EXPECTED_ACCURACY) -> tuple[float, float]:
    """The 95% Wilson interval of ``accuracy`` measured on ``rows`` rows."""
    return wilson_interval(round(accuracy * rows), rows)


def _rows_to_tell(accuracy: float = EXPECTED_ACCURACY, search_to: int = 1000) -> int:
    """The fewest rows from which, for every larger count too, the interval at ``accuracy`` lies above chance (the
    bound wobbles with rounding, so the first count that clears it is not enough)."""
    needed = search_to
    for rows in range(search_to, 0, -1):
        if accuracy_interval(rows, accuracy)[0] <= CHANCE:
            return needed
        needed = rows
    return needed


ROWS_TO_TELL = _rows_to_tell()


def ready_rows_to_tell(validation_fraction: float) -> int | None:
    """Rows ready at which a validation share of ``validation_fraction`` holds ``ROWS_TO_TELL`` rows; None with no
    validation share."""
    if validation_fraction <= 0:
        return None
    return math.ceil(ROWS_TO_TELL / validation_fraction - 1e-9)


def _points(value: float) -> str:
    return f"{round(100 * value)}"


@dataclass(frozen=True)
class DataNeeds:
    """What the rows ready for a run can resolve, for the launch form: ``ready`` rows split into ``train`` and
    ``validation`` at ``validation_fraction``. ``noun`` names a row ("pairs", "rated answers")."""

    ready: int
    train: int
    validation: int
    validation_fraction: float
    noun: str = "pairs"

    @property
    def enough(self) -> bool:
        return self.validation >= ROWS_TO_TELL

    @property
    def half_width_points(self) -> str:
        low, high = accuracy_interval(self.validation)
        return _points((high - low) / 2)

    @property
    def ready_needed(self) -> int | None:
        """Rows ready at which the validation share holds ``ROWS_TO_TELL`` rows; None with no validation share."""
        return ready_rows_to_tell(self.validation_fraction)

    @property
    def more_needed(self) -> int | None:
        needed = self.ready_needed
        return None if needed is None else max(0, needed - self.ready)

    @property
    def resolution(self) -> str:
        """"28 validation pairs measure accuracy to ±17 points (95% interval at 70%)"."""
        if self.validation == 0:
            return f"No validation {self.noun}: the run page can give no verdict on whether it learned"
        return (
            f"{self.validation} validation {self.noun} measure accuracy to ±{self.half_width_points} points "
            f"(95% interval at {_points(EXPECTED_ACCURACY)}%)"
        )

    @property
    def warning(self) -> str:
        """Empty when the validation share can tell; else what is missing and how much more data fixes it."""
        if self.enough:
            return ""
        more = self.more_needed
        if more is None:
            how = f"Set a validation share (a fifth is usual) and have at least {ROWS_TO_TELL} validation {self.noun}."
        else:
            how = (
                f"Label about {more} more decided {self.noun} ({self.ready_needed} ready at a validation share of "
                f"{_points(self.validation_fraction)}% give {ROWS_TO_TELL} validation {self.noun}, the fewest that can "
                "tell a learned preference from a coin flip)."
            )
        if self.validation == 0:
            said = f"No validation {self.noun}, so the run page cannot say whether the run learned."
        else:
            said = f"Too few to tell: {self.resolution}, too wide to tell learning from a coin flip."
        return f"{said} {how} You can still launch to try the pipeline."
