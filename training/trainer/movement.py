"""Did the tuned model move? Django-free measures of how far a LoRA adapter takes a model from its base.

- ``identical_counts``: of the matched (tuned, base) output pairs, how many are the same text. Sampled with
  the same seed, an adapter that changed nothing writes exactly what the base wrote.
- ``mean_token_kl``: the mean per-token KL(tuned ‖ base) over the tuned model's own held-out outputs,
  Σ_v p_tuned(v) (log p_tuned(v) − log p_base(v)) at each completion token, averaged over all of them. It is
  measured with ONE loaded base model, the adapter switched on and then off over the same batch, so it costs
  two forward passes and no second copy of the weights. A freshly initialised adapter (LoRA B = 0) gives 0.

torch and peft are imported inside the functions, so the web process can import ``identical_counts``.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

Messages = list[dict[str, str]]

# The share of identical outputs at or above which a review page says the tuned model did not move.
NOT_MOVED_SHARE = 0.5


@dataclass(frozen=True)
class Movement:
    """What ``GenerationJob.movement`` stores; ``kl_per_token`` is None when it was not measured."""

    pairs: int
    identical: int
    kl_per_token: float | None = None
    tokens: int = 0

    @property
    def identical_share(self) -> float | None:
        return self.identical / self.pairs if self.pairs else None

    @property
    def did_not_move(self) -> bool:
        share = self.identical_share
        return share is not None and share >= NOT_MOVED_SHARE

    def to_dict(self) -> dict[str, Any]:
        return {
            "pairs": self.pairs,
            "identical": self.identical,
            "identical_share": self.identical_share,
            "kl_per_token": self.kl_per_token,
            "tokens": self.tokens,
        }


def same_text(tuned: str, base: str) -> bool:
    """Whether two outputs say the same thing, ignoring the whitespace generation strips at either end."""
    return tuned.strip() == base.strip()


def identical_counts(pairs: Iterable[tuple[str, str]]) -> tuple[int, int]:
    """(identical, pairs) over matched (tuned text, base text) pairs."""
    identical = total = 0
    for tuned, base in pairs:
        total += 1
        identical += same_text(tuned, base)
    return identical, total


def mean_token_kl(
    model: Any,  # noqa: ANN401 - a PeftModel
    tokenizer: Any,  # noqa: ANN401
    items: Sequence[tuple[Messages, str]],
    *,
    batch_size: int = 4,
) -> tuple[float, int]:
    """(mean KL per token, tokens): KL(adapter on ‖ adapter off) at every completion token of every
    (prompt messages, completion text) item, averaged over all those tokens.

    ``model`` is a PeftModel with its adapter active; the base distribution comes from the same weights under
    ``adapter_disabled``. Items whose completion adds no tokens are skipped. Raises ValueError when no item
    has a completion token (nothing to measure)."""
    import torch

    from .generation import adapter_disabled, completion_token_ids

    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")
    encoded = [completion_token_ids(tokenizer, messages, text) for messages, text in items]
    encoded = [(ids, start) for ids, start in encoded if start < len(ids)]
    if not encoded:
        raise ValueError("No completion tokens to measure the KL on.")
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    total = 0.0
    tokens = 0
    with torch.inference_mode():
        for first in range(0, len(encoded), batch_size):
            batch = encoded[first : first + batch_size]
            width = max(len(ids) for ids, _ in batch)
            # Right padding: positions count from 0 for every row, as in a single unpadded forward pass.
            input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            # Position t's logits predict token t + 1, so completion tokens start..end-1 are read at start-1..end-2.
            predicts = torch.zeros((len(batch), width), dtype=torch.bool)
            for row, (ids, start) in enumerate(batch):
                input_ids[row, : len(ids)] = torch.tensor(ids)
                attention[row, : len(ids)] = 1
                predicts[row, start - 1 : len(ids) - 1] = True
            input_ids, attention, predicts = input_ids.to(device), attention.to(device), predicts.to(device)
            tuned_logits = model(input_ids=input_ids, attention_mask=attention).logits[predicts].float()
            with adapter_disabled(model):
                base_logits = model(input_ids=input_ids, attention_mask=attention).logits[predicts].float()
            tuned_logp = torch.log_softmax(tuned_logits, dim=-1)
            base_logp = torch.log_softmax(base_logits, dim=-1)
            kl = (tuned_logp.exp() * (tuned_logp - base_logp)).sum(dim=-1)
            # Rounding can make a true 0 read a hair below it; KL is never negative.
            total += float(kl.clamp(min=0).sum().item())
            tokens += int(kl.numel())
    return total / tokens, tokens


def adapter_kl_per_token(
    base_model_path: str,
    adapter_path: str,
    items: Sequence[tuple[Messages, str]],
    *,
    batch_size: int = 4,
    device: str | None = None,
) -> tuple[float, int]:
    """Load the base once with the adapter over it and return ``mean_token_kl`` on ``items``."""
    from .generation import load_for_generation

    model, tokenizer = load_for_generation(base_model_path, adapter_path, device=device)
    return mean_token_kl(model, tokenizer, items, batch_size=batch_size)
