"""Importing prompts and completions from JSON Lines or CSV, and creating the tasks annotators work.

An import is all or nothing: the whole file is parsed and checked first, every problem is collected
with its line number, and only a file with no problems is written, in one transaction. The formats:

JSON Lines (``.jsonl``, ``.json``, ``.ndjson``), one object per line::

    {"id": "q1", "prompt": "What is 2+2?", "completions": ["4", "5"], "split": "train"}
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
     "completion": "Hello!", "model": "gpt-x"}

``prompt`` (text) or ``messages`` (chat, ending with a user message); ``completions`` (a list of
texts) or ``completion`` (one text); optional ``id``, ``split`` (``train`` or ``heldout``), ``model``
(who wrote every completion on the line) or ``completion_models`` (one name per completion).

A prompt may come without completions. A held-out one is answered by base and tuned models at review
time; a train one waits for "Generate candidates" on the dashboard, which pairs the generated answers.
A train prompt of a compare project with exactly one completion is refused: one text makes no pair.

CSV (``.csv``) with a header row: ``prompt``, optional ``id``, ``split``, ``model``, and completion
columns ``completion``, ``completion_1``, ``completion_2``, … (or ``completion_a``, ``completion_b``);
empty cells are ignored, and a file with only ``prompt`` (and ``id``, ``split``) imports prompts alone.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from labeling.models import Completion, PairTask, Project, Prompt, RateTask

MAX_LINE_CHARS = 1_000_000
MAX_COMPLETIONS = 10
MAX_ERRORS_SHOWN = 200
# A multipart upload of a file at the size limit is this much longer: boundaries, part headers, a CSRF token.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
# Our records are at most three levels deep; anything far deeper is a broken or hostile file.
MAX_JSON_DEPTH = 20
_MAX_ID_CHARS = 200
_MAX_MODEL_CHARS = 200
_ROLES = ("system", "user", "assistant")
_JSONL_KEYS = ("id", "prompt", "messages", "completions", "completion", "split", "model", "completion_models")
_CSV_FIXED_COLUMNS = ("id", "prompt", "split", "model")
_CSV_COMPLETION_COLUMN = re.compile(r"^completion(?:_(\d+|[a-z]))?$")
_SPLITS = (Prompt.Split.TRAIN.value, Prompt.Split.HELDOUT.value)

FORMAT_HELP = (
    "JSON Lines (.jsonl): one object per line with 'prompt' (or chat 'messages') and 'completions' "
    "(or 'completion'), optional 'id', 'split' (train or heldout) and 'model'. "
    "CSV (.csv): a header row with 'prompt', optional 'id' and 'split', and completion columns "
    "'completion', 'completion_1', 'completion_2', … "
    "Prompts may come without completions and get candidates generated from the dashboard."
)


@dataclass(frozen=True)
class ImportReport:
    prompts: int
    completions: int
    tasks: int
    heldout: int
    # Train prompts imported without completions: they get tasks once candidates are generated for them.
    awaiting_candidates: int = 0

    @property
    def next_step(self) -> str:
        """What the admin should do next, or "" when the import left nothing waiting."""
        n = self.awaiting_candidates
        if not n:
            return ""
        if n == 1:
            return "1 prompt has no completions yet: generate candidates from the dashboard"
        return f"{n} prompts have no completions yet: generate candidates from the dashboard"

    def __str__(self) -> str:
        counts = f"{self.prompts} prompts ({self.heldout} held out), {self.completions} completions, {self.tasks} tasks"
        return f"{counts}; {self.next_step}" if self.next_step else counts


class ImportFailed(Exception):
    """The file was refused and nothing was written. ``errors`` lists each problem, most with its line.

    At most MAX_ERRORS_SHOWN problems are listed; when there were more, the last item says how many
    more there were, and ``error_count`` holds the total.
    """

    def __init__(self, errors: list[str], *, filename: str = "") -> None:
        self.error_count = len(errors)
        shown = errors[:MAX_ERRORS_SHOWN]
        if len(errors) > MAX_ERRORS_SHOWN:
            shown.append(f"…and {len(errors) - MAX_ERRORS_SHOWN} more problems not listed.")
        self.errors = shown
        where = f" in {filename!r}" if filename else ""
        if self.error_count == 1:
            message = f"{errors[0]} Nothing was imported."
        else:
            message = f"{self.error_count} problems{where}; nothing was imported."
        super().__init__(message)
        self.message = message


@dataclass
class _Record:
    line: int
    external_id: str
    messages: list[dict[str, str]]
    split: str
    completions: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)


def project_import(*, project: Project, filename: str, data: bytes) -> ImportReport:
    """Add the prompts and completions in ``data`` to ``project`` and create their tasks.

    Compare projects get a pair task for every two completions of a train prompt (so a ranking of N
    completions gives N·(N−1)/2 pairs, sides in random order); rate projects get one rate task per
    completion of a train prompt; held-out prompts get no tasks. A train prompt without completions gets
    no tasks either: it is counted in ``ImportReport.awaiting_candidates``. Raises ImportFailed listing
    every problem; then nothing is written.
    """
    text = _decoded(data)
    fmt = _format_of(filename, text)
    records, errors = _parse_jsonl(text) if fmt == "jsonl" else _parse_csv(text)
    if not records and not errors:
        errors.append("The file has no prompts in it (only blank lines or a header).")
    errors.extend(_check_against_project(project, records))
    if errors:
        errors.sort(key=_line_of)
        raise ImportFailed(errors, filename=filename)
    try:
        return _write(project, records, seed=hashlib.sha256(data).digest())
    except IntegrityError as exc:
        # Only a concurrent import of the same ids gets here: the checks above ran before it committed.
        raise ImportFailed(
            ["An id in this file was imported into the project by someone else at the same time; import again to see which."],
            filename=filename,
        ) from exc


# ---------------------------------------------------------------- bytes → text


def _decoded(data: bytes) -> str:
    max_bytes = settings.PREFTUNE_IMPORT_MAX_BYTES
    if len(data) > max_bytes:
        raise ImportFailed([f"The file is {_size(len(data))}, over the {_size(max_bytes)} limit; split it into smaller files."])
    if not data.strip():
        raise ImportFailed(["The file is empty."])
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ImportFailed(["The file is UTF-16 encoded; save it as UTF-8 and import it again."])
    nul = data.find(b"\x00")
    if nul != -1:
        raise ImportFailed(
            [
                f"line {_line_at(data, nul)}: NUL byte at byte {nul}; the file is binary or UTF-16, "
                "save it as UTF-8 text."
            ]
        )
    try:
        # utf-8-sig: spreadsheet programs put a byte order mark in front of UTF-8 CSV files.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportFailed(
            [f"line {_line_at(data, exc.start)}: not valid UTF-8 (byte 0x{data[exc.start]:02X} at byte {exc.start}); save the file as UTF-8."]
        ) from None


def _line_at(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _size(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB" if n >= 1024 * 1024 else f"{n:,} bytes"


def _format_of(filename: str, text: str) -> str:
    name = filename.lower()
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    if name.endswith(".csv"):
        return "csv"
    # No telling extension (a pasted file, a .txt): decide from the first character.
    first = text.lstrip()[:1]
    if first == "{":
        return "jsonl"
    if "prompt" in text.split("\n", 1)[0].lower():
        return "csv"
    raise ImportFailed(
        [f"Cannot tell the format of {filename or 'the file'!r}: name it .jsonl (JSON Lines) or .csv (with a header row)."]
    )


# ---------------------------------------------------------------- JSON Lines


def _parse_jsonl(text: str) -> tuple[list[_Record], list[str]]:
    records: list[_Record] = []
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


def _record_from_json(number: int, obj: Any, problems: list[str]) -> _Record | None:
    if not isinstance(obj, dict):
        problems.append(f"expected a JSON object, got {_json_type(obj)}.")
        return None
    if _depth(obj) > MAX_JSON_DEPTH:
        problems.append("JSON nested too deeply.")
        return None
    unknown = [key for key in obj if key not in _JSONL_KEYS]
    if unknown:
        problems.append(f"unknown field {unknown[0]!r}; the fields are {', '.join(_JSONL_KEYS)}.")
        return None

    external_id = _external_id(obj.get("id"), problems)
    messages = _messages(obj, problems)
    split = obj.get("split", Prompt.Split.TRAIN)
    if split not in _SPLITS:
        problems.append(f"'split' must be 'train' or 'heldout', not {_short(split)}.")

    if "completions" in obj and "completion" in obj:
        problems.append("give either 'completions' or 'completion', not both.")
        completions: list[str] = []
    elif "completion" in obj:
        value = obj["completion"]
        completions = [value] if _text_ok(value, "'completion'", problems) else []
    elif "completions" in obj:
        completions = _completion_list(obj["completions"], problems)
    else:
        completions = []

    models = _models(obj, len(completions), problems)
    if problems:
        return None
    return _Record(number, external_id, messages, split, completions, models)


def _external_id(value: Any, problems: list[str]) -> str:
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        problems.append(f"'id' must be a non-empty string, not {_short(value)}.")
        return ""
    value = value.strip()
    if len(value) > _MAX_ID_CHARS:
        problems.append(f"'id' is longer than {_MAX_ID_CHARS} characters.")
    elif not _storable(value):
        problems.append("'id' holds a NUL character or an invalid \\u escape.")
    return value


def _messages(obj: dict[str, Any], problems: list[str]) -> list[dict[str, str]]:
    if "prompt" in obj and "messages" in obj:
        problems.append("give either 'prompt' or 'messages', not both.")
        return []
    if "prompt" in obj:
        prompt = obj["prompt"]
        return [{"role": "user", "content": prompt}] if _text_ok(prompt, "'prompt'", problems) else []
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
            problems.append(f"{where} has role {_short(role)}; use system, user or assistant.")
            return []
        if role == "system" and index != 0:
            problems.append(f"{where}: a system message may only come first.")
            return []
        if not _text_ok(message.get("content"), f"{where}'s 'content'", problems):
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
        if not _text_ok(item, f"'completions'[{index}]", problems):
            return []
    return value


def _models(obj: dict[str, Any], n_completions: int, problems: list[str]) -> list[str]:
    if "model" in obj and "completion_models" in obj:
        problems.append("give either 'model' or 'completion_models', not both.")
        return []
    if "model" in obj:
        model = obj["model"]
        if not isinstance(model, str) or len(model) > _MAX_MODEL_CHARS or not _storable(model):
            problems.append(f"'model' must be a string of at most {_MAX_MODEL_CHARS} characters.")
            return []
        return [model.strip()] * n_completions
    if "completion_models" in obj:
        models = obj["completion_models"]
        if (
            not isinstance(models, list)
            or not all(isinstance(m, str) and len(m) <= _MAX_MODEL_CHARS and _storable(m) for m in models)
        ):
            problems.append(f"'completion_models' must be a list of strings of at most {_MAX_MODEL_CHARS} characters.")
            return []
        if len(models) != n_completions:
            problems.append(f"'completion_models' has {len(models)} names for {n_completions} completions.")
            return []
        return [m.strip() for m in models]
    return [""] * n_completions


# ---------------------------------------------------------------- CSV


def _parse_csv(text: str) -> tuple[list[_Record], list[str]]:
    # The csv module's default field limit (128 KiB) is below our line limit; raising it is harmless
    # to other readers in the process, which only ever see a higher ceiling.
    if csv.field_size_limit() < MAX_LINE_CHARS:
        csv.field_size_limit(MAX_LINE_CHARS)
    lines = _CsvLines(text)
    reader = csv.reader(lines)
    records: list[_Record] = []
    errors: list[str] = []
    rows = _csv_rows(reader, lines, errors)
    header_row = next(rows, None)
    if header_row is None:
        return [], errors
    header_line, header, _ = header_row
    columns, completion_columns = _csv_header(header_line, header, errors)
    if columns is None:
        return [], errors
    for number, row, unclosed in rows:
        if len(row) != len(header):
            errors.append(_unclosed_quote_error(number) if unclosed else _cell_count_error(number, len(row), header))
            continue
        if sum(len(cell) for cell in row) > MAX_LINE_CHARS:
            errors.append(f"line {number}: longer than {MAX_LINE_CHARS:,} characters.")
            continue
        cells = dict(zip(columns, row, strict=True))
        problems: list[str] = []
        external_id = _external_id(cells.get("id") or None, problems)
        prompt = cells["prompt"]
        messages = [{"role": "user", "content": prompt}] if _text_ok(prompt, "'prompt'", problems) else []
        split = cells.get("split", "").strip() or Prompt.Split.TRAIN
        if split not in _SPLITS:
            problems.append(f"'split' must be 'train' or 'heldout', not {_short(split)}.")
        completions = [cells[name] for name in completion_columns if cells[name].strip()]
        for name in completion_columns:
            if cells[name].strip():
                _text_ok(cells[name], f"{name!r}", problems)
        model = cells.get("model", "").strip()
        if len(model) > _MAX_MODEL_CHARS:
            problems.append(f"'model' is longer than {_MAX_MODEL_CHARS} characters.")
        if problems:
            errors.extend(f"line {number}: {problem}" for problem in problems)
            continue
        if unclosed:
            # Checked last, so a record with another problem keeps the message it always had.
            errors.append(_unclosed_quote_error(number))
            continue
        records.append(_Record(number, external_id, messages, split, completions, [model] * len(completions)))
    return records, errors


class _CsvLines:
    """The file's lines for csv.reader, noting when they run out.

    csv.reader (not strict) ends a quoted cell left open at the end of the file as if it had been closed,
    taking every later line into that cell. A cell count catches that only when the open cell is not the
    last column; in a file of prompts alone there is one column, so a stray quote would turn the rest of
    the file into one prompt. The reader asks for a line past the end only while a quoted cell is open.
    """

    def __init__(self, text: str) -> None:
        self._lines = iter(io.StringIO(text, newline=""))
        self.ran_out = False

    def __iter__(self) -> _CsvLines:
        return self

    def __next__(self) -> str:
        try:
            return next(self._lines)
        except StopIteration:
            self.ran_out = True
            raise


def _unclosed_quote_error(number: int) -> str:
    return (f'line {number}: a quote (") opens a cell that is never closed, so the rest of the file ran into '
            'that cell; close the quote, or write a quote inside a quoted cell as two ("").')


def _cell_count_error(number: int, found: int, header: list[str]) -> str:
    """Line ``number`` has ``found`` values where the header names ``len(header)`` columns: say which are missing
    or extra, and the usual cause (an unquoted comma in a text, or a value left out)."""
    expected = len(header)
    values = f"{found} value{'s' if found != 1 else ''}"
    if found < expected:
        missing = ", ".join(header[found:])
        return (f"line {number}: {values} where the header has {expected} columns ({', '.join(header)}), so "
                f"{missing} {'is' if expected - found == 1 else 'are'} missing. Leave a value empty with two commas "
                "in a row, or check for a line break inside a text that is not in double quotes.")
    return (f"line {number}: {values} where the header has {expected} columns ({', '.join(header)}). A text with a "
            'comma in it needs double quotes around it: "Yes, it does".')


def _csv_rows(reader: Any, lines: _CsvLines, errors: list[str]) -> Iterator[tuple[int, list[str], bool]]:
    """(line where the record starts, cells, whether a quoted cell in it is never closed) for each non-blank
    record; stops at a malformed one."""
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            errors.append(f"line {start}: CSV error: {exc}; nothing after this line was read.")
            return
        if any(cell.strip() for cell in row):
            yield start, row, lines.ran_out


def _csv_header(line: int, header: list[str], errors: list[str]) -> tuple[list[str] | None, list[str]]:
    columns = [name.strip().lower() for name in header]
    problems: list[str] = []
    for name in columns:
        if name not in _CSV_FIXED_COLUMNS and not _CSV_COMPLETION_COLUMN.match(name):
            problems.append(
                f"line {line}: unknown column {name!r}; the columns are prompt, id, split, model, "
                "and completion, completion_1, completion_2, … (or completion_a, completion_b)."
            )
    duplicates = sorted({name for name in columns if columns.count(name) > 1})
    if duplicates:
        problems.append(f"line {line}: column {duplicates[0]!r} appears more than once.")
    if "prompt" not in columns:
        problems.append(f"line {line}: the header has no 'prompt' column.")
    completion_columns = sorted((name for name in columns if _CSV_COMPLETION_COLUMN.match(name)), key=_column_order)
    if problems:
        errors.extend(problems)
        return None, []
    return columns, completion_columns


def _column_order(name: str) -> tuple[int, int, str]:
    suffix = _CSV_COMPLETION_COLUMN.match(name).group(1) or ""  # type: ignore[union-attr]
    if not suffix:
        return (0, 0, "")
    if suffix.isdigit():
        return (1, int(suffix), "")
    return (2, 0, suffix)


# ---------------------------------------------------------------- checks shared by both formats


def _text_ok(value: Any, what: str, problems: list[str]) -> bool:
    if not isinstance(value, str):
        problems.append(f"{what} must be a string, not {_json_type(value)}.")
        return False
    if not value.strip():
        problems.append(f"{what} is empty.")
        return False
    if not _storable(value):
        problems.append(f"{what} holds a NUL character or an invalid \\u escape, which cannot be stored.")
        return False
    return True


def _storable(value: str) -> bool:
    # A JSON "\u0000" or a lone surrogate ("\ud800") parses fine but PostgreSQL refuses to store it.
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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


def _check_against_project(project: Project, records: list[_Record]) -> list[str]:
    """Problems that depend on the other lines or on what the project already holds."""
    errors: list[str] = []
    first_line_of: dict[str, int] = {}
    for record in records:
        where = f"line {record.line}:"
        if record.external_id:
            if record.external_id in first_line_of:
                errors.append(f"{where} id {record.external_id!r} already appears on line {first_line_of[record.external_id]}.")
            else:
                first_line_of[record.external_id] = record.line
        if len(record.completions) > MAX_COMPLETIONS:
            errors.append(f"{where} {len(record.completions)} completions; at most {MAX_COMPLETIONS} per prompt.")
        seen: dict[str, int] = {}
        for index, completion in enumerate(record.completions, start=1):
            key = completion.strip()
            if key in seen:
                errors.append(f"{where} completions {seen[key]} and {index} are the same text.")
                break
            seen[key] = index
        # No completions is fine (the prompt waits for generated candidates); one alone cannot be paired,
        # and silently importing it would leave a prompt that looks ready but never reaches an annotator.
        if record.split == Prompt.Split.TRAIN and project.mode == Project.Mode.COMPARE and len(record.completions) == 1:
            errors.append(
                f"{where} compare projects pair two or more completions per prompt, and this prompt has one: add a "
                "second completion, or import the prompt without completions and generate candidates from the dashboard."
            )
    ids = list(first_line_of)
    existing: set[str] = set()
    for start in range(0, len(ids), 500):
        existing.update(
            Prompt.objects.filter(project=project, external_id__in=ids[start : start + 500]).values_list(
                "external_id", flat=True
            )
        )
    for external_id in ids:
        if external_id in existing:
            errors.append(f"line {first_line_of[external_id]}: id {external_id!r} is already in this project.")
    return errors


def _line_of(error: str) -> int:
    match = re.match(r"line (\d+):", error)
    return int(match.group(1)) if match else 0


def _json_type(value: Any) -> str:
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


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "…"


# ---------------------------------------------------------------- writing


def _write(project: Project, records: list[_Record], *, seed: bytes) -> ImportReport:
    # Seeded by the file's bytes: the same file always gives the same sides, and the order of the
    # completions in the file (often "reference answer first") says nothing about side A or B.
    rng = random.Random(seed)
    with transaction.atomic():
        prompts = Prompt.objects.bulk_create(
            [Prompt(project=project, external_id=r.external_id, messages=r.messages, split=r.split) for r in records],
            batch_size=500,
        )
        completions_of: list[list[Completion]] = []
        all_completions: list[Completion] = []
        for prompt, record in zip(prompts, records, strict=True):
            assert prompt.pk is not None, "bulk_create must return primary keys (PostgreSQL, SQLite ≥ 3.35)"
            made = [
                Completion(prompt=prompt, text=text, model_name=model, source=Completion.Source.IMPORTED)
                for text, model in zip(record.completions, record.models, strict=True)
            ]
            completions_of.append(made)
            all_completions.extend(made)
        Completion.objects.bulk_create(all_completions, batch_size=500)

        pair_tasks: list[PairTask] = []
        rate_tasks: list[RateTask] = []
        for prompt, made in zip(prompts, completions_of, strict=True):
            if prompt.split != Prompt.Split.TRAIN:
                continue
            if project.mode == Project.Mode.COMPARE:
                for first, second in combinations(made, 2):
                    a, b = (first, second) if rng.random() < 0.5 else (second, first)
                    pair_tasks.append(
                        PairTask(project=project, prompt=prompt, completion_a=a, completion_b=b, overlap=project.overlap)
                    )
            else:
                rate_tasks.extend(RateTask(project=project, completion=c, overlap=project.overlap) for c in made)
        PairTask.objects.bulk_create(pair_tasks, batch_size=500)
        RateTask.objects.bulk_create(rate_tasks, batch_size=500)
    return ImportReport(
        prompts=len(prompts),
        completions=len(all_completions),
        tasks=len(pair_tasks) + len(rate_tasks),
        heldout=sum(1 for r in records if r.split == Prompt.Split.HELDOUT),
        awaiting_candidates=sum(1 for r in records if r.split == Prompt.Split.TRAIN and not r.completions),
    )
