"""Numbers read from JSON-ish values (settings a person entered, figures a run stored): the one rule that a JSON
``true`` is not a number, though Python's bool is an int. Django-free and import-light, so the settings checks, the
trainer and the pages read numbers alike."""
from __future__ import annotations

import math
from typing import Any


def is_number(value: Any) -> bool:  # noqa: ANN401
    """An int or a float, not a bool (NaN and the infinities count: see ``is_finite_number``)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_finite_number(value: Any) -> bool:  # noqa: ANN401
    """A number a setting may hold: an int or a finite float, not a bool."""
    return is_number(value) and math.isfinite(value)


def is_whole_number(value: Any) -> bool:  # noqa: ANN401
    """An int, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def number_or_none(value: Any) -> float | None:  # noqa: ANN401
    """``value`` as a float when it is a number, else None (a missing or malformed stored figure)."""
    return float(value) if is_number(value) else None
