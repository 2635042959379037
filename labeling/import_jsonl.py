"""Reading a JSON Lines import: one object per line, a plain ``prompt`` or chat ``messages``, and its completions.

Every problem is collected with its line number; a line with a problem gives no record.
"""
from __future__ import annotations

import json
from typing import Any

from labeling.import_records import (
    MAX_LINE_CHARS,
    MAX_MODEL_CHARS,
    ImportRecord,
    external_id_of,
    json_type,
    short,
    split_ok,
    storable,
    text_ok,
)
from labeling.models import Prompt

# Our records are at most three levels deep; anything far deeper is a broken or hostile file.
MAX_JSON_DEPTH = 20
_ROLES = ("system", "user", "assistant")
_JSONL_KEYS = ("id", "prompt", "messages", "completions", "completion", "split", "model", "completion_models")


def parse_jsonl(text: str) -> tuple[list[ImportRecord], list[str]]:
    """The records of the lines without problems, and every problem (``line N: …``) of the others."""
    records: list[ImportRecord] = []
    errors: list[str] = []
    if text.lstrip().startswith("["):
        return [], ["line 1: the file is one JSON array; put one JSON object on each line (JSON Lines) instead."]
    # Split on \n only: str.splitlines would also break on U+2028 and friends, which JSON strings may hold.
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        if len(line) > MAX_LINE_CHARS:
            errors.append(f"line {number}: longer than {MAX_LINE_CHARS:,} characters.")
            continue
        try:
            obj = json.loads(line)
        except RecursionError:
            errors.append(f"line {number}: JSON nested too deeply.")
            continue
        except json.JSONDecodeError as exc:
            errors.append(f"line {number}: not valid JSON ({exc.msg} at column {exc.colno}).")
            continue
        except ValueError:
            # Python refuses integers of more than 4,300 digits with a plain ValueError, not a JSONDecodeError.
            errors.append(f"line {number}: not valid JSON (a number with too many digits).")
            continue
        problems: list[str] = []
        record = _record_from_json(number, obj, problems)
        if problems:
            errors.extend(f"line {number}: {problem}" for problem in problems)
        elif record is not None:
            records.append(record)
    return records, errors


def _record_from_json(number: int, obj: Any, problems: list[str]) -> ImportRecord | None:
    if not isinstance(obj, dict):
        problems.append(f"expected a JSON object, got {json_type(obj)}.")
        return None
    if _depth(obj) > MAX_JSON_DEPTH:
        problems.append("JSON nested too deeply.")
        return None
    unknown = [key for key in obj if key not in _JSONL_KEYS]
    if unknown:
        problems.append(f"unknown field {unknown[0]!r}; the fields are {', '.join(_JSONL_KEYS)}.")
        return None

    external_id = external_id_of(obj.get("id"), problems)
    messages = _messages(obj, problems)
    split = obj.get("split", Prompt.Split.TRAIN)
    split_ok(split, problems)

    if "completions" in obj and "completion" in obj:
        problems.append("give either 'completions' or 'completion', not both.")
        completions: list[str] = []
    elif "completion" in obj:
        value = obj["completion"]
        completions = [value] if text_ok(value, "'completion'", problems) else []
    elif "completions" in obj:
        completions = _completion_list(obj["completions"], problems)
    else:
        completions = []

    models = _models(obj, len(completions), problems)
    if problems:
        return None
    return ImportRecord(number, external_id, messages, split, completions, models)


def _messages(obj: dict[str, Any], problems: list[str]) -> list[dict[str, str]]:
    if "prompt" in obj and "messages" in obj:
        problems.append("give either 'prompt' or 'messages', not both.")
        return []
    if "prompt" in obj:
        prompt = obj["prompt"]
        return [{"role": "user", "content": prompt}] if text_ok(prompt, "'prompt'", problems) else []
    if "messages" not in obj:
        problems.append("missing 'prompt' (a string) or 'messages' (a list of chat messages).")
        return []
    raw = obj["messages"]
    if not isinstance(raw, list) or not raw:
        problems.append("'messages' must be a non-empty list of {\"role\": …, \"content\": …} objects.")
        return []
    messages: list[dict[str, str]] = []
    for index, message in enumerate(raw):
        where = f"'messages'[{index}]"
        if not isinstance(message, dict) or set(message) - {"role", "content"}:
            problems.append(f"{where} must be an object with only 'role' and 'content'.")
            return []
        role = message.get("role")
        if role not in _ROLES:
            problems.append(f"{where} has role {short(role)}; use system, user or assistant.")
            return []
        if role == "system" and index != 0:
            problems.append(f"{where}: a system message may only come first.")
            return []
        if not text_ok(message.get("content"), f"{where}'s 'content'", problems):
            return []
        messages.append({"role": role, "content": message["content"]})
    if messages[-1]["role"] != "user":
        problems.append("the last of 'messages' must be a user message (the completions answer it).")
    return messages


def _completion_list(value: Any, problems: list[str]) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        problems.append("'completions' must be a list of strings.")
        return []
    for index, item in enumerate(value):
        if not text_ok(item, f"'completions'[{index}]", problems):
            return []
    return value


def _models(obj: dict[str, Any], n_completions: int, problems: list[str]) -> list[str]:
    if "model" in obj and "completion_models" in obj:
        problems.append("give either 'model' or 'completion_models', not both.")
        return []
    if "model" in obj:
        model = obj["model"]
        if not isinstance(model, str) or len(model) > MAX_MODEL_CHARS or not storable(model):
            problems.append(f"'model' must be a string of at most {MAX_MODEL_CHARS} characters.")
            return []
        return [model.strip()] * n_completions
    if "completion_models" in obj:
        models = obj["completion_models"]
        if (
            not isinstance(models, list)
            or not all(isinstance(m, str) and len(m) <= MAX_MODEL_CHARS and storable(m) for m in models)
        ):
            problems.append(f"'completion_models' must be a list of strings of at most {MAX_MODEL_CHARS} characters.")
            return []
        if len(models) != n_completions:
            problems.append(f"'completion_models' has {len(models)} names for {n_completions} completions.")
            return []
        return [m.strip() for m in models]
    return [""] * n_completions


def _depth(value: Any) -> int:
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth > MAX_JSON_DEPTH:
                return depth
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest
