"""The alignment loop in small, on the real bundled model: a preference for shorter answers, learned from the
model's own answers, must make its held-out answers shorter. It asserts direction only; `bench/alignment_loop.py`
measures how far the full loop moves it.

The answers and votes are the demo history's (labeling/demo/history.json: the bundled model's own candidates,
judged by three simulated annotators by the fewer-words rule, made by scripts/make_demo_history.py), so the test
spends its time on what it checks, training and the held-out answers, not on writing candidates again. It trains on
the decided pairs whose chosen answer is short enough to fit the token limit whole (its end is what teaches to stop).
Earlier this test wrote its own candidates (12 prompts × 4 at 64 tokens): about 110 s alone, 245 s in the busy suite,
a third of it generating them. It trains 8 steps of 2 of the 32 pairs: steps of 4 pairs took 93 s of its 120 s alone (one
thread); of 2, 62 s, and the held-out answers went from 73.1 to 61.3 words."""

from __future__ import annotations

import collections
import json
import statistics
import sys
from pathlib import Path

import pytest

from training.trainer import TrainSettings, train
from training.trainer.config import LoraSettings
from training.trainer.generation_settings import GenerationSettings
from training.trainer.version_generation import generate_for_versions

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from simulated_annotators import word_count  # noqa: E402

# The limit is there to catch a hang, so it leaves room for a busy machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

SHORT_CHOSEN_WORDS = 60  # about 80 tokens: with the prompt, inside max_length 128 whole


def _history_rows(history: dict) -> list[dict]:
    """One DPO row per history pair a strict majority of its votes decided, whose chosen answer is short."""
    answers = {prompt["id"]: prompt for prompt in history["prompts"]}
    rows = []
    for pair in history["pairs"]:
        counts = collections.Counter(vote["choice"] for vote in pair["votes"])
        outcome, votes = counts.most_common(1)[0]
        if outcome not in ("a", "b") or votes * 2 <= len(pair["votes"]):
            continue
        prompt = answers[pair["prompt"]]
        texts = {side: prompt["answers"][pair[side]]["text"] for side in ("a", "b")}
        chosen, rejected = texts[outcome], texts["b" if outcome == "a" else "a"]
        if word_count(chosen) <= SHORT_CHOSEN_WORDS:
            rows.append({"prompt": prompt["messages"], "chosen": [{"role": "assistant", "content": chosen}],
                         "rejected": [{"role": "assistant", "content": rejected}]})
    return rows


def test_a_length_preference_makes_held_out_answers_shorter(bundled_model_dir, tmp_path):
    # Given the demo history's decided pairs of the model's own answers, judged by the "fewer words" rule
    history = json.loads((ROOT / "labeling" / "demo" / "history.json").read_text())
    rows = _history_rows(history)[:32]
    assert len(rows) == 32, "the shipped history must hold enough short chosen answers to train on"

    # When a DPO adapter trains on them for a few steps
    result = train(
        model_path=str(bundled_model_dir), rows=rows, output_dir=str(tmp_path),
        settings=TrainSettings(max_steps=8, learning_rate=1e-3, per_device_batch_size=2, validation_fraction=0.0,
                               max_length=128, lora=LoraSettings(r=8, alpha=16)),
    )

    # Then greedy answers to 12 held-out prompts of the history are shorter with the adapter than without it
    heldout = [prompt["messages"] for prompt in history["prompts"] if prompt["split"] == "heldout"][:12]
    outputs = generate_for_versions(
        str(bundled_model_dir), {"base": None, "tuned": result.adapter_dir}, heldout,
        GenerationSettings(temperature=0, max_new_tokens=96), batch_size=12,
    )
    base_words = statistics.mean(word_count(s[0]) for s in outputs["base"])
    tuned_words = statistics.mean(word_count(s[0]) for s in outputs["tuned"])
    assert tuned_words < base_words, (base_words, tuned_words, outputs["tuned"])
