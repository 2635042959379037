"""Completions from several model versions over one loaded base, Django-free: ``generate_for_versions`` loads the
base model once with every version's LoRA adapter (or hands them all to vLLM) and writes ``settings.n`` samples
per prompt for each version, a batch of prompts at a time, reporting each batch as it is done. Review and
candidate jobs write their outputs with it (``training.review.generation_batches``).

torch and peft are imported only when an engine is opened (``training.trainer.generation_backends``), so importing
this module loads neither.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .engines import Messages
from .generation_backends import SampleRequest, open_backend
from .generation_settings import GenerationSettings

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
