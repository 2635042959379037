"""What makes two outputs comparable: a *comparison* is a fixed, named set of generation settings.

A stored completion's ``generation_settings`` is ``GenerationSettings.for_sample(k)``: the sampling settings
plus which of the n samples it is (and which engine wrote it). Two versions' outputs are MATCHED when those dicts
are identical apart from the engine, sample index included: the base's sample k against the tuned model's sample k
on the same prompt, same seed. The
settings without the sample index name the comparison (``PairTask.matched_settings``, ``Battle.settings``);
nothing else is ever paired, battled or counted in a win rate.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from training.trainer.generation_settings import PROVENANCE_KEYS
from training.trainer.json_numbers import is_number, is_whole_number

SAMPLE = "sample"
# GenerationJob.settings also holds n (how many samples were asked for) and perhaps a second temperature for odd
# samples; a completion records its sample index and the temperature it was drawn at instead. Without these, a
# job's settings name the comparison of its sample 0. A completion also records which engine wrote it: where it
# came from, not how it was sampled, so outputs of the same settings from either engine are one comparison.
_NOT_A_SETTING = {SAMPLE, "n", "alt_temperature", *PROVENANCE_KEYS}


def _plain(value: Any) -> Any:  # noqa: ANN401
    # 0 and 0.0 are the same temperature: JSON from a form and from the API must not make two comparisons.
    if is_number(value):
        return float(value)
    return value


def matched_settings_of(settings: dict[str, Any] | None) -> dict[str, Any]:
    """The comparison an output (or a job) belongs to: its generation settings without the sample index."""
    return {key: value for key, value in (settings or {}).items() if key not in _NOT_A_SETTING}


def sample_of(settings: dict[str, Any] | None) -> int:
    """Which of the n samples an output is (0 for outputs stored before samples were numbered)."""
    value = (settings or {}).get(SAMPLE, 0)
    return value if is_whole_number(value) else 0


def settings_key(settings: dict[str, Any] | None) -> str:
    """A canonical string for a settings dict, equal for equal settings (0 and 0.0 alike)."""
    return json.dumps({key: _plain(value) for key, value in (settings or {}).items()}, sort_keys=True)


def comparison_key(settings: dict[str, Any] | None) -> str:
    """A short, URL-safe name for a comparison: the same settings always give the same key."""
    return hashlib.sha256(settings_key(matched_settings_of(settings)).encode()).hexdigest()[:12]


def _number(value: Any) -> str:  # noqa: ANN401
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _seeds(seeds: list[int]) -> str:
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    if seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"seeds {seeds[0]}–{seeds[-1]}"
    return "seeds " + ", ".join(str(s) for s in seeds)


def describe_settings(settings: dict[str, Any] | None, samples: Iterable[int] | None = None) -> str:
    """The comparison in words, e.g. "temperature 0.7, top-p 0.9, up to 256 tokens, seeds 0–2 (3 samples per
    prompt)". ``samples`` are the sample indices present (sample k used seed + k); without them only the first
    seed is named ("from seed 0")."""
    settings = matched_settings_of(settings)
    parts = []
    temperature = settings.get("temperature")
    if temperature is not None:
        parts.append("greedy (temperature 0)" if temperature == 0 else f"temperature {_number(temperature)}")
    if settings.get("top_p") is not None:
        parts.append(f"top-p {_number(settings['top_p'])}")
    if settings.get("max_new_tokens") is not None:
        parts.append(f"up to {_number(settings['max_new_tokens'])} tokens")
    seed = settings.get("seed")
    has_seed = is_number(seed)
    if samples is None:
        if has_seed:
            parts.append(f"from seed {_number(seed)}")
    else:
        indices = sorted(set(samples)) or [0]
        count = f"{len(indices)} sample{'s' if len(indices) != 1 else ''} per prompt"
        parts.append(f"{_seeds([int(seed) + k for k in indices])} ({count})" if has_seed else count)
    others = sorted(set(settings) - {"temperature", "top_p", "max_new_tokens", "seed"})
    parts += [f"{name} {settings[name]}" for name in others]
    return ", ".join(parts)
