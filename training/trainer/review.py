"""Review core, Django-free: generation settings, batched generation for several model versions over one
loaded base, win rates with a confidence interval, and a Bradley–Terry fit with bootstrap intervals.

Conventions (see DESIGN.md, "Evaluation conventions"):

- A *battle* is one vote: overlap 3 gives three battles. Ties and both-bad count as a tie, and a tie is
  half a win for each side (Chatbot Arena's convention).
- `win_rate` reports a Wilson score interval around (wins + ties/2) / n. Half-points vary less than a coin
  flip, so with ties the interval is slightly conservative (wider than the truth), never too narrow.
- `bradley_terry` is the maximum-likelihood fit by Hunter's MM algorithm on an Elo-like scale
  (400·log10, mean rating 1000), as Arena's leaderboard shows it; `bradley_terry_bootstrap` resamples the
  battles with replacement (Arena uses 100 rounds) and reports the 2.5 / 97.5 percentiles.
- MT-Bench judges both orders and counts an inconsistent pair as a tie; humans here see one random order
  per annotator, so no such correction is applied.

torch and peft are imported only inside the generation functions, so the web process can parse settings and
compute statistics without loading them.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from labeling.statistics import Z_95, wilson_interval

Messages = list[dict[str, str]]

# Style hints for candidates made to differ on purpose (as UltraFeedback varies its principles): sample k is
# written under hint k mod 5, as a system message that the stored candidate does not keep, so a pair offers
# the annotator answers that differ in length, format and tone rather than two samples of the model's one
# habit. The first hint is none: the model as it is.
STYLE_HINTS: tuple[tuple[str, str | None], ...] = (
    ("plain", None),
    ("brief", "Answer briefly, in one or two sentences."),
    ("list", "Answer as a short list of points."),
    ("warm", "Begin with a friendly sentence, then answer."),
    ("detailed", "Answer in detail, explaining your reasoning."),
)

# Outcome of one battle, from the first model's point of view.
WIN, TIE, LOSS = 1.0, 0.5, 0.0
ELO_SCALE = 400.0
ELO_ANCHOR = 1000.0


# A stored completion's generation settings name the engine that wrote it ("transformers" or "vllm") and the
# precision it ran in ("float32", "bfloat16", "float16"). Outputs stored before engines were recorded have neither
# (they were all written by transformers); outputs stored before precisions were, only the engine.
BACKEND_KEY = "backend"
DTYPE_KEY = "dtype"
PROVENANCE_KEYS = frozenset({BACKEND_KEY, DTYPE_KEY})


class GenerationSettingsError(ValueError):
    """Settings that cannot work; the message is meant for the person who entered them."""


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class GenerationSettings:
    """How completions are sampled. temperature 0 is greedy decoding; ``n`` samples per prompt use seeds
    ``seed``, ``seed + 1``, ...; each stored completion records its own sample index.

    ``alt_temperature`` (optional) samples every odd-numbered sample at a second temperature, so a prompt's
    samples alternate between the two (0.7, 1.1, 0.7, 1.1, ...): candidates meant to differ on purpose.
    Alternating rather than "first half, second half" keeps each sample's temperature independent of ``n``."""

    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 256
    seed: int = 0
    n: int = 1
    alt_temperature: float | None = None
    style_hints: bool = False

    def validate(self) -> GenerationSettings:
        if not _number(self.temperature) or not 0 <= self.temperature <= 2:
            raise GenerationSettingsError(f"temperature must be between 0 and 2, got {self.temperature!r}.")
        if not _number(self.top_p) or not 0 < self.top_p <= 1:
            raise GenerationSettingsError(f"top_p must be in (0, 1], got {self.top_p!r}.")
        if not _integer(self.max_new_tokens) or not 1 <= self.max_new_tokens <= 2048:
            raise GenerationSettingsError(f"max_new_tokens must be a whole number from 1 to 2048, got {self.max_new_tokens!r}.")
        if not _integer(self.seed) or self.seed < 0:
            raise GenerationSettingsError(f"seed must be a non-negative whole number, got {self.seed!r}.")
        if not _integer(self.n) or not 1 <= self.n <= 8:
            raise GenerationSettingsError(f"n (completions per prompt) must be from 1 to 8, got {self.n!r}.")
        if self.alt_temperature is not None:
            if not _number(self.alt_temperature) or not 0 <= self.alt_temperature <= 2:
                raise GenerationSettingsError(f"The second temperature must be between 0 and 2, got {self.alt_temperature!r}.")
            if self.alt_temperature == self.temperature:
                raise GenerationSettingsError("The second temperature must differ from the first.")
            if self.n < 2:
                raise GenerationSettingsError("Two temperatures need at least two completions per prompt (n ≥ 2).")
        if not isinstance(self.style_hints, bool):
            raise GenerationSettingsError(f"style_hints must be true or false, got {self.style_hints!r}.")
        if self.style_hints and self.n < 2:
            raise GenerationSettingsError("Style hints vary the samples of a prompt: ask for at least two (n ≥ 2).")
        greedy = sum(1 for k in range(self.n) if self.temperature_for(k) == 0)
        if greedy > 1:
            raise GenerationSettingsError("Greedy decoding (temperature 0) gives n identical completions; raise the temperature or use n=1.")
        return self

    def style_for(self, index: int) -> tuple[str, str | None]:
        """(name, system message or None) sample ``index`` is written under; ("plain", None) without hints."""
        return STYLE_HINTS[index % len(STYLE_HINTS)] if self.style_hints else STYLE_HINTS[0]

    def messages_for(self, prompt: Messages, index: int) -> Messages:
        """The messages sample ``index`` of ``prompt`` is generated from: the prompt under its style hint."""
        hint = self.style_for(index)[1]
        if hint is None or (prompt and prompt[0].get("role") == "system"):
            return prompt
        return [{"role": "system", "content": hint}, *prompt]

    def temperature_for(self, index: int) -> float:
        """The temperature sample ``index`` is drawn at."""
        if self.alt_temperature is None or index % 2 == 0:
            return self.temperature
        return self.alt_temperature

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> GenerationSettings:
        """Parse a JSON-ish dict (unknown keys rejected) and validate; raises GenerationSettingsError."""
        data = data or {}
        if not isinstance(data, dict):
            raise GenerationSettingsError(f"Generation settings must be an object, got {type(data).__name__}.")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise GenerationSettingsError(f"Unknown generation setting(s): {', '.join(unknown)}. Known: {', '.join(sorted(names))}.")
        return cls(**data).validate()

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        # Settings stored before the second temperature existed have no such key; keep one shape for both.
        if self.alt_temperature is None:
            del data["alt_temperature"]
        if not self.style_hints:
            del data["style_hints"]
        return data

    def for_sample(self, index: int, *, backend: str | None = None, dtype: str | None = None) -> dict[str, Any]:
        """What one stored completion records: the sampling settings and which of the n samples it is, and with
        ``backend`` and ``dtype`` the engine that made it and its precision (see ``engine_of``).

        ``n`` itself is left out so that asking for more samples later reuses the ones already made. The
        temperature is the one this sample was drawn at, so with ``alt_temperature`` the stored settings say
        which temperature made it, and a sample is reused by any job that would draw it the same way. The
        engine is a record of where an output came from, not a sampling setting: outputs that differ only in
        it are one comparison (see ``without_provenance``), but are matched, and reused, only within one engine
        unless an admin asks otherwise."""
        recorded = {
            "temperature": self.temperature_for(index),
            "top_p": self.top_p,
            "max_new_tokens": self.max_new_tokens,
            "seed": self.seed,
            "sample": index,
        }
        if self.style_hints:
            recorded["style"] = self.style_for(index)[0]
        if backend is not None:
            recorded[BACKEND_KEY] = backend
        if dtype is not None:
            recorded[DTYPE_KEY] = dtype
        return recorded


def without_provenance(recorded: dict[str, Any] | None) -> dict[str, Any]:
    """A stored completion's generation settings without what only says where it came from (engine, precision)."""
    return {key: value for key, value in (recorded or {}).items() if key not in PROVENANCE_KEYS}


def engine_of(recorded: dict[str, Any] | None) -> str:
    """The engine and precision an output was written with, as a page shows it: "transformers float32",
    "vllm bfloat16"; "transformers" alone for an output stored before precisions were recorded (every output
    before engines were recorded came from transformers). Two outputs are matched by default only when this is
    the same for both: a different engine or precision changes the text as well as the adapter does."""
    recorded = recorded or {}
    backend = recorded.get(BACKEND_KEY) or "transformers"
    dtype = recorded.get(DTYPE_KEY)
    return f"{backend} {dtype}" if dtype else str(backend)


# ---------------------------------------------------------------- generation

# What ``generate_for_versions`` reports after each batch: version name, the indices (into ``prompts``) of the
# batch's prompts, the sample index, and per prompt the text and why it ended ("stop" or "length").
BatchDone = Callable[[str, list[int], int, list[str], list[str]], None]


def generate_for_versions(
    base_model_path: str,
    adapters: dict[str, str | None],
    prompts: Sequence[Messages],
    settings: GenerationSettings,
    *,
    batch_size: int = 8,
    device: str | None = None,
    samples: Sequence[int] | None = None,
    on_batch_done: BatchDone | None = None,
    on_version_done: Callable[[str, list[list[str]]], None] | None = None,
    backend: str = "transformers",
) -> dict[str, list[list[str]]]:
    """Completions for every prompt from every model version: ``result[name][i]`` is the list of
    ``settings.n`` samples for ``prompts[i]`` ("" for a sample left out by ``samples``).

    ``adapters`` maps a version name to its LoRA adapter folder, or None for the base model itself. The
    base is loaded once and every adapter over it, so adding a version costs an adapter, not a model.
    ``backend`` picks the engine ("transformers", "vllm" or "auto"; see ``training.trainer.generation_backends``):
    transformers switches adapters on and off over the loaded base, vLLM names each request's adapter. A backend
    that cannot run here raises GenerationBackendError before anything is loaded.

    Work goes a batch of prompts at a time, and for each batch every version and every sample, so a prompt
    has all its completions early in the job rather than at its end. ``on_batch_done`` is called after each
    (batch, version, sample) with the texts and finish reasons, e.g. to store them as they come. Sample ``k``
    is seeded ``settings.seed + k`` for every batch. ``samples`` limits which of the n samples are made (all by
    default). ``on_version_done`` is the older, coarser hook: called per version once everything is made.
    """
    from .generation_backends import SampleRequest, open_backend

    settings.validate()
    sample_indices = list(range(settings.n)) if samples is None else sorted(set(samples))
    if any(not 0 <= k < settings.n for k in sample_indices):
        raise ValueError(f"samples must be among 0..{settings.n - 1}, got {list(samples or [])}.")
    results: dict[str, list[list[str]]] = {name: [[""] * settings.n for _ in prompts] for name in adapters}
    with open_backend(
        backend, base_model_path, adapters, device=device, seed=settings.seed, batch_size=batch_size
    ) as engine:
        for start in range(0, len(prompts), batch_size):
            chunk = list(prompts[start : start + batch_size])
            indices = list(range(start, start + len(chunk)))
            plan = [(name, k) for name in adapters for k in sample_indices]
            requests = [
                SampleRequest(
                    version=name,
                    prompts=[settings.messages_for(prompt, k) for prompt in chunk],
                    max_new_tokens=settings.max_new_tokens,
                    temperature=settings.temperature_for(k),
                    top_p=settings.top_p,
                    seed=settings.seed + k,
                )
                for name, k in plan
            ]
            for (name, k), outputs in zip(plan, engine.run(requests), strict=True):
                for i, output in zip(indices, outputs, strict=True):
                    results[name][i][k] = output.text
                if on_batch_done is not None:
                    on_batch_done(name, indices, k, [o.text for o in outputs], [o.finish_reason for o in outputs])
    if on_version_done is not None:
        for name in adapters:
            on_version_done(name, results[name])
    return results


# ---------------------------------------------------------------- win rate


def win_rate(wins: int, ties: int, losses: int, *, z: float = Z_95) -> tuple[float, float, float]:
    """(rate, low, high): the share of points won, ties counting half, with a Wilson score interval
    (95% by default). Raises ValueError when there are no battles."""
    if min(wins, ties, losses) < 0:
        raise ValueError("Counts cannot be negative.")
    n = wins + ties + losses
    if n == 0:
        raise ValueError("No battles yet: a win rate needs at least one vote.")
    low, high = wilson_interval(wins + 0.5 * ties, n, z)
    return (wins + 0.5 * ties) / n, low, high


# ---------------------------------------------------------------- Bradley–Terry

Battle = tuple[str, str, float]  # (model_i, model_j, outcome for model_i: 1 win, 0.5 tie, 0 loss)


def _tally(battles: Iterable[Battle]) -> tuple[list[str], dict[tuple[str, str], float], dict[tuple[str, str], int]]:
    """Models, points[(i, j)] that i scored against j, and games[(i, j)] (both orders hold the same count)."""
    points: dict[tuple[str, str], float] = {}
    games: dict[tuple[str, str], int] = {}
    models: set[str] = set()
    for a, b, outcome in battles:
        if a == b:
            raise ValueError(f"A model cannot battle itself ({a!r}).")
        if outcome not in (WIN, TIE, LOSS):
            raise ValueError(f"Outcome must be 1 (win), 0.5 (tie) or 0 (loss), got {outcome!r}.")
        models.update((a, b))
        points[(a, b)] = points.get((a, b), 0.0) + outcome
        points[(b, a)] = points.get((b, a), 0.0) + 1.0 - outcome
        games[(a, b)] = games.get((a, b), 0) + 1
        games[(b, a)] = games.get((b, a), 0) + 1
    return sorted(models), points, games


def bradley_terry(
    battles: Iterable[Battle], *, prior: float = 0.0, max_iter: int = 10_000, tol: float = 1e-10
) -> dict[str, float]:
    """Bradley–Terry ratings on the Elo-like scale: 400·log10(strength), the models' mean rating 1000.

    Fitted by Hunter's MM update p_i ← W_i / Σ_j n_ij / (p_i + p_j), ties worth half a win to each side.
    ``prior`` adds that many virtual tied games to every pair of models that met, which keeps a clean sweep
    finite (without it the maximum-likelihood rating of an unbeaten model is infinite); 0 gives the plain
    maximum-likelihood fit. Models in parts of the battle graph that never meet each other are not
    comparable; their relative level is arbitrary.
    """
    models, points, games = _tally(battles)
    if not models:
        return {}
    wins = {m: 0.0 for m in models}
    opponents: dict[str, list[tuple[str, float]]] = {m: [] for m in models}
    for (a, b), n in games.items():
        wins[a] += points[(a, b)] + prior / 2
        opponents[a].append((b, n + prior))
    strength = {m: 1.0 for m in models}
    for _ in range(max_iter):
        updated = {}
        for m in models:
            denominator = sum(n / (strength[m] + strength[o]) for o, n in opponents[m])
            # A model that never scored goes to strength 0; floor it so the logs below stay finite.
            updated[m] = max(wins[m] / denominator, 1e-12) if denominator else 1.0
        mean_log = sum(math.log(v) for v in updated.values()) / len(models)
        updated = {m: v / math.exp(mean_log) for m, v in updated.items()}
        change = max(abs(math.log(updated[m]) - math.log(strength[m])) for m in models)
        strength = updated
        if change < tol:
            break
    return {m: ELO_ANCHOR + ELO_SCALE * math.log10(strength[m]) for m in models}


def _percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default)."""
    position = (len(sorted_values) - 1) * q
    low = math.floor(position)
    high = math.ceil(position)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def bradley_terry_bootstrap(
    battles: Sequence[Battle], *, rounds: int = 100, seed: int = 0, prior: float = 0.0, level: float = 0.95,
    groups: Sequence[Hashable] | None = None,
) -> dict[str, tuple[float, float, float]]:
    """Model → (rating, low, high): the fit on all battles and a percentile bootstrap interval from
    ``rounds`` resamples with replacement (seeded, so the same input gives the same interval). With ``groups``
    (one key per battle, such as its prompt) whole groups are resampled, every battle of a group drawn
    together: votes on one prompt are not independent, and resampling them one by one gives an interval too
    narrow. A model missing from a resample keeps no value for that round."""
    battles = list(battles)
    point = bradley_terry(battles, prior=prior)
    if not battles:
        return {}
    if groups is None:
        groups = range(len(battles))
    if len(groups) != len(battles):
        raise ValueError(f"One group per battle: {len(groups)} groups for {len(battles)} battles")
    by_group: dict[Hashable, list[Battle]] = {}
    for battle, group in zip(battles, groups, strict=True):
        by_group.setdefault(group, []).append(battle)
    clusters = list(by_group.values())
    rng = random.Random(seed)
    samples: dict[str, list[float]] = {m: [] for m in point}
    for _ in range(rounds):
        resample = [battle for _ in clusters for battle in clusters[rng.randrange(len(clusters))]]
        for model, rating in bradley_terry(resample, prior=prior, max_iter=2000, tol=1e-8).items():
            samples[model].append(rating)
    tail = (1 - level) / 2
    result = {}
    for model, rating in point.items():
        values = sorted(samples[model]) or [rating]
        result[model] = (rating, _percentile(values, tail), _percentile(values, 1 - tail))
    return result
