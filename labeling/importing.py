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

Each format is read in its own module (labeling.import_jsonl, labeling.import_csv), into the records and checks
of labeling.import_records; this module decodes the file, checks it against the project and writes it.
"""
from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from itertools import combinations

from django.conf import settings
from django.db import IntegrityError, transaction

from labeling.import_csv import parse_csv
from labeling.import_jsonl import parse_jsonl
from labeling.import_records import MAX_LINE_CHARS, ImportRecord
from labeling.models import Completion, PairTask, Project, Prompt, RateTask

__all__ = [
    "FORMAT_HELP",
    "MAX_COMPLETIONS",
    "MAX_ERRORS_SHOWN",
    "MAX_LINE_CHARS",
    "MULTIPART_OVERHEAD_BYTES",
    "ImportFailed",
    "ImportReport",
    "project_import",
]

MAX_COMPLETIONS = 10
MAX_ERRORS_SHOWN = 200
# A multipart upload of a file at the size limit is this much longer: boundaries, part headers, a CSRF token.
MULTIPART_OVERHEAD_BYTES = 64 * 1024

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
    records, errors = parse_jsonl(text) if fmt == "jsonl" else parse_csv(text)
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


# ---------------------------------------------------------------- checks across the lines


def _check_against_project(project: Project, records: list[ImportRecord]) -> list[str]:
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


# ---------------------------------------------------------------- writing


def _write(project: Project, records: list[ImportRecord], *, seed: bytes) -> ImportReport:
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
