"""Which engine writes completions, Django-free: the batched transformers path, which runs anywhere, or vLLM,
which runs on CUDA where the optional ``vllm`` package is installed (requirements-vllm.txt).

- ``transformers``: the base model loaded once with every version's LoRA adapter beside it, switched on and off
  per version (``training.trainer.generation``).
- ``vllm``: one vLLM engine for the base model; each request names its version's adapter (``LoRARequest``), so
  every version and sample of a batch of prompts goes to the engine at once (``training.trainer.vllm_backend``).
- ``auto``: vLLM where it can run, else transformers. A backend asked for by name that cannot run here raises
  GenerationBackendError saying why; nothing falls back silently from a name.

Both take the same requests and give the same outputs (`GeneratedText`: the answer and why it ended), so the
callers and what they store do not depend on the engine. Nothing here imports torch or vllm at import time: the
web process can check a backend's name without them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from .engines import (  # noqa: F401 - re-exported: callers import the engine contract from here too
    AUTO,
    BACKENDS,
    TRANSFORMERS,
    VLLM,
    GenerationBackendError,
    Messages,
    SampleRequest,
    generation_dtype,
    prepare_vllm_environment,
)

if TYPE_CHECKING:
    from .generation import GeneratedText

logger = logging.getLogger(__name__)


def vllm_unavailable_reason(*, device: str | None = None) -> str | None:
    """Why vLLM cannot generate in this process, or None when it can (CUDA visible and ``import vllm`` works).

    Imports vllm when CUDA is there, which takes seconds: call it where generation is about to start."""
    if device is not None and not device.startswith("cuda"):
        return f"generation was asked to run on {device!r}, and vLLM runs on CUDA GPUs only"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU is visible to this process, and vLLM runs on CUDA GPUs only"
    if importlib.util.find_spec("vllm") is None:
        return "the vllm package is not installed (pip install -r requirements-vllm.txt)"
    prepare_vllm_environment()
    try:
        import vllm  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - a broken install fails with any error type; its message is the reason
        return f"importing vllm failed ({type(exc).__name__}: {exc})"
    return None


def resolve_backend(requested: str, *, device: str | None = None) -> str:
    """The backend that will run for ``requested`` ("auto", "transformers" or "vllm") on this machine.

    "auto" is vLLM where `vllm_unavailable_reason` finds nothing against it, else transformers (logged, with the
    reason). "vllm" where it cannot run raises GenerationBackendError with the reason; so does an unknown name."""
    if requested not in BACKENDS:
        raise GenerationBackendError(
            f"Unknown generation backend {requested!r}: use one of {', '.join(BACKENDS)}."
        )
    if requested == TRANSFORMERS:
        return TRANSFORMERS
    reason = vllm_unavailable_reason(device=device)
    if reason is None:
        return VLLM
    if requested == VLLM:
        raise GenerationBackendError(
            f"The vLLM generation backend was asked for, but it cannot run here: {reason}. "
            f"Ask for {AUTO!r} (vLLM where it can run, else transformers) or {TRANSFORMERS!r}."
        )
    logger.info("Generating with transformers: %s.", reason)
    return TRANSFORMERS


class GenerationBackend(Protocol):
    name: str

    def run(self, requests: Sequence[SampleRequest]) -> Iterator[list[GeneratedText]]:
        """Per request, in order, one output per prompt in order."""
        ...

    def close(self) -> None:
        """Free the model (and, for vLLM, the GPU memory its engine holds)."""
        ...


class TransformersBackend:
    """The base model loaded once, each version's LoRA adapter loaded beside it and switched on (``set_adapter``)
    or off (``disable_adapter``) per request; requests run one after another, each in batches of ``batch_size``."""

    name = TRANSFORMERS

    def __init__(
        self, base_model_path: str, adapters: Mapping[str, str | None], *, device: str | None = None, batch_size: int = 8
    ) -> None:
        # Looked up on the module at call time, so a test's monkeypatch of generation.generate_outputs is seen.
        from . import generation

        self._generation = generation
        model, tokenizer = generation.load_for_generation(base_model_path, device=device)
        tuned = [(name, path) for name, path in adapters.items() if path]
        if tuned:
            from peft import PeftModel

            first_name, first_path = tuned[0]
            model = PeftModel.from_pretrained(model, first_path, adapter_name=first_name)
            for name, path in tuned[1:]:
                model.load_adapter(path, adapter_name=name)
            model.eval()
        self.model: Any = model
        self.tokenizer = tokenizer
        self.adapters = dict(adapters)
        self.batch_size = batch_size

    def run(self, requests: Sequence[SampleRequest]) -> Iterator[list[GeneratedText]]:
        for request in requests:
            if self.adapters[request.version]:
                self.model.set_adapter(request.version)
                context: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
            else:
                context = self._generation.adapter_disabled(self.model)
            with context:
                outputs = self._generation.generate_outputs(
                    self.model,
                    self.tokenizer,
                    list(request.prompts),
                    max_new_tokens=request.max_new_tokens,
                    temperature=request.temperature,
                    top_p=request.top_p,
                    seed=request.seed,
                    batch_size=self.batch_size,
                )
            # Yielded outside the adapter context: the caller stores these while the next request waits.
            yield outputs

    def close(self) -> None:
        self.model = None


@contextlib.contextmanager
def open_backend(
    backend: str,
    base_model_path: str,
    adapters: Mapping[str, str | None],
    *,
    device: str | None = None,
    seed: int = 0,
    batch_size: int = 8,
) -> Iterator[GenerationBackend]:
    """The one entry point: resolve ``backend`` (see `resolve_backend`), load the base model and ``adapters``
    (version name → LoRA adapter folder, or None for the base itself) into it, and free it on leaving."""
    name = resolve_backend(backend, device=device)
    loaded: GenerationBackend
    if name == VLLM:
        from .vllm_backend import VllmBackend

        loaded = VllmBackend.load(base_model_path, adapters, seed=seed)
    else:
        loaded = TransformersBackend(base_model_path, adapters, device=device, batch_size=batch_size)
    try:
        yield loaded
    finally:
        loaded.close()
