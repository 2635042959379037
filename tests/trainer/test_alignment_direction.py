"""The alignment loop in small, on the real bundled model: a preference for shorter answers, learned from the
model's own candidates, must make its held-out answers shorter. It asserts direction only, over a fixed set of
prompts and seeds; `bench/alignment_loop.py` measures how far the full loop moves it.

Sized for cost and margin, measured with one thread (as in the suite): 12 train prompts × 4 candidates, 8 steps,
12 held-out prompts take about 110 s (16 × 3 candidates, 12 steps and 6 held-out prompts took 200 s). Mean words
of the held-out answers, base → tuned, for the prompt seeds 3, 4 and 6: 70.3 → 55.8, 75.0 → 58.8, 79.7 → 78.6 (the
last one's candidates rarely end inside 64 tokens, so few pairs differ in length); the old size on seed 6 got
longer (78.0 → 78.7)."""

from __future__ import annotations

import itertools
import statistics
import sys
from pathlib import Path

import pytest

from training.trainer import TrainSettings, train
from training.trainer.config import LoraSettings
from training.trainer.review import GenerationSettings, generate_for_versions

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from alignment_prompts import alignment_prompts  # noqa: E402
from simulated_annotators import RULES, judge, word_count  # noqa: E402

# About 110 s on one core: the limit is there to catch a hang, so it leaves room for a busy one.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_a_length_preference_makes_held_out_answers_shorter(bundled_model_dir, tmp_path):
    import random

    # Given the model's own four candidates for each of 12 train prompts, every pair judged by the "fewer words"
    # rule (a difference under 10% is a tie, and ties teach nothing)
    prompts = alignment_prompts(24, seed=3)
    train_prompts, heldout = prompts[:12], prompts[12:]
    candidates = generate_for_versions(
        str(bundled_model_dir), {"base": None}, [_user(p) for p in train_prompts],
        GenerationSettings(temperature=1.0, top_p=0.95, max_new_tokens=64, seed=0, n=4), batch_size=16,
    )["base"]
    rows = []
    for prompt, (first, second) in (
        (prompt, pair) for prompt, texts in zip(train_prompts, candidates, strict=True)
        for pair in itertools.combinations(texts, 2)
    ):
        vote = judge(RULES["length"], first, second, rng=random.Random(0))
        if vote in ("a", "b"):
            chosen, rejected = (first, second) if vote == "a" else (second, first)
            rows.append({"prompt": _user(prompt), "chosen": [{"role": "assistant", "content": chosen}],
                         "rejected": [{"role": "assistant", "content": rejected}]})
    assert len(rows) >= 10, "the candidates must disagree in length often enough to teach anything"

    # When a DPO adapter trains on them for a few steps
    result = train(
        model_path=str(bundled_model_dir), rows=rows, output_dir=str(tmp_path),
        settings=TrainSettings(max_steps=8, learning_rate=1e-3, per_device_batch_size=4, validation_fraction=0.0,
                               max_length=192, lora=LoraSettings(r=8, alpha=16)),
    )

    # Then greedy answers to 12 unseen prompts are shorter with the adapter than without it
    outputs = generate_for_versions(
        str(bundled_model_dir), {"base": None, "tuned": result.adapter_dir}, [_user(p) for p in heldout],
        GenerationSettings(temperature=0, max_new_tokens=96), batch_size=12,
    )
    base_words = statistics.mean(word_count(s[0]) for s in outputs["base"])
    tuned_words = statistics.mean(word_count(s[0]) for s in outputs["tuned"])
    assert tuned_words < base_words, (base_words, tuned_words, outputs["tuned"])
