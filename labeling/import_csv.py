"""Reading a CSV import: a header row naming ``prompt``, optional ``id``, ``split``, ``model`` and completion columns.

Every problem is collected with the line its record starts on; a record with a problem gives no record, and a
malformed file stops the reading at the line where it breaks.
"""
from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from typing import Any

from labeling.import_records import (
    MAX_LINE_CHARS,
    MAX_MODEL_CHARS,
    ImportRecord,
    external_id_of,
    split_ok,
    text_ok,
)
from labeling.models import Prompt

_CSV_FIXED_COLUMNS = ("id", "prompt", "split", "model")
_CSV_COMPLETION_COLUMN = re.compile(r"^completion(?:_(\d+|[a-z]))?$")


def parse_csv(text: str) -> tuple[list[ImportRecord], list[str]]:
    """The records of the rows without problems, and every problem (``line N: …``) of the others and the header."""
    # The csv module's default field limit (128 KiB) is below our line limit; raising it is harmless
    # to other readers in the process, which only ever see a higher ceiling.
    if csv.field_size_limit() < MAX_LINE_CHARS:
        csv.field_size_limit(MAX_LINE_CHARS)
    lines = _CsvLines(text)
    reader = csv.reader(lines)
    records: list[ImportRecord] = []
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
        external_id = external_id_of(cells.get("id") or None, problems)
        prompt = cells["prompt"]
        messages = [{"role": "user", "content": prompt}] if text_ok(prompt, "'prompt'", problems) else []
        split = cells.get("split", "").strip() or Prompt.Split.TRAIN
        split_ok(split, problems)
        completions = [cells[name] for name in completion_columns if cells[name].strip()]
        for name in completion_columns:
            if cells[name].strip():
                text_ok(cells[name], f"{name!r}", problems)
        model = cells.get("model", "").strip()
        if len(model) > MAX_MODEL_CHARS:
            problems.append(f"'model' is longer than {MAX_MODEL_CHARS} characters.")
        if problems:
            errors.extend(f"line {number}: {problem}" for problem in problems)
            continue
        if unclosed:
            # Checked last, so a record with another problem keeps the message it always had.
            errors.append(_unclosed_quote_error(number))
            continue
        records.append(ImportRecord(number, external_id, messages, split, completions, [model] * len(completions)))
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
