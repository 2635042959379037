"""Generation with vLLM: one engine per base model, each version's LoRA adapter named per request (``LoRARequest``).

vllm is imported only inside `VllmBackend.load`, so this module imports (and its pure parts are tested) where
vllm is not installed. What makes its outputs the same kind as the transformers path's
(``training.trainer.generation.generate_outputs``):

- the prompt is the same token ids: the tokenizer's chat template rendered with the generation prompt and
  tokenized without extra special tokens (`generation.prompt_token_ids`), passed to vLLM as token ids so vLLM
  adds nothing of its own;
- the answer ends at the same tokens (the tokenizer's EOS and the generation config's), its tokens are decoded by
  the same tokenizer with special tokens skipped and stripped, and vLLM's ``finish_reason`` "length" is recorded
  as truncated (FINISH_LENGTH) exactly where transformers would have run out of new tokens;
- the sampling knobs transformers applies without being asked (the model's generation config, else top_k 50) are
  passed to vLLM explicitly, so a temperature and top_p mean the same distribution on both engines.

Sample k of a prompt is one request seeded ``seed + k`` (n=1), as on the transformers path; vLLM seeds each
request on its own, so the same request gives the same answer whatever else is in the batch, up to the small
numeric differences that batching makes in bf16 (greedy decoding is stable). The two engines do not give the
same text for the same seed.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .engines import VLLM, GenerationBackendError, SampleRequest, generation_dtype, prepare_vllm_environment
from .generation import FINISH_LENGTH, FINISH_STOP, GeneratedText, generation_end_ids, prompt_token_ids
from .json_numbers import is_whole_number

# The LoRA ranks vLLM's kernels are built for: its max_lora_rank must be one of these.
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
# transformers' GenerationConfig global default for top_k, applied when neither the model nor the call sets one.
TRANSFORMERS_DEFAULT_TOP_K = 50
_FINISH_REASONS = {"stop": FINISH_STOP, "length": FINISH_LENGTH}


def adapter_rank(adapter_config: Mapping[str, Any]) -> int:
    """The largest LoRA rank in a PEFT ``adapter_config.json``: ``r`` and any per-module ``rank_pattern``."""
    ranks = [adapter_config.get("r"), *(adapter_config.get("rank_pattern") or {}).values()]
    if not all(is_whole_number(r) and r > 0 for r in ranks):
        raise GenerationBackendError(f"The adapter's LoRA rank must be a positive whole number, got {ranks!r}.")
    return max(ranks)


def read_adapter_rank(adapter_dir: str) -> int:
    """`adapter_rank` of the adapter saved in ``adapter_dir``."""
    config_path = Path(adapter_dir) / "adapter_config.json"
    if not config_path.is_file():
        raise GenerationBackendError(f"{adapter_dir} holds no adapter_config.json: it is not a saved LoRA adapter.")
    return adapter_rank(json.loads(config_path.read_text()))


def max_lora_rank(ranks: Iterable[int]) -> int:
    """vLLM's ``max_lora_rank`` for adapters of these ranks: the smallest value it accepts that holds them all."""
    largest = max(ranks, default=1)
    for allowed in VLLM_LORA_RANKS:
        if allowed >= largest:
            return allowed
    raise GenerationBackendError(
        f"vLLM serves LoRA adapters up to rank {VLLM_LORA_RANKS[-1]}; this one has rank {largest}. "
        "Use the transformers backend for it."
    )


def sampling_kwargs(request: SampleRequest, generation_config: Any, end_ids: Iterable[int]) -> dict[str, Any]:
    """Keyword arguments for ``vllm.SamplingParams`` that sample ``request`` as the transformers path does.

    ``generation_config`` is the base model's GenerationConfig: transformers fills what a call leaves unset from
    it, then from its global defaults (top_k 50), and so must this. Greedy decoding (temperature 0) ignores
    top_p / top_k / min_p on both engines; a repetition penalty applies to both kinds of decoding."""
    sample = request.temperature > 0
    kwargs: dict[str, Any] = {
        "n": 1,
        "temperature": float(request.temperature),
        "top_p": float(request.top_p) if sample else 1.0,
        "max_tokens": request.max_new_tokens,
        "seed": request.seed,
        "stop_token_ids": sorted(end_ids),
        "skip_special_tokens": True,
        "repetition_penalty": float(getattr(generation_config, "repetition_penalty", None) or 1.0),
    }
    if sample:
        top_k = getattr(generation_config, "top_k", None)
        # 0 turns top-k off for both: transformers skips it, vLLM reads 0 as "all tokens".
        kwargs["top_k"] = TRANSFORMERS_DEFAULT_TOP_K if top_k is None else int(top_k)
        min_p = getattr(generation_config, "min_p", None)
        if min_p:
            kwargs["min_p"] = float(min_p)
    return kwargs


def outputs_from_vllm(request_outputs: Sequence[Any], decode: Callable[[list[int]], str]) -> list[GeneratedText]:
    """One GeneratedText per vLLM ``RequestOutput`` (each asked with n=1), in order.

    The text is the completion's token ids decoded by ``decode`` (the transformers path's tokenizer, special tokens
    skipped) and stripped, as ``generate_outputs`` does; vLLM's own ``text`` is not used, so both engines turn the
    same tokens into the same text. ``finish_reason`` "stop" (an end token) and "length" (max_tokens reached:
    truncated) map to FINISH_STOP and FINISH_LENGTH; anything else (an aborted request) is an error."""
    made: list[GeneratedText] = []
    for request in request_outputs:
        completions = list(request.outputs)
        if len(completions) != 1:
            raise GenerationBackendError(
                f"Expected one completion per vLLM request (n=1), got {len(completions)} for request "
                f"{getattr(request, 'request_id', '?')}."
            )
        completion = completions[0]
        reason = _FINISH_REASONS.get(completion.finish_reason)
        if reason is None:
            raise GenerationBackendError(
                f"vLLM ended a completion with finish_reason {completion.finish_reason!r}; only 'stop' and "
                "'length' are expected (was the request aborted?)."
            )
        made.append(GeneratedText(decode(list(completion.token_ids)).strip(), reason))
    return made


def _generation_config(model_path: str) -> Any:  # noqa: ANN401 - a transformers GenerationConfig
    from transformers import AutoConfig, GenerationConfig

    try:
        return GenerationConfig.from_pretrained(model_path)
    except OSError:
        # No generation_config.json: transformers derives one from the model config when it loads the model.
        return GenerationConfig.from_model_config(AutoConfig.from_pretrained(model_path))


class VllmBackend:
    """A vLLM engine over one base model; `run` sends every request of a call to the engine at once, each prompt
    with its version's ``LoRARequest`` (None for the base), and hands the outputs back request by request."""

    name = VLLM

    def __init__(
        self,
        llm: Any,  # noqa: ANN401 - a vllm.LLM, or a stand-in with the same generate()
        tokenizer: Any,  # noqa: ANN401 - a transformers tokenizer
        generation_config: Any,  # noqa: ANN401
        lora_requests: Mapping[str, Any],
        make_sampling_params: Callable[..., Any],
    ) -> None:
        """Prefer `load`; this takes the parts, so the request assembly can be tested without vllm."""
        self.llm = llm
        self.tokenizer = tokenizer
        self.generation_config = generation_config
        self.lora_requests = dict(lora_requests)
        self.make_sampling_params = make_sampling_params
        self.end_ids = generation_end_ids(tokenizer, generation_config)

    @classmethod
    def load(
        cls, base_model_path: str, adapters: Mapping[str, str | None], *, seed: int = 0,
        gpu_memory_utilization: float = 0.9,
    ) -> VllmBackend:
        """Start an engine for ``base_model_path`` with LoRA enabled for the ``adapters`` that have a folder.

        Precondition: `resolve_backend` said vLLM can run here. The engine holds ``gpu_memory_utilization`` of the
        GPU until `close`."""
        prepare_vllm_environment()
        import torch
        from transformers import AutoTokenizer
        from vllm import LLM, SamplingParams
        from vllm.lora.request import LoRARequest

        tuned = [(name, path) for name, path in adapters.items() if path]
        lora_requests = {
            # vLLM's adapter ids must be positive and unique within the engine.
            name: LoRARequest(lora_name=name, lora_int_id=number, lora_path=str(path))
            for number, (name, path) in enumerate(tuned, start=1)
        }
        engine_kwargs: dict[str, Any] = {}
        if tuned:
            engine_kwargs.update(
                enable_lora=True,
                max_loras=len(tuned),
                max_lora_rank=max_lora_rank(read_adapter_rank(str(path)) for _, path in tuned),
            )
        # bf16 as on the transformers path on CUDA; vLLM's LoRA kernels take fp16 where a GPU has no bf16.
        dtype = generation_dtype(VLLM)
        # vLLM refuses to start unless the share of the GPU it is to take is free: hand back what this worker's
        # earlier jobs left in torch's cache.
        gc.collect()
        torch.cuda.empty_cache()
        llm = LLM(
            model=base_model_path, tokenizer=base_model_path, dtype=dtype, seed=seed,
            gpu_memory_utilization=gpu_memory_utilization, **engine_kwargs,
        )
        tokenizer = AutoTokenizer.from_pretrained(base_model_path)
        return cls(llm, tokenizer, _generation_config(base_model_path), lora_requests, SamplingParams)

    def run(self, requests: Sequence[SampleRequest]) -> Iterator[list[GeneratedText]]:
        prompts: list[dict[str, list[int]]] = []
        params: list[Any] = []
        loras: list[Any] = []
        for request in requests:
            sampling = self.make_sampling_params(**sampling_kwargs(request, self.generation_config, self.end_ids))
            lora = self.lora_requests.get(request.version)
            for messages in request.prompts:
                prompts.append({"prompt_token_ids": prompt_token_ids(self.tokenizer, messages)})
                params.append(sampling)
                loras.append(lora)
        if not prompts:
            return
        outputs = outputs_from_vllm(
            self.llm.generate(prompts, params, lora_request=loras, use_tqdm=False), self._decode
        )
        if len(outputs) != len(prompts):
            raise GenerationBackendError(f"vLLM returned {len(outputs)} outputs for {len(prompts)} prompts.")
        start = 0
        for request in requests:
            yield outputs[start : start + len(request.prompts)]
            start += len(request.prompts)

    def _decode(self, token_ids: list[int]) -> str:
        return self.tokenizer.decode(token_ids, skip_special_tokens=True)

    def close(self) -> None:
        if self.llm is None:
            return
        self.llm = None
        try:
            from vllm.distributed import cleanup_dist_env_and_memory
        except ImportError:  # a stand-in engine in tests, or a vllm without the helper: the collector frees it
            gc.collect()
            return
        # Frees the engine's GPU memory (weights and KV cache) for the training or scoring that comes next.
        cleanup_dist_env_and_memory()
