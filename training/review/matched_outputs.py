"""Reads of MATCHED outputs: which comparisons (sets of generation settings, sample index aside) two versions have
outputs in, the one a page shows, and the pairs of outputs each comparison pairs: same prompt, same settings, same
sample index, by one engine in one precision (``training.review.comparisons``). Nothing else is ever paired,
battled or counted."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from labeling.models import Completion, Project, Prompt
from training.models import GenerationJob, ModelVersion, TuningRun
from training.review.comparisons import (
    comparison_key,
    describe_settings,
    matched_settings_of,
    sample_of,
)
from training.trainer.generation_settings import engine_of
from training.trainer.movement import same_text


@dataclass(frozen=True)
class Comparison:
    """One set of generation settings (sample index left out) that both versions have outputs for."""

    settings: dict[str, Any]
    key: str
    samples: tuple[int, ...]
    pairs: int  # (prompt, sample) with an output from both versions
    prompts: int  # prompts with at least one matched pair
    first_outputs: int
    second_outputs: int
    newest_id: int

    @property
    def label(self) -> str:
        return describe_settings(self.settings, self.samples or None)

    @property
    def samples_per_prompt(self) -> int:
        return len(self.samples)


def generated_outputs(
    prompt_ids: Iterable[int] | None, project: Project, versions: Sequence[ModelVersion]
) -> QuerySet[Completion]:
    """The generated outputs of ``versions`` on ``prompt_ids``, or on the project's held-out prompts when None."""
    outputs = Completion.objects.filter(model_version__in=[v.pk for v in versions], source=Completion.Source.GENERATED)
    if prompt_ids is None:
        return outputs.filter(prompt__project=project, prompt__split=Prompt.Split.HELDOUT)
    return outputs.filter(prompt_id__in=list(prompt_ids))


def comparisons(
    *, project: Project, first: ModelVersion, second: ModelVersion, prompt_ids: Iterable[int] | None = None
) -> list[Comparison]:
    """Every settings group either version has outputs in (held-out prompts unless ``prompt_ids``), newest
    first; ``pairs`` says how many of its outputs are matched. Outputs stored without their settings are in
    none: nothing says they were made the same way as anything else."""
    groups: dict[str, dict[str, Any]] = {}
    rows = generated_outputs(prompt_ids, project, [first, second]).values_list(
        "id", "prompt_id", "model_version_id", "generation_settings"
    )
    for pk, prompt_id, version_id, generation_settings in rows:
        if not matched_settings_of(generation_settings):
            continue
        key = comparison_key(generation_settings)
        group = groups.setdefault(
            key, {"settings": matched_settings_of(generation_settings), "outputs": {first.pk: set(), second.pk: set()}, "newest": 0}
        )
        group["outputs"][version_id].add((prompt_id, sample_of(generation_settings), engine_of(generation_settings)))
        group["newest"] = max(group["newest"], pk)
    result = []
    for key, group in groups.items():
        # Matched only within one engine and precision, as ``matched_pairs`` pairs them by default.
        both = {(p, s) for p, s, _ in group["outputs"][first.pk] & group["outputs"][second.pk]}
        result.append(
            Comparison(
                settings=group["settings"], key=key, samples=tuple(sorted({s for _, s in both})),
                pairs=len(both), prompts=len({p for p, _ in both}), first_outputs=len({(p, s) for p, s, _ in group["outputs"][first.pk]}),
                second_outputs=len({(p, s) for p, s, _ in group["outputs"][second.pk]}), newest_id=group["newest"],
            )
        )
    return sorted(result, key=lambda c: -c.newest_id)


def comparison_choose(
    options: Sequence[Comparison], *, key: str | None = None, run: TuningRun | None = None
) -> Comparison | None:
    """The comparison a page shows: ``key`` if it names one; else the newest review job's settings for
    ``run``; else the newest comparison with matched pairs; else the newest at all (None when there are none)."""
    by_key = {c.key: c for c in options}
    if key and key in by_key:
        return by_key[key]
    if run is not None:
        jobs = GenerationJob.objects.filter(run=run, purpose=GenerationJob.Purpose.REVIEW).order_by("-id")
        for settings in jobs.values_list("settings", flat=True):
            chosen = by_key.get(comparison_key(settings))
            if chosen is not None and chosen.pairs:
                return chosen
    matched = [c for c in options if c.pairs]
    return (matched or list(options) or [None])[0]


@dataclass(frozen=True)
class MatchedPair:
    prompt_id: int
    sample: int
    first: Completion
    second: Completion

    @property
    def identical(self) -> bool:
        return same_text(self.first.text, self.second.text)

    @property
    def engines_differ(self) -> bool:
        return engine_of(self.first.generation_settings) != engine_of(self.second.generation_settings)


def outputs_by_prompt_and_sample(
    outputs: Iterable[Completion], key: str, samples: set[int] | None
) -> dict[int, dict[tuple[int, int], dict[str, Completion]]]:
    """version id → (prompt, sample) → engine (``engine_of``) → the output; of duplicates (older data) the newest
    wins."""
    found: dict[int, dict[tuple[int, int], dict[str, Completion]]] = {}
    for completion in outputs:
        if comparison_key(completion.generation_settings) != key:
            continue
        sample = sample_of(completion.generation_settings)
        if samples is not None and sample not in samples:
            continue
        by_engine = found.setdefault(completion.model_version_id, {}).setdefault((completion.prompt_id, sample), {})
        by_engine[engine_of(completion.generation_settings)] = completion
    return found


def pair_to_compare(
    mine: dict[str, Completion], theirs: dict[str, Completion], *, mixed_engines: bool
) -> tuple[Completion, Completion] | None:
    """The two outputs one prompt and sample compare: both written by one engine in one precision (the engine
    written with last, where they share several); with ``mixed_engines`` and no engine in common, the newest of
    each side; else none (a different engine or precision changes the text as well as the adapter does)."""
    common = set(mine) & set(theirs)
    if common:
        engine = max(common, key=lambda e: max(mine[e].pk, theirs[e].pk))
        return mine[engine], theirs[engine]
    if mixed_engines and mine and theirs:
        return max(mine.values(), key=lambda c: c.pk), max(theirs.values(), key=lambda c: c.pk)
    return None


def matched_pairs(
    *,
    project: Project,
    first: ModelVersion,
    second: ModelVersion,
    settings: dict[str, Any],
    prompt_ids: Iterable[int] | None = None,
    samples: Iterable[int] | None = None,
    mixed_engines: bool = False,
) -> list[MatchedPair]:
    """``first``'s and ``second``'s outputs made with identical ``settings`` (sample index aside) on the same
    prompt and sample, by the same engine in the same precision, in prompt then sample order: the only outputs
    that are ever compared. ``mixed_engines`` (an admin's explicit choice) also pairs outputs of different
    engines where a prompt and sample has no pair within one; such a pair says so (``MatchedPair.engines_differ``)."""
    if not matched_settings_of(settings):
        return []
    key = comparison_key(settings)
    outputs = generated_outputs(prompt_ids, project, [first, second]).order_by("id")
    found = outputs_by_prompt_and_sample(outputs, key, set(samples) if samples is not None else None)
    mine, theirs = found.get(first.pk, {}), found.get(second.pk, {})
    pairs = []
    for prompt_id, sample in sorted(set(mine) & set(theirs)):
        picked = pair_to_compare(mine[(prompt_id, sample)], theirs[(prompt_id, sample)], mixed_engines=mixed_engines)
        if picked is not None:
            pairs.append(MatchedPair(prompt_id=prompt_id, sample=sample, first=picked[0], second=picked[1]))
    return pairs


def engines_of_pairs(pairs: Sequence[MatchedPair]) -> str:
    """The engines the pairs' outputs came from, as a page says it: "transformers float32", or, for pairs across
    engines, "vllm bfloat16 against transformers float32" (first side's engine first)."""
    seen: list[str] = []
    for pair in pairs:
        first, second = engine_of(pair.first.generation_settings), engine_of(pair.second.generation_settings)
        label = first if first == second else f"{first} against {second}"
        if label not in seen:
            seen.append(label)
    return "; ".join(seen)
