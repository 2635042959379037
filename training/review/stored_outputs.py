"""Which generated outputs are stored already: a completion's sampling settings as a key (the engine that wrote it
aside), and the (prompt, version, settings) keys a generation job skips."""
from __future__ import annotations

from typing import Any

from labeling.models import Completion
from training.models import ModelVersion
from training.trainer.generation_settings import engine_of, without_provenance


def sampling_settings_key(settings: dict[str, Any]) -> str:
    """A canonical string for a completion's (or a sample's) generation settings, the engine left out."""
    # The sampling settings alone: which engine wrote an output is checked apart (``existing_output_keys``), so that a
    # job can be asked to reuse what another engine wrote.
    return repr(sorted(without_provenance(settings).items()))


def existing_output_keys(
    prompt_ids: list[int], versions: list[ModelVersion], engine: str | None
) -> set[tuple[int, int, str]]:
    """(prompt, version, settings) of generated completions already stored, settings as a canonical string: those
    ``engine`` wrote (``engine_of``), or any engine's when ``engine`` is None."""
    rows = Completion.objects.filter(
        prompt_id__in=prompt_ids, model_version__in=versions, source=Completion.Source.GENERATED
    ).values_list("prompt_id", "model_version_id", "generation_settings")
    return {(p, v, sampling_settings_key(s)) for p, v, s in rows if engine is None or engine_of(s) == engine}
