"""A reward model: the base with a one-number head and a LoRA adapter, trained on preference pairs (TRL's
RewardTrainer), then used to score answers. Loading, scoring and the figures made from scores; no Django here.

Scores are only comparable between answers scored by the same reward model: a Bradley-Terry model learns
differences, and the centring penalty keeps its scores near zero without fixing their scale.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labeling.statistics import Z_95, wilson_interval

if TYPE_CHECKING:
    import torch

Messages = list[dict[str, str]]

# The head PEFT must train in full (modules_to_save): the new score layer of a *ForSequenceClassification model.
SCORE_HEAD = "score"
HISTOGRAM_BINS = 12
# A tuned version whose outputs' reward spread falls below this share of the base's has narrowed what it writes:
# the mode-collapse warning sign (answers converging on one template the reward model likes).
COLLAPSED_SPREAD_SHARE = 0.5


def load_reward_model(adapter_dir: str, base_path: str, *, device: str = "cpu") -> tuple[torch.nn.Module, Any]:
    """The base model with a score head and the trained adapter, in eval mode, with its tokenizer."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if not Path(adapter_dir, "adapter_config.json").is_file():
        raise FileNotFoundError(f"No reward model adapter at {adapter_dir}: the run's output folder may have been deleted.")
    tokenizer = AutoTokenizer.from_pretrained(adapter_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    base = AutoModelForSequenceClassification.from_pretrained(base_path, num_labels=1, dtype=dtype)
    base.config.pad_token_id = tokenizer.pad_token_id
    model = PeftModel.from_pretrained(base, adapter_dir)
    model.to(device)
    model.eval()
    return model, tokenizer


def _token_ids(tokenizer: Any, conversation: Messages, max_length: int) -> list[int]:
    # The same text the trainer scored: the chat template over prompt and answer, no generation prompt.
    encoded = tokenizer.apply_chat_template(conversation, tokenize=True)
    ids = list(encoded["input_ids"] if isinstance(encoded, Mapping) else encoded)
    # Keep the end: the answer, and the last token the score is read from.
    return ids[-max_length:]


def score_conversations(
    model: torch.nn.Module, tokenizer: Any, conversations: Sequence[Messages], *, batch_size: int = 8,
    max_length: int = 1024,
) -> list[float]:
    """One score per conversation (prompt messages followed by the assistant's answer), in order."""
    import torch  # here, not at the top: the web and worker processes import this module for its statistics

    device = next(model.parameters()).device
    scores: list[float] = []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(conversations), batch_size):
            batch = [_token_ids(tokenizer, c, max_length) for c in conversations[start : start + batch_size]]
            padded = tokenizer.pad({"input_ids": batch}, padding=True, return_tensors="pt")
            with torch.no_grad():
                logits = model(
                    input_ids=padded["input_ids"].to(device), attention_mask=padded["attention_mask"].to(device)
                ).logits
            scores.extend(float(v) for v in logits.float().squeeze(-1).reshape(-1).cpu())
    finally:
        model.train(was_training)
    return scores


def score_pairs(model: torch.nn.Module, tokenizer: Any, rows: Sequence[dict[str, Any]], **kwargs: Any) -> list[tuple[float, float]]:
    """(chosen score, rejected score) for DPO-format rows."""
    conversations = [row["prompt"] + row["chosen"] for row in rows] + [row["prompt"] + row["rejected"] for row in rows]
    scores = score_conversations(model, tokenizer, conversations, **kwargs)
    return list(zip(scores[: len(rows)], scores[len(rows) :], strict=True))


@dataclass(frozen=True)
class PairwiseAccuracy:
    """How often the reward model scores the preferred answer higher, on pairs it was not trained on."""

    correct: int
    pairs: int
    ties: int

    @property
    def accuracy(self) -> float | None:
        return (self.correct + 0.5 * self.ties) / self.pairs if self.pairs else None

    def interval(self, z: float = Z_95) -> tuple[float, float] | None:
        """Wilson score interval of the accuracy (95% by default), ties counted half."""
        if not self.pairs:
            return None
        return wilson_interval(self.correct + 0.5 * self.ties, self.pairs, z)

    def as_dict(self) -> dict[str, Any]:
        interval = self.interval()
        return {
            "correct": self.correct, "pairs": self.pairs, "ties": self.ties, "accuracy": self.accuracy,
            "interval": list(interval) if interval else None,
        }


def pairwise_accuracy(scored: Sequence[tuple[float, float]]) -> PairwiseAccuracy:
    return PairwiseAccuracy(
        correct=sum(1 for chosen, rejected in scored if chosen > rejected),
        pairs=len(scored),
        ties=sum(1 for chosen, rejected in scored if chosen == rejected),
    )


@dataclass(frozen=True)
class ScoreDistribution:
    """Mean, spread and histogram of one version's reward scores; `edges` are shared between the versions compared."""

    count: int
    mean: float | None
    std: float | None
    low: float | None
    high: float | None
    counts: tuple[int, ...]
    edges: tuple[float, ...]

    @property
    def mean_interval(self) -> tuple[float, float] | None:
        """95% interval of the mean (normal approximation); None below two scores."""
        if self.count < 2 or self.mean is None or self.std is None:
            return None
        half = Z_95 * self.std / math.sqrt(self.count)
        return self.mean - half, self.mean + half

    @property
    def bars(self) -> list[tuple[float, float, int, int]]:
        """(from, to, count, percent of the tallest bar) per bin, for drawing."""
        tallest = max(self.counts, default=0) or 1
        return [
            (self.edges[i], self.edges[i + 1], count, round(100 * count / tallest))
            for i, count in enumerate(self.counts)
        ]


def score_distributions(groups: Mapping[str, Sequence[float]], *, bins: int = HISTOGRAM_BINS) -> dict[str, ScoreDistribution]:
    """A distribution per named group of scores, their histograms over one common range so they line up."""
    everything = [s for scores in groups.values() for s in scores]
    if not everything:
        return {name: ScoreDistribution(0, None, None, None, None, (), ()) for name in groups}
    low, high = min(everything), max(everything)
    if high == low:
        low, high = low - 0.5, high + 0.5
    width = (high - low) / bins
    edges = tuple(low + i * width for i in range(bins + 1))
    found = {}
    for name, scores in groups.items():
        counts = [0] * bins
        for s in scores:
            counts[min(bins - 1, int((s - low) / width))] += 1
        n = len(scores)
        mean = sum(scores) / n if n else None
        std = math.sqrt(sum((s - mean) ** 2 for s in scores) / (n - 1)) if n > 1 and mean is not None else None
        found[name] = ScoreDistribution(
            count=n, mean=mean, std=std, low=min(scores) if n else None, high=max(scores) if n else None,
            counts=tuple(counts), edges=edges,
        )
    return found


def spread_collapsed(base: ScoreDistribution, tuned: ScoreDistribution, *, share: float = COLLAPSED_SPREAD_SHARE) -> bool:
    """Whether the tuned version's scores spread less than `share` of the base's: its answers have narrowed."""
    if base.std is None or tuned.std is None or base.count < 5 or tuned.count < 5 or base.std == 0:
        return False
    return tuned.std < share * base.std
