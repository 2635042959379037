"""Reads for review: matched comparisons of base and tuned outputs, side by side, whether the tuned model moved,
the run's validation headline, the Bradley–Terry leaderboard, and what a candidates job will make. What people
judged (battles, held-out thumbs) is read by ``training.review.results``.

Only MATCHED outputs are ever paired or counted: the same prompt, the same generation settings and the same
sample index (``training.review.comparisons``). Review pairs stored before that rule
(``matched_settings == {}``) are left out of every win rate and of the leaderboard.
"""
from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import mean
from typing import Any

from django.db.models import QuerySet

from labeling.models import Completion, PairTask, PairVote, Project, Prompt
from training.models import GenerationJob, ModelVersion, TuningRun
from training.review import figures
from training.review.comparisons import (
    comparison_key,
    describe_settings,
    matched_settings_of,
    sample_of,
)
from training.review.results import _OUTCOME, BattleResults, ThumbsResults, battle_results, heldout_thumbs
from training.trainer.degeneration import degeneration
from training.trainer.movement import Movement, same_text
from training.trainer.review import TIE, WIN, bradley_terry_bootstrap, engine_of

# The Bradley–Terry fit adds this many virtual tied games to each pair of versions that met, so a version that
# has won every battle so far gets a large, finite rating rather than an infinite one.
LEADERBOARD_PRIOR = 0.5
LEADERBOARD_ROUNDS = 100
# The review form asks for enough samples per prompt to reach this many matched pairs (at most 8 samples).
TARGET_MATCHED_PAIRS = 90
MAX_SAMPLES = 8




def heldout_prompt_count(*, project: Project) -> int:
    return Prompt.objects.filter(project=project, split=Prompt.Split.HELDOUT).count()


def samples_for_target(heldout_prompts: int) -> int:
    """Samples per prompt that give at least TARGET_MATCHED_PAIRS matched pairs: min(8, ceil(90 / prompts))."""
    if heldout_prompts <= 0:
        return 1
    return min(MAX_SAMPLES, -(-TARGET_MATCHED_PAIRS // heldout_prompts))


# ---------------------------------------------------------------- comparisons


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


def _generated(prompt_ids: Iterable[int] | None, project: Project, versions: Sequence[ModelVersion]) -> QuerySet[Completion]:
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
    rows = _generated(prompt_ids, project, [first, second]).values_list(
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


def _by_prompt_and_sample(
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


def _pick(
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
    outputs = _generated(prompt_ids, project, [first, second]).order_by("id")
    found = _by_prompt_and_sample(outputs, key, set(samples) if samples is not None else None)
    mine, theirs = found.get(first.pk, {}), found.get(second.pk, {})
    pairs = []
    for prompt_id, sample in sorted(set(mine) & set(theirs)):
        picked = _pick(mine[(prompt_id, sample)], theirs[(prompt_id, sample)], mixed_engines=mixed_engines)
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


# ---------------------------------------------------------------- side by side


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
        outputs = _generated(None, project, [base, tuned]).order_by("id")
        found = _by_prompt_and_sample(outputs, comparison_key(settings), None)
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
        picked = _pick(mine, theirs, mixed_engines=True)
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


# ---------------------------------------------------------------- did the model move?


@dataclass(frozen=True)
class MovementSummary(Movement):
    """Identical share and per-token KL of a comparison (``Movement``: the one rule for "did it move"): measured by
    the worker (``GenerationJob.movement``) when a review job made these outputs, else counted here (and the KL is
    unknown), with the page's wording."""

    job_id: int | None = None
    engines: str = ""  # "transformers float32"; "vllm bfloat16 against transformers float32" where mixed
    mixed_engines: int = 0  # pairs whose two answers came from different engines or precisions (only when asked)

    @classmethod
    def from_stored(cls, movement: dict[str, Any], *, job_id: int) -> MovementSummary:
        """What review job ``job_id`` stored in ``GenerationJob.movement``."""
        return cls(
            pairs=int(movement["pairs"]), identical=int(movement.get("identical") or 0),
            kl_per_token=movement.get("kl_per_token"), tokens=int(movement.get("tokens") or 0), job_id=job_id,
            engines=str(movement.get("engines") or ""), mixed_engines=int(movement.get("mixed_engines") or 0),
        )

    @property
    def identical_percent(self) -> str:
        return figures.percent(self.identical_share)

    @property
    def kl_text(self) -> str:
        return "not measured" if self.kl_per_token is None else figures.significant(self.kl_per_token)

    @property
    def warning(self) -> str:
        kl = "" if self.kl_per_token is None else f" (KL {figures.significant(self.kl_per_token)} per token)"
        return (
            f"The tuned model did not move: {self.identical} of {self.pairs} outputs are identical to the base's{kl}. "
            "Try more steps, a larger learning rate, or more data."
        )


def comparison_movement(
    *, project: Project, run: TuningRun | None, base: ModelVersion, tuned: ModelVersion, comparison: Comparison | None
) -> MovementSummary | None:
    """How far ``tuned`` moved from ``base`` in ``comparison``: what the newest review job of ``run`` in it
    measured, else the identical share of its matched pairs counted here (the KL then unknown)."""
    if comparison is None or not comparison.pairs:
        return None
    if run is not None:
        jobs = GenerationJob.objects.filter(run=run, purpose=GenerationJob.Purpose.REVIEW).exclude(movement={}).order_by("-id")
        for job_id, job_settings, movement in jobs.values_list("id", "settings", "movement"):
            if comparison_key(job_settings) == comparison.key and movement.get("pairs"):
                return MovementSummary.from_stored(movement, job_id=job_id)
    pairs = matched_pairs(project=project, first=tuned, second=base, settings=comparison.settings)
    return MovementSummary(
        pairs=len(pairs), identical=sum(1 for p in pairs if p.identical), kl_per_token=None, tokens=0, job_id=None,
        engines=engines_of_pairs(pairs),
    )


def run_movement(*, run: TuningRun) -> MovementSummary | None:
    """What the newest review job of ``run`` measured of how far it moved (identical share, per-token KL of tuned
    against base on its held-out outputs), for the run page; None before any review measured it."""
    jobs = GenerationJob.objects.filter(run=run, purpose=GenerationJob.Purpose.REVIEW).exclude(movement={}).order_by("-id")
    for job_id, movement in jobs.values_list("id", "movement"):
        if movement.get("pairs"):
            return MovementSummary.from_stored(movement, job_id=job_id)
    return None


# From a quarter of the matched answers cut off, the comparison judges unfinished answers more than finished ones.
CUT_OFF_WARNING_SHARE = 0.25


@dataclass(frozen=True)
class DegenerationSummary:
    """Matched outputs that are not answers (loops, fragments, symbol soup), base against tuned."""

    pairs: int
    base: int
    tuned: int
    examples: list[tuple[str, str]]  # (reason, the start of a tuned output)
    base_cut_off: int = 0  # still writing at the token limit: unfinished, so a vote on it judges where it stops
    tuned_cut_off: int = 0
    token_limit: int | None = None

    @property
    def cut_off_share(self) -> float:
        return (self.base_cut_off + self.tuned_cut_off) / (2 * self.pairs) if self.pairs else 0.0

    @property
    def many_cut_off(self) -> bool:
        return self.cut_off_share >= CUT_OFF_WARNING_SHARE

    @property
    def worse(self) -> bool:
        # More than chance alone: at least 3 more broken answers than the base, and 5% of the pairs.
        return self.tuned - self.base >= max(3, 0.05 * self.pairs)

    @property
    def warning(self) -> str:
        return (
            f"{self.tuned} of {self.pairs} tuned answers are not answers (loops, fragments, symbol soup) against "
            f"{self.base} of the base's: the run pushed the model past what it can say well, and a win rate can hide "
            "it. Try a larger SFT weight, a lower learning rate, or the checkpoint of an earlier step."
        )


def comparison_degeneration(
    *, project: Project, base: ModelVersion, tuned: ModelVersion, comparison: Comparison | None
) -> DegenerationSummary | None:
    """How many of the comparison's matched base and tuned outputs are degenerate (``degeneration``)."""
    if comparison is None or not comparison.pairs:
        return None
    pairs = matched_pairs(project=project, first=tuned, second=base, settings=comparison.settings)
    if not pairs:
        return None
    examples = []
    tuned_count = 0
    for pair in pairs:
        reason = degeneration(pair.first.text)
        if reason is not None:
            tuned_count += 1
            if len(examples) < 3:
                examples.append((reason, pair.first.text[:160]))
    base_count = sum(1 for pair in pairs if degeneration(pair.second.text) is not None)
    limit = comparison.settings.get("max_new_tokens")
    return DegenerationSummary(
        pairs=len(pairs), base=base_count, tuned=tuned_count, examples=examples,
        base_cut_off=sum(1 for pair in pairs if pair.second.is_truncated),
        tuned_cut_off=sum(1 for pair in pairs if pair.first.is_truncated),
        token_limit=limit if isinstance(limit, int) else None,
    )


# ---------------------------------------------------------------- the run's own validation figures


@dataclass(frozen=True)
class ValidationHeadline:
    """What training measured on its validation rows at the checkpoint it kept; never the last train batch."""

    text: str
    figures: list[tuple[str, str]]


_DPO_FIGURES = (("rewards/accuracies", "implicit-reward accuracy"), ("rewards/margins", "reward margin"), ("loss", "loss"))
_KTO_FIGURES = (("loss", "loss"), ("kl", "KL"), ("ranking_accuracy", "ranking accuracy"))


def _number(value: Any) -> float | None:  # noqa: ANN401
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def run_validation(*, run: TuningRun) -> ValidationHeadline | None:
    """The headline from ``run.outcome``, e.g. "validation implicit-reward accuracy 0.93 on 20 pairs (kept
    checkpoint, step 120)"; None for a run that recorded no outcome (trained before runs kept one)."""
    outcome = run.outcome or {}
    if not outcome:
        return None
    validation = {key.removeprefix("eval_"): value for key, value in (outcome.get("validation") or {}).items()}
    kept = outcome.get("kept_step")
    kept_text = f"kept checkpoint, step {kept}" if kept is not None else "kept checkpoint"
    rows = outcome.get("validation_rows", run.validation_rows)
    known = [(label, _number(validation.get(key))) for key, label in (_KTO_FIGURES if run.method == "kto" else _DPO_FIGURES)]
    shown = [(label, figures.significant(value)) for label, value in known if value is not None]
    if not shown:
        return ValidationHeadline(
            text=f"no validation set, so nothing held back was measured during training ({kept_text})", figures=[]
        )
    unit = "pairs" if run.method == "dpo" else "rows"
    if run.method == "kto":
        lead = ", ".join(f"{label} {value}" for label, value in shown)
    else:
        lead = f"{shown[0][0]} {shown[0][1]}"
    return ValidationHeadline(text=f"validation {lead} on {rows} {unit} ({kept_text})", figures=shown)


# ---------------------------------------------------------------- leaderboard


@dataclass(frozen=True)
class LeaderboardRow:
    version: ModelVersion
    rating: float
    low: float
    high: float
    battles: int
    wins: int
    ties: int
    losses: int

    @property
    def contaminated(self) -> bool:
        return self.version.saw_heldout

    @property
    def label(self) -> str:
        """The version's name, saying "(base)" once for a base model alone."""
        return self.version.name if self.version.adapter_path else figures.version_label(self.version.name, role="base")


def review_battles(*, project: Project) -> list[tuple[int, int, float, int]]:
    """Every vote on a MATCHED review pair between two model versions on a held-out prompt: (version of A,
    version of B, outcome for A, prompt). Legacy unmatched pairs are left out, and so are battles on train
    prompts: those are the next round's preference data, not an evaluation."""
    rows = (
        PairVote.objects.filter(
            task__project=project,
            task__purpose=PairTask.Purpose.REVIEW,
            task__prompt__split=Prompt.Split.HELDOUT,
            task__completion_a__model_version__isnull=False,
            task__completion_b__model_version__isnull=False,
        )
        .exclude(task__matched_settings={})
        .values_list("task__completion_a__model_version_id", "task__completion_b__model_version_id", "choice",
                     "task__prompt_id")
    )
    return [(a, b, _OUTCOME[choice], prompt) for a, b, choice, prompt in rows if a != b]


def leaderboard(*, project: Project, rounds: int = LEADERBOARD_ROUNDS, seed: int = 0) -> list[LeaderboardRow]:
    """The project's model versions ranked by a Bradley–Terry fit of the matched review votes on held-out prompts,
    best first, with 95% bootstrap intervals that resample prompts (``rounds`` resamples, seeded so a reload
    shows the same figures)."""
    battles = review_battles(project=project)
    fitted = bradley_terry_bootstrap(
        [(str(a), str(b), o) for a, b, o, _ in battles], rounds=rounds, seed=seed, prior=LEADERBOARD_PRIOR,
        groups=[prompt for *_, prompt in battles],
    )
    counts: dict[int, list[int]] = {}
    for a, b, outcome, _ in battles:
        for version, score in ((a, outcome), (b, 1.0 - outcome)):
            tally = counts.setdefault(version, [0, 0, 0])
            tally[0 if score == WIN else 1 if score == TIE else 2] += 1
    versions = ModelVersion.objects.select_related("parent").in_bulk([int(k) for k in fitted])
    rows = [
        LeaderboardRow(
            version=versions[int(key)], rating=rating, low=low, high=high,
            battles=sum(counts[int(key)]), wins=counts[int(key)][0], ties=counts[int(key)][1], losses=counts[int(key)][2],
        )
        for key, (rating, low, high) in fitted.items()
    ]
    return sorted(rows, key=lambda row: (-row.rating, row.version.name))


# ---------------------------------------------------------------- a page's comparison


@dataclass(frozen=True)
class ComparisonView:
    """Everything a review or battles page says about one matched comparison of a run's base and tuned."""

    comparisons: list[Comparison]
    comparison: Comparison | None
    movement: MovementSummary | None
    results: BattleResults | None  # compare projects: blind battles
    thumbs: ThumbsResults | None  # rate projects: held-out thumbs
    degeneration: DegenerationSummary | None = None

    @property
    def settings(self) -> dict[str, Any] | None:
        return self.comparison.settings if self.comparison is not None else None


def comparison_view(
    *, project: Project, run: TuningRun | None, base: ModelVersion, tuned: ModelVersion, key: str | None = None
) -> ComparisonView:
    """The comparison ``key`` names (default: the newest review job's settings for ``run``), how far the tuned
    model moved in it, and its battle results (compare project) or held-out thumbs (rate project)."""
    options = comparisons(project=project, first=base, second=tuned)
    chosen = comparison_choose(options, key=key, run=run)
    settings = chosen.settings if chosen is not None else None
    results = thumbs = None
    if project.mode == Project.Mode.RATE:
        thumbs = heldout_thumbs(project=project, base=base, tuned=tuned, settings=settings)
    elif settings is not None:
        results = battle_results(project=project, tuned=tuned, base=base, settings=settings)
    else:
        results = battle_results(project=project, tuned=tuned, base=base)
    return ComparisonView(
        comparisons=options, comparison=chosen,
        movement=comparison_movement(project=project, run=run, base=base, tuned=tuned, comparison=chosen),
        results=results, thumbs=thumbs,
        degeneration=comparison_degeneration(project=project, base=base, tuned=tuned, comparison=chosen),
    )


@dataclass(frozen=True)
class ReviewJobRow:
    job: GenerationJob
    settings_label: str
    movement: MovementSummary | None


def review_jobs(*, project: Project, run_id: int | None = None, limit: int = 10) -> list[ReviewJobRow]:
    """The newest generation jobs with their settings in words and what they measured of the tuned model."""
    rows = []
    for job in generation_jobs(project=project, run_id=run_id, limit=limit):
        n = job.settings.get("n", 1) if isinstance(job.settings, dict) else 1
        movement = job.movement or {}
        summary = None
        if movement.get("pairs"):
            summary = MovementSummary.from_stored(movement, job_id=job.pk)
        rows.append(ReviewJobRow(job=job, settings_label=describe_settings(job.settings, range(n)), movement=summary))
    return rows


# ---------------------------------------------------------------- jobs and versions


def active_generation_job(*, project: Project, purpose: str, run: TuningRun | None = None) -> GenerationJob | None:
    """The project's (or ``run``'s) newest job of ``purpose`` that is queued or running, if any."""
    jobs = GenerationJob.objects.filter(
        project=project, purpose=purpose, status__in=[GenerationJob.Status.QUEUED, GenerationJob.Status.RUNNING]
    )
    if run is not None:
        jobs = jobs.filter(run=run)
    return jobs.order_by("-id").first()


def generation_jobs(*, project: Project, run_id: int | None = None, limit: int = 10) -> list[GenerationJob]:
    jobs = GenerationJob.objects.filter(project=project).prefetch_related("model_versions")
    if run_id is not None:
        jobs = jobs.filter(run_id=run_id)
    return list(jobs.order_by("-id")[:limit])


def project_versions_with_outputs(*, project: Project) -> list[ModelVersion]:
    """Model versions that have generated completions for this project's prompts."""
    ids = Completion.objects.filter(prompt__project=project, model_version__isnull=False).values("model_version_id")
    return list(ModelVersion.objects.filter(pk__in=ids).select_related("base_model").order_by("name"))


def active_generation_jobs(*, project: Project) -> list[GenerationJob]:
    """The project's queued and running generation jobs, oldest first (the dashboard's progress bars)."""
    active = (GenerationJob.Status.QUEUED, GenerationJob.Status.RUNNING)
    return list(GenerationJob.objects.filter(project=project, status__in=active).order_by("id"))


# ---------------------------------------------------------------- candidates: what a job will make, before it runs

# Fewer earlier answers than this at the same token limit give no finished share: too few to say.
MIN_ANSWERS_FOR_SHARE = 20


@dataclass(frozen=True)
class CandidateExpectation:
    """What a candidate job with some settings should make, from what this installation measured: answers, the
    share that finish inside the token limit (from this base model's earlier answers at that limit), the pairs
    that leaves, and the time (at the pace of the newest finished job on this base model). ``None`` where nothing
    was measured yet."""

    prompts: int
    answers: int
    token_limit: int
    complete_share: float | None
    share_basis: str
    pairs: float | None
    prompts_with_pair: float | None
    max_pairs: int
    seconds: float | None
    time_basis: str

    @property
    def pairs_text(self) -> str:
        if self.pairs is None:
            return f"up to {self.max_pairs} pairs if every answer finishes"
        return f"about {round(self.pairs)} pairs, {round(100 * self.prompts_with_pair)}% of the prompts with at least one"


def _base_version_answers(base_model_id: int, token_limit: int) -> tuple[int, int]:
    """(finished, all) answers the bare base model wrote at ``token_limit``, of those whose ending is known."""
    answers = Completion.objects.filter(
        source=Completion.Source.GENERATED, model_version__base_model_id=base_model_id, model_version__adapter_path="",
        generation_settings__max_new_tokens=token_limit, finish_reason__in=["stop", "length"],
    )
    return answers.filter(finish_reason="stop").count(), answers.count()


def _pace(base_model_id: int) -> tuple[float, GenerationJob] | None:
    """Seconds per answer of the newest finished generation job on this base model, and that job."""
    jobs = GenerationJob.objects.filter(
        model_versions__base_model_id=base_model_id, status__in=[GenerationJob.Status.SUCCEEDED, GenerationJob.Status.CANCELLED],
        started_at__isnull=False, finished_at__isnull=False, completions_created__gte=4,
    ).order_by("-finished_at")
    job = jobs.first()
    if job is None:
        return None
    return (job.finished_at - job.started_at).total_seconds() / job.completions_created, job


def candidate_expectation(
    *, project: Project, base_model_id: int | None, versions: int, split: str, n: int, token_limit: int,
    pairing: str, cut_off: str,
) -> CandidateExpectation:
    from training.templatetags.numbers import format_rough_duration
    from training.trainer.candidates import DEFAULT_MAX_PAIRS, expected_pairs

    prompts = Prompt.objects.filter(project=project, split=split).count()
    per_prompt = n * max(versions, 1)
    all_pairs, _ = expected_pairs(per_prompt, 1.0, pairing, cut_off=cut_off, max_pairs=DEFAULT_MAX_PAIRS)
    share = pairs = with_pair = seconds = None
    share_basis = time_basis = ""
    if base_model_id is not None:
        finished, total = _base_version_answers(base_model_id, token_limit)
        if total >= MIN_ANSWERS_FOR_SHARE:
            share = finished / total
            share_basis = f"{finished} of {total} earlier answers of this base model at {token_limit} tokens finished"
        else:
            share_basis = (
                f"how many answers finish inside {token_limit} tokens is known once this base model has written "
                f"{MIN_ANSWERS_FOR_SHARE} at that limit"
            )
        pace = _pace(base_model_id)
        if pace is not None:
            per_answer, job = pace
            job_limit = job.settings.get("max_new_tokens") or token_limit
            # A batch runs as long as its longest answer, and looping answers run to the limit: time goes with it.
            seconds = per_answer * (token_limit / job_limit) * prompts * per_prompt
            time_basis = (
                f"at the pace of job {job.pk}: {job.completions_created} answers of up to {job_limit} tokens in "
                f"{format_rough_duration((job.finished_at - job.started_at).total_seconds())}"
            )
        else:
            time_basis = "the time is known after this base model's first generation job; the jobs table then shows an ETA"
    if share is not None:
        expected, chance = expected_pairs(per_prompt, share, pairing, cut_off=cut_off)
        pairs, with_pair = expected * prompts, chance
    return CandidateExpectation(
        prompts=prompts, answers=prompts * per_prompt, token_limit=token_limit, complete_share=share,
        share_basis=share_basis, pairs=pairs, prompts_with_pair=with_pair, max_pairs=round(all_pairs * prompts),
        seconds=seconds, time_basis=time_basis,
    )
