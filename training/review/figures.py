"""Numbers as the review pages show them: three significant digits (``format_number``, the rule the run pages
use too), percentages with one decimal, never a Python repr such as -0.06400000000000006."""
from __future__ import annotations

from training.templatetags.numbers import DASH, format_number


def significant(value: float | None, digits: int = 3) -> str:
    """``value`` to ``digits`` significant digits: the run pages' one rule (0.93, −0.064, 3e-4, 120)."""
    return DASH if value is None else format_number(value, digits)


def percent(share: float | None) -> str:
    """A share in [0, 1] as a percentage with one decimal: 0.6125 → "61.3%"."""
    return DASH if share is None else f"{100 * share:.1f}%"


def percent_interval(low: float | None, high: float | None) -> str:
    """"52.0–70.1%"."""
    if low is None or high is None:
        return DASH
    return f"{100 * low:.1f}–{100 * high:.1f}%"


def signed(value: float | None, unit: str = "") -> str:
    """A change with its sign: +16, -3.5; ``unit`` appended after a space."""
    if value is None:
        return DASH
    text = significant(value)
    if value > 0 and text != "0":
        text = "+" + text
    return f"{text} {unit}".strip()


def p_value(p: float | None) -> str:
    if p is None:
        return DASH
    return "p < 0.001" if p < 0.001 else f"p = {significant(p, 2)}"


def version_label(name: str, *, role: str) -> str:
    """"name (role)", unless the name already says it: the base version is usually called "<model> (base)"."""
    suffix = f"({role})"
    return name if name.rstrip().endswith(suffix) else f"{name} {suffix}"
