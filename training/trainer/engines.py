"""The contract every generation engine keeps, Django-free and with no engine in it: the engines' names, the
error for one that cannot run, a sampling request, the precision each writes in, and the environment vLLM reads.
``training.trainer.generation_backends`` picks and opens an engine; ``training.trainer.vllm_backend`` is one. Both
import this, and neither the other's internals, so there is no cycle between them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

AUTO = "auto"
TRANSFORMERS = "transformers"
VLLM = "vllm"
BACKENDS = (AUTO, TRANSFORMERS, VLLM)

Messages = list[dict[str, str]]


class GenerationBackendError(RuntimeError):
    """A generation backend that cannot be used here; the message says why and what to do instead."""


def prepare_vllm_environment() -> None:
    """Settings vLLM reads from the environment, set (unless already set) before vllm is first imported."""
    # Celery's prefork pool runs tasks in daemonic processes, which may not start children, and vLLM starts its
    # engine core in a child process by default: keep it in this process.
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    # A worker may have no way out to the internet; vLLM's usage report is not ours to send anyway.
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")


def generation_dtype(backend: str, *, device: str | None = None) -> str:
    """The precision ``backend`` (a resolved name) generates in on this machine: transformers in bf16 on a CUDA
    GPU with bf16 and fp32 elsewhere (no fast bf16 on CPUs), vLLM in bf16, or fp16 where a GPU has no bf16 (its
    LoRA kernels take no fp32). Outputs record it beside the engine, so that only outputs of one engine and one
    precision are matched by default: a base answer in fp32 against a tuned one in bf16 measures the precision
    as well as the adapter."""
    from .device import choose_device

    settings = choose_device(force_cpu=device == "cpu")
    if backend == VLLM:
        return "bfloat16" if settings.bf16 else "float16"
    on_gpu = (device or settings.device) == "cuda"
    return "bfloat16" if on_gpu and settings.bf16 else "float32"


@dataclass(frozen=True)
class SampleRequest:
    """One model version's sample over some prompts: ``seed`` drives this sample for each of the prompts."""

    version: str
    prompts: Sequence[Messages]
    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int
