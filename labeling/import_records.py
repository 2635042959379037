"""What both import formats share: the parsed record, the limits on one line, and the checks of one value.

The checks append a problem (without the ``line N:`` prefix, which the format's parser adds) to ``problems``
and return whether the value may be stored; they never raise.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from labeling.models import Prompt

MAX_LINE_CHARS = 1_000_000
MAX_ID_CHARS = 200
MAX_MODEL_CHARS = 200
SPLITS = (Prompt.Split.TRAIN.value, Prompt.Split.HELDOUT.value)


@dataclass
class ImportRecord:
    line: int
    external_id: str
    messages: list[dict[str, str]]
    split: str
    completions: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)


def external_id_of(value: Any, problems: list[str]) -> str:
    """The stripped ``id``, or "" when there is none (or it is refused, with the reason in ``problems``)."""
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        problems.append(f"'id' must be a non-empty string, not {short(value)}.")
        return ""
    value = value.strip()
    if len(value) > MAX_ID_CHARS:
        problems.append(f"'id' is longer than {MAX_ID_CHARS} characters.")
    elif not storable(value):
        problems.append("'id' holds a NUL character or an invalid \\u escape.")
    return value


def split_ok(split: Any, problems: list[str]) -> bool:
    if split not in SPLITS:
        problems.append(f"'split' must be 'train' or 'heldout', not {short(split)}.")
        return False
    return True


def text_ok(value: Any, what: str, problems: list[str]) -> bool:
    if not isinstance(value, str):
        problems.append(f"{what} must be a string, not {json_type(value)}.")
        return False
    if not value.strip():
        problems.append(f"{what} is empty.")
        return False
    if not storable(value):
        problems.append(f"{what} holds a NUL character or an invalid \\u escape, which cannot be stored.")
        return False
    return True


def storable(value: str) -> bool:
    # A JSON "\u0000" or a lone surrogate ("\ud800") parses fine but PostgreSQL refuses to store it.
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "a string"


def short(value: Any) -> str:
    """``value`` as the file wrote it, cut to 40 characters, for a message."""
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "…"
