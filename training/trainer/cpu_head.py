"""The log-probability head DPO and KTO train through on a CPU.

TRL 1.16 patches the model so that ``model(..., labels=..., fused_lm_head=True)`` returns per-token log-probabilities
without materialising the logits (``trl.trainer.utils.add_fused_lm_head``): it walks the vocabulary in blocks of
1,024 with an online softmax. That saves memory on a GPU. On a CPU, without Triton, it also scores every position,
prompt and padding included, and pays Python overhead on each of the 48 blocks of a 49,152-token vocabulary:
``bench/lm_head_cpu.py`` measures what that costs. ``add_plain_lm_head`` returns the same outputs from the full
logits of the scored positions only. A CPU run is small (the memory of those logits is a few hundred MB at most),
so nothing is lost.

``plain_lm_head_on_cpu`` swaps it in while a trainer is built, which is when TRL patches the model.
"""
from __future__ import annotations

import contextlib
import functools
import types
from collections.abc import Iterator
from typing import Any

import torch

_TRAINER_MODULES = ("trl.trainer.dpo_trainer", "trl.trainer.kto_trainer")


def _needs_trl_head(config: Any) -> bool:  # noqa: ANN401
    """Models whose logits TRL scales, caps or routes (softcapping, logit scales, mixture of experts): TRL's
    head knows each of them, this one does not, so they keep it."""
    text = config.get_text_config()
    names = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling")
    return any(getattr(text, name, None) is not None for name in names) or bool(getattr(text, "output_router_logits", False))


def add_plain_lm_head(
    model: Any,  # noqa: ANN401 - a transformers PreTrainedModel
    temperature: float = 1.0,
    cast_lm_head_to_fp32: bool = False,
    outputs: tuple[str, ...] = ("log_probs",),
) -> None:
    """``trl.trainer.utils.add_fused_lm_head``'s contract (same arguments, same ``FusedCausalLMOutput``), computed
    from full logits at the positions whose label is not -100. Models it does not know fall back to TRL's head."""
    from trl.trainer.utils import FusedCausalLMOutput, add_fused_lm_head

    if _needs_trl_head(model.config):
        add_fused_lm_head(model, temperature=temperature, cast_lm_head_to_fp32=cast_lm_head_to_fp32, outputs=outputs)
        return
    original_forward = model.forward

    # The original signature is kept: generate() checks its keyword arguments against it.
    @functools.wraps(type(model).forward)
    def forward(self, *args, fused_lm_head=False, labels=None, shift_labels=None, num_items_in_batch=None, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if not fused_lm_head:
            for name, value in (("labels", labels), ("shift_labels", shift_labels), ("num_items_in_batch", num_items_in_batch)):
                if value is not None:
                    kwargs[name] = value
            return original_forward(*args, **kwargs)
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state
        if shift_labels is None:
            hidden, labels = hidden[:, :-1], labels[:, 1:]
        else:
            labels = shift_labels
        mask = labels != -100
        targets = labels[mask]
        logits = self.get_output_embeddings()(hidden[mask]).float() / temperature
        log_softmax = logits.log_softmax(-1)
        scored = {"log_probs": log_softmax.gather(-1, targets.unsqueeze(-1)).squeeze(-1)}
        # Metrics only: TRL's DPO and KTO never differentiate through them.
        with torch.no_grad():
            if "entropy" in outputs:
                scored["entropy"] = -(log_softmax.exp() * log_softmax).sum(-1)
            if "mean_logits" in outputs:
                scored["mean_logits"] = logits.mean(-1)
            if "is_top1" in outputs:
                scored["is_top1"] = logits.argmax(-1) == targets
            if "log_sum_sq_probs" in outputs:
                scored["log_sum_sq_probs"] = torch.logsumexp(2 * log_softmax, -1)

        def spread(values: torch.Tensor) -> torch.Tensor:
            # masked_scatter keeps an all-masked batch connected to the graph, as TRL's head does.
            return values.new_zeros(mask.shape).masked_scatter(mask, values)

        per_token = {name: spread(values) for name, values in scored.items()}
        log_probs = per_token["log_probs"]
        loss = -log_probs.sum() / (mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch)
        return FusedCausalLMOutput(
            loss=loss, log_probs=log_probs, entropy=per_token.get("entropy"),
            log_sum_sq_probs=per_token.get("log_sum_sq_probs"), mean_logits=per_token.get("mean_logits"),
            is_top1=per_token.get("is_top1"), label_mask=mask, aux_loss=None,
        )

    model.forward = types.MethodType(forward, model)


@contextlib.contextmanager
def plain_lm_head_on_cpu(enabled: bool) -> Iterator[None]:
    """While a DPO or KTO trainer is built (when TRL patches the model), give it ``add_plain_lm_head``."""
    import importlib

    if not enabled:
        yield
        return
    modules = [importlib.import_module(name) for name in _TRAINER_MODULES]
    originals = [module.add_fused_lm_head for module in modules]
    for module in modules:
        module.add_fused_lm_head = add_plain_lm_head
    try:
        yield
    finally:
        for module, original in zip(modules, originals, strict=True):
            module.add_fused_lm_head = original
