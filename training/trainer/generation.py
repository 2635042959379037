"""Batched chat generation and log-probabilities, with an optional LoRA adapter over one base model."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from .device import choose_device

# Why an output ended, as labeling.Completion.finish_reason stores it.
FINISH_STOP = "stop"  # the model wrote an end-of-turn / EOS token: the answer is complete
FINISH_LENGTH = "length"  # it was still writing when max_new_tokens ran out: the answer is cut off


@dataclass(frozen=True)
class GeneratedText:
    """One completion and why it ended (FINISH_STOP or FINISH_LENGTH)."""

    text: str
    finish_reason: str

    @property
    def is_truncated(self) -> bool:
        return self.finish_reason == FINISH_LENGTH


def load_for_generation(
    model_path: str, adapter_dir: str | None = None, *, device: str | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load the base model (plus a LoRA adapter if given) in eval mode, and its tokenizer set for left padding.

    With an adapter the model is a PeftModel: use `adapter_disabled(model)` to get base outputs
    from the same loaded weights.
    """
    settings = choose_device()
    device = device or settings.device
    # bf16 on CUDA halves memory and is accurate enough for sampling; fp32 on CPU (no fast bf16 there).
    from .engines import TRANSFORMERS, generation_dtype

    dtype = getattr(torch, generation_dtype(TRANSFORMERS, device=device))
    tokenizer_source = adapter_dir or model_path
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # Decoder-only models continue from the last position, so padding must be on the left.
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_dir)
    model.to(device)
    model.eval()
    return model, tokenizer


@contextlib.contextmanager
def adapter_disabled(model: Any) -> Iterator[Any]:
    """Context in which a PeftModel behaves as its base model; a no-op for plain models."""
    if hasattr(model, "disable_adapter") and hasattr(model, "peft_config"):
        with model.disable_adapter():
            yield model
    else:
        yield model


def _render(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]]) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def prompt_token_ids(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]]) -> list[int]:
    """The ids `generate_outputs` feeds the model for one chat prompt (its row without the left padding)."""
    # The chat template already has the special tokens it needs.
    return list(tokenizer(_render(tokenizer, messages), add_special_tokens=False)["input_ids"])


def end_token_ids(model: Any, tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
    """Token ids that end an answer: the tokenizer's EOS and the model's generation_config EOS (an int or a list).

    For SmolLM2 the end-of-turn token ``<|im_end|>`` is at once EOS and the pad token."""
    return generation_end_ids(tokenizer, getattr(model, "generation_config", None))


def generation_end_ids(tokenizer: PreTrainedTokenizerBase, generation_config: Any) -> frozenset[int]:
    """`end_token_ids` from a tokenizer and a GenerationConfig (or None), for a backend that holds no torch model."""
    ids: set[int] = set()
    for value in (tokenizer.eos_token_id, getattr(generation_config, "eos_token_id", None)):
        if value is None:
            continue
        ids.update(int(v) for v in (value if isinstance(value, list | tuple) else [value]))
    return frozenset(ids)


def finish_reason(new_token_ids: Iterable[int], end_ids: frozenset[int]) -> str:
    """FINISH_STOP when an end token is among the generated ids, else FINISH_LENGTH.

    Decided from the generated ids, never from padding: when the pad token is the end token (SmolLM2), a
    batch row that ended early is padded with it only after it wrote one itself, and a row that ran to
    max_new_tokens has no padding among its new tokens at all."""
    return FINISH_STOP if any(int(t) in end_ids for t in new_token_ids) else FINISH_LENGTH


@torch.inference_mode()
def generate_outputs(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[list[dict[str, str]]],
    *,
    max_new_tokens: int = 128,
    temperature: float = 0.7,
    top_p: float = 0.9,
    seed: int = 0,
    batch_size: int = 8,
    on_batch: Callable[[int, list[GeneratedText]], None] | None = None,
    compact: bool = True,
    on_step: Callable[[list[list[int]]], bool] | None = None,
) -> list[GeneratedText]:
    """One completion per prompt (a list of chat messages), in order, with why each ended.

    temperature 0 means greedy decoding. Sampling is seeded once per call, so the same call on the
    same device gives the same texts. ``on_batch(start, outputs)`` is called after each batch with the
    index of its first prompt. ``on_step(new_token_ids)`` (the playground's stream) is called after every decoding
    step with each row of the batch's token ids so far; when it returns False the batch stops there, its answers cut
    off. Streaming needs the compacting decoder: with a generation config only model.generate applies, on_step is
    called once, at the end. Precondition: the tokenizer pads on the left (`load_for_generation` sets this).
    """
    if max_new_tokens <= 0:
        raise ValueError(f"max_new_tokens must be positive, got {max_new_tokens}.")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")
    if tokenizer.padding_side != "left":
        raise ValueError("Batched generation needs tokenizer.padding_side='left'; use load_for_generation().")
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    sample = temperature > 0
    gen_kwargs: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "do_sample": sample,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if sample:
        gen_kwargs.update(temperature=temperature, top_p=top_p)
    else:
        # Clear sampling defaults from generation_config so greedy decoding does not warn about them.
        gen_kwargs.update(temperature=None, top_p=None, top_k=None)
    end_ids = end_token_ids(model, tokenizer)
    processors = _sampling_processors(getattr(model, "generation_config", None), temperature=temperature, top_p=top_p)
    compacting = compact and processors is not None and bool(end_ids)
    outputs: list[GeneratedText] = []
    for start in range(0, len(prompts), batch_size):
        texts = [_render(tokenizer, p) for p in prompts[start : start + batch_size]]
        # The chat template already has the special tokens it needs.
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        if compacting:
            new_rows = _decode_compacting(model, batch["input_ids"], batch["attention_mask"], max_new_tokens=max_new_tokens,
                                          processors=processors, end_ids=end_ids, on_step=on_step)
        else:
            generated = model.generate(**batch, **gen_kwargs)
            new_rows = [row.tolist() for row in generated[:, batch["input_ids"].shape[1] :]]
            if on_step is not None:
                on_step(new_rows)
        decoded = tokenizer.batch_decode(new_rows, skip_special_tokens=True)
        made = [
            GeneratedText(text.strip(), finish_reason(row, end_ids))
            for text, row in zip(decoded, new_rows, strict=True)
        ]
        outputs.extend(made)
        if on_batch is not None:
            on_batch(start, made)
    return outputs


# Generation-config settings the compacting decoder does not apply: with any of them set, model.generate decodes.
_UNHANDLED = {
    "repetition_penalty": (None, 1.0), "no_repeat_ngram_size": (None, 0), "bad_words_ids": (None,), "min_length": (None, 0),
    "min_new_tokens": (None, 0), "suppress_tokens": (None,), "begin_suppress_tokens": (None,), "forced_bos_token_id": (None,),
    "forced_eos_token_id": (None,), "sequence_bias": (None,), "typical_p": (None, 1.0), "epsilon_cutoff": (None, 0.0),
    "eta_cutoff": (None, 0.0), "top_h": (None,), "renormalize_logits": (None, False),
}


def _sampling_processors(generation_config: Any, *, temperature: float, top_p: float) -> list[Any] | None:  # noqa: ANN401
    """The logits warpers model.generate applies for these settings, in its order (temperature, top-k, top-p, min-p,
    with top-k 50 when neither the call nor the model's config sets it); [] for greedy; None when the model's
    generation config asks for something else (a repetition penalty, banned words, ...), which only
    model.generate applies."""
    from transformers import MinPLogitsWarper, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    for name, neutral in _UNHANDLED.items():
        if getattr(generation_config, name, None) not in neutral:
            return None
    if temperature <= 0:
        return []
    top_k = getattr(generation_config, "top_k", None)
    top_k = 50 if top_k is None else int(top_k)
    processors: list[Any] = []
    if temperature != 1.0:
        processors.append(TemperatureLogitsWarper(temperature))
    if top_k:
        processors.append(TopKLogitsWarper(top_k=top_k, min_tokens_to_keep=1))
    if top_p < 1.0:
        processors.append(TopPLogitsWarper(top_p=top_p, min_tokens_to_keep=1))
    if min_p := getattr(generation_config, "min_p", None):
        processors.append(MinPLogitsWarper(min_p=min_p, min_tokens_to_keep=1))
    return processors


def _decode_compacting(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, max_new_tokens: int,  # noqa: ANN401
    processors: list[Any], end_ids: frozenset[int], on_step: Callable[[list[list[int]]], bool] | None = None,
) -> list[list[int]]:
    """The new token ids of each row, decoded as model.generate does (same positions, cache and warpers; greedy
    when ``processors`` is empty), but a row that wrote an end token leaves the batch at once.

    model.generate keeps finished rows in the batch, padding them, until the last row ends: on a CPU, where a step
    costs about the same per row, a batch of answers that mostly end early then pays for its one answer that
    loops to the token limit in every row. Here the step after a row ends is computed for the rows still writing
    only, their cache rows selected. Greedy decoding gives exactly model.generate's tokens; sampling draws the same
    tokens until the first row of the batch ends, then (fewer rows, fewer draws) other tokens from the same
    distribution."""
    from transformers import DynamicCache

    rows = input_ids.shape[0]
    ends = torch.tensor(sorted(end_ids), device=input_ids.device)
    alive = torch.arange(rows, device=input_ids.device)  # the original row of each row still in the batch
    sequences = input_ids  # prompt and new tokens of the rows still writing, for warpers that look back
    new_tokens: list[list[int]] = [[] for _ in range(rows)]
    cache = DynamicCache(config=model.config)
    position_ids = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
    step_input = input_ids
    for step in range(max_new_tokens):
        logits = model(input_ids=step_input, attention_mask=attention_mask, position_ids=position_ids,
                       cache=cache, use_cache=True).logits[:, -1, :].to(dtype=torch.float32)
        if processors:
            for processor in processors:
                logits = processor(sequences, logits)
            chosen = torch.multinomial(torch.softmax(logits, dim=-1), num_samples=1).squeeze(1)
        else:
            chosen = torch.argmax(logits, dim=-1)
        for row, token in zip(alive.tolist(), chosen.tolist(), strict=True):
            new_tokens[row].append(token)
        if on_step is not None and on_step(new_tokens) is False:
            break
        if step == max_new_tokens - 1:
            break
        writing = ~torch.isin(chosen, ends)
        if not bool(writing.any()):
            break
        if not bool(writing.all()):
            keep = writing.nonzero().squeeze(1)
            cache.batch_select_indices(keep)
            alive, chosen, attention_mask, sequences = alive[keep], chosen[keep], attention_mask[keep], sequences[keep]
            position_ids = position_ids[keep]
        sequences = torch.cat([sequences, chosen[:, None]], dim=1)
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((attention_mask.shape[0], 1))], dim=1)
        position_ids = position_ids[:, -1:] + 1
        step_input = chosen[:, None]
    return new_tokens


def generate(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[list[dict[str, str]]],
    *,
    max_new_tokens: int = 128,
    temperature: float = 0.7,
    top_p: float = 0.9,
    seed: int = 0,
    batch_size: int = 8,
) -> list[str]:
    """The texts of `generate_outputs` (same arguments, same texts), for callers that do not need finish reasons."""
    outputs = generate_outputs(
        model, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
        seed=seed, batch_size=batch_size,
    )
    return [output.text for output in outputs]


def completion_token_ids(
    tokenizer: PreTrainedTokenizerBase, prompt_messages: list[dict[str, str]], completion_text: str
) -> tuple[list[int], int]:
    """The chat-templated prompt + completion tokens, and the index where the completion's tokens start.

    The completion starts where the rendered prompt and prompt+answer first differ (as in TRL), so the template's
    end-of-turn token after the answer counts as the completion's too. The one rule for that boundary: the
    log-probability here and the per-token KL (``movement.mean_token_kl``) read it."""
    prompt_ids = tokenizer.apply_chat_template(
        prompt_messages, tokenize=True, add_generation_prompt=True, return_dict=True
    )["input_ids"]
    full_ids = tokenizer.apply_chat_template(
        prompt_messages + [{"role": "assistant", "content": completion_text}], tokenize=True, return_dict=True
    )["input_ids"]
    start = 0
    while start < min(len(prompt_ids), len(full_ids)) and prompt_ids[start] == full_ids[start]:
        start += 1
    return list(full_ids), start


@torch.inference_mode()
def sequence_logprob(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    prompt_messages: list[dict[str, str]],
    completion_text: str,
) -> float:
    """Sum of log p(completion tokens | prompt) under `model`, with the chat template applied; the completion's
    tokens are those `completion_token_ids` finds."""
    full_ids, start = completion_token_ids(tokenizer, prompt_messages, completion_text)
    if start >= len(full_ids):
        raise ValueError("The completion adds no tokens after the prompt.")
    device = next(model.parameters()).device
    input_ids = torch.tensor([full_ids], device=device)
    logits = model(input_ids=input_ids).logits.float()
    # Token t is predicted by the logits at position t-1.
    log_probs = torch.log_softmax(logits[0, :-1], dim=-1)
    targets = input_ids[0, 1:]
    token_logps = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return float(token_logps[start - 1 :].sum().item())
