"""Generation settings, Django-free: the typed class that parses and validates the sampling settings a review,
candidate or playground job is given (``GenerationSettings``), what each stored completion records of them, and
the provenance keys (engine and precision) that say where a stored output came from (``without_provenance``,
``engine_of``).

Nothing here imports torch: the web process parses and checks settings without loading a model.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from .engines import Messages

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
