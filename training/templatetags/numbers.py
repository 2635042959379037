"""Numbers, settings and durations as people read them: no Python reprs on the run pages.

``format_number`` is the one rule (3 significant digits, a real minus sign, ``5e-5`` rather than
``0.0000``); the template filters wrap it. Selectors that write sentences with numbers in them use the
same functions, so a number reads the same in a verdict as in a table.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from numbers import Real
from typing import Any

from django import template

register = template.Library()

MINUS = "\u2212"
DASH = "\u2014"

# Settings whose raw value means something a reader would not guess.
_SPECIAL_SETTINGS: dict[tuple[str, Any], str] = {
    ("max_steps", -1): "no limit (the epochs decide)",
    ("loss_type", None): "default for the method",
    ("learning_rate", None): "automatic",
    ("num_train_epochs", None): "automatic",
    ("eval_steps", None): "automatic",
    ("desirable_weight", None): "balanced from the data",
    ("undesirable_weight", None): "balanced from the data",
}


def format_number(value: Any, digits: int = 3) -> str:
    """``value`` to ``digits`` significant digits, for people.

    -0.06400000000000006 → "−0.064", 5e-05 → "5e-5", 1.0 → "1", 0.93 → "0.93", 123.456 → "123",
    12345.6 → "12346" (from 1000 up the integer digits stay), 2.5e7 → "2.5e7", None → "—", True → "yes".
    Strings pass through unchanged.
    """
    if value is None or value == "":
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return (MINUS if value < 0 else "") + str(abs(value))
    if not isinstance(value, Real):
        return str(value)
    number = float(value)
    if math.isnan(number):
        return "not a number"
    sign = MINUS if number < 0 else ""
    magnitude = abs(number)
    if math.isinf(magnitude):
        return sign + "\u221e"
    if magnitude == 0:
        return "0"
    if magnitude < 1e-3:
        return sign + _scientific(magnitude, digits)
    if magnitude >= 1e6:
        return sign + _scientific(magnitude, digits)
    text = f"{magnitude:.{digits}g}"
    if magnitude >= 10**digits or "e" in text:
        text = str(round(magnitude))
    return sign + text


def _scientific(magnitude: float, digits: int) -> str:
    mantissa, exponent = f"{magnitude:.{digits - 1}e}".split("e")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def format_share(value: Any) -> str:
    """A share in [0, 1] as a whole percentage: 0.925 → "93%" (halves round up); None → "—"."""
    if value is None or isinstance(value, bool) or not isinstance(value, Real) or math.isnan(float(value)):
        return format_number(value)
    return f"{math.floor(float(value) * 100 + 0.5)}%"


def format_setting(value: Any, key: str = "") -> str:
    """One setting's value: lists joined with commas, yes/no, "—" for nothing, numbers via format_number."""
    if (value is None or isinstance(value, int | str)) and not isinstance(value, bool) and (key, value) in _SPECIAL_SETTINGS:
        return _SPECIAL_SETTINGS[(key, value)]
    if isinstance(value, list | tuple):
        return ", ".join(format_setting(item) for item in value) or DASH
    if isinstance(value, Mapping):
        return "; ".join(f"{_label(k)} {format_setting(v, str(k))}" for k, v in value.items()) or DASH
    return format_number(value)


def format_duration(seconds: float | None) -> str:
    """An elapsed time: "42 s", "5 min 23 s", "1 h 5 min"."""
    if seconds is None:
        return DASH
    total = round(max(0.0, float(seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{secs} s"


def format_rough_duration(seconds: float | None) -> str:
    """A forecast, rounded so it does not twitch: "about 40 s", "about 4 min", "about 1 h 15 min".

    Under a minute it rounds to 10 s, under an hour to whole minutes, beyond that to 5 minutes.
    """
    if seconds is None:
        return DASH
    seconds = max(0.0, float(seconds))
    if seconds < 10:
        return "a few seconds"
    if seconds < 55:
        return f"about {round(seconds / 10) * 10} s"
    if seconds < 3570:
        return f"about {max(1, round(seconds / 60))} min"
    hours, minutes = divmod(round(seconds / 300) * 5, 60)
    return f"about {hours} h {minutes} min" if minutes else f"about {hours} h"


def _label(key: Any) -> str:
    return str(key).replace("_", " ")


def setting_rows(settings: Mapping[str, Any] | None, order: Sequence[str] = ()) -> list[tuple[str, str]]:
    """(label, text) per setting, a nested dict (``lora``) giving one row per entry ("lora r", "lora alpha").

    Keys named in ``order`` come first, in that order (a JSON column does not keep the order it was given);
    the rest follow alphabetically.
    """
    rank = {key: n for n, key in enumerate(order)}
    items = sorted((settings or {}).items(), key=lambda item: (rank.get(item[0], len(rank)), str(item[0])))
    rows: list[tuple[str, str]] = []
    for key, value in items:
        if isinstance(value, Mapping) and value:
            rows.extend((f"{_label(key)} {_label(k)}", format_setting(v, str(k))) for k, v in value.items())
        else:
            rows.append((_label(key), format_setting(value, str(key))))
    return rows


@register.filter
def human_number(value: Any, digits: Any = 3) -> str:
    """``{{ x|human_number }}``: 3 significant digits; ``{{ x|human_number:2 }}`` for 2."""
    return format_number(value, int(digits))


@register.filter
def human_share(value: Any) -> str:
    return format_share(value)


@register.filter
def human_setting(value: Any, key: str = "") -> str:
    """``{{ value|human_setting:key }}``: a setting's value for people (the key explains a few special values)."""
    return format_setting(value, key)


@register.filter(name="setting_rows")
def setting_rows_filter(settings: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    return setting_rows(settings)


@register.filter
def human_duration(seconds: float | None) -> str:
    return format_duration(seconds)


@register.filter
def rough_duration(seconds: float | None) -> str:
    return format_rough_duration(seconds)
