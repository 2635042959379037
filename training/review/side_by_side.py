"""Reads for a run's side by side: the held-out prompts with the base and tuned outputs of one comparison, one
row per prompt and sample (searched and filtered as the page asks), and the lengths of the outputs shown."""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from statistics import mean
from typing import Any

from labeling.models import Completion, Project, Prompt
from training.models import ModelVersion
from training.review.comparisons import comparison_key
from training.review.matched_outputs import generated_outputs, outputs_by_prompt_and_sample, pair_to_compare
from training.trainer.generation_settings import engine_of
from training.trainer.movement import same_text


@dataclass(frozen=True)
class SideBySideRow:
    prompt: Prompt
    sample: int | None
    base: Completion | None
    tuned: Completion | None

    @property
    def differ(self) -> bool:
        return self.base is not None and self.tuned is not None and not same_text(self.tuned.text, self.base.text)

    @property
    def identical(self) -> bool:
        return self.base is not None and self.tuned is not None and same_text(self.tuned.text, self.base.text)

    @property
    def length_change(self) -> int | None:
        if self.base is None or self.tuned is None:
            return None
        return len(self.tuned.text) - len(self.base.text)

    @property
    def engines(self) -> str | None:
        """"tuned's engine against base's" when the two were written by different engines or precisions (shown
        on the row: they are not a matched pair), else None."""
        if self.base is None or self.tuned is None:
            return None
        base, tuned = engine_of(self.base.generation_settings), engine_of(self.tuned.generation_settings)
        return None if base == tuned else f"{tuned} against {base}"


def _folded(text: str) -> str:
    # NFC so "café" typed with a combining accent still matches; casefold for case-insensitive search.
    return unicodedata.normalize("NFC", text).casefold()


def _prompt_matches(prompt: Prompt, needle: str) -> bool:
    contents = (str(m.get("content", "")) for m in prompt.messages if isinstance(m, dict))
    return any(needle in _folded(content) for content in contents)


def side_by_side(
    *,
    project: Project,
    base: ModelVersion,
    tuned: ModelVersion,
    settings: dict[str, Any] | None,
    search: str = "",
    only_different: bool = False,
) -> list[SideBySideRow]:
    """Held-out prompts with the base and tuned outputs of one comparison (``settings``), one row per prompt
    and sample; a prompt with no output in it yet gets one row with None on both sides.

    ``search`` matches the text of the prompt's messages or of either output (case-insensitive, accents and
    quotes as typed: the messages are searched as text, never as their JSON); ``only_different`` keeps the
    rows where both outputs exist and differ."""
    prompts = list(Prompt.objects.filter(project=project, split=Prompt.Split.HELDOUT).order_by("id"))
    found: dict[int, dict[tuple[int, int], dict[str, Completion]]] = {}
    if settings is not None:
        outputs = generated_outputs(None, project, [base, tuned]).order_by("id")
        found = outputs_by_prompt_and_sample(outputs, comparison_key(settings), None)
    base_outputs, tuned_outputs = _one_each(found.get(base.pk, {}), found.get(tuned.pk, {}))
    samples_of: dict[int, set[int]] = {}
    for prompt_id, sample in [*base_outputs, *tuned_outputs]:
        samples_of.setdefault(prompt_id, set()).add(sample)
    rows = []
    for prompt in prompts:
        samples = sorted(samples_of.get(prompt.pk, ()))
        if not samples:
            rows.append(SideBySideRow(prompt=prompt, sample=None, base=None, tuned=None))
        for sample in samples:
            rows.append(
                SideBySideRow(
                    prompt=prompt, sample=sample, base=base_outputs.get((prompt.pk, sample)),
                    tuned=tuned_outputs.get((prompt.pk, sample)),
                )
            )
    needle = _folded(search.strip())
    if needle:
        rows = [
            row for row in rows
            if _prompt_matches(row.prompt, needle)
            or any(c is not None and needle in _folded(c.text) for c in (row.base, row.tuned))
        ]
    if only_different:
        rows = [row for row in rows if row.differ]
    return rows


def _one_each(
    base: dict[tuple[int, int], dict[str, Completion]], tuned: dict[tuple[int, int], dict[str, Completion]]
) -> tuple[dict[tuple[int, int], Completion], dict[tuple[int, int], Completion]]:
    """One output a side for each prompt and sample to show: a matched pair where there is one, else the newest
    of each side (a row whose engines differ says so)."""
    shown_base: dict[tuple[int, int], Completion] = {}
    shown_tuned: dict[tuple[int, int], Completion] = {}
    for place in set(base) | set(tuned):
        mine, theirs = base.get(place, {}), tuned.get(place, {})
        picked = pair_to_compare(mine, theirs, mixed_engines=True)
        if picked is not None:
            shown_base[place], shown_tuned[place] = picked
        elif mine:
            shown_base[place] = max(mine.values(), key=lambda c: c.pk)
        else:
            shown_tuned[place] = max(theirs.values(), key=lambda c: c.pk)
    return shown_base, shown_tuned


def output_lengths(rows: list[SideBySideRow]) -> dict[str, float | int | None]:
    """Over rows where both outputs exist: how many, how many differ, mean characters of each side."""
    both = [row for row in rows if row.base is not None and row.tuned is not None and row.engines is None]
    return {
        "pairs": len(both),
        "differ": sum(1 for row in both if row.differ),
        "base_mean": mean(len(row.base.text) for row in both) if both else None,
        "tuned_mean": mean(len(row.tuned.text) for row in both) if both else None,
    }
