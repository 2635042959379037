"""The vLLM generation backend on a real GPU: one engine over the bundled SmolLM2-135M-Instruct with a LoRA adapter
served per request. Runs where CUDA and the vllm package both are (the lent GPU machine with requirements-vllm.txt
installed: `pytest -p no:django --noconftest tests/trainer/test_vllm_cuda.py`) and is skipped elsewhere; the
backend's request assembly and result conversion are tested on CPU in tests/trainer/test_generation_backends.py.

The real model rather than the tiny random one: vLLM's attention kernels need a real head size (the tiny model's
is 8), and only a real model ends an answer by itself, which the finish reasons below rely on."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

pytestmark = pytest.mark.skipif(
    not (torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None),
    reason="needs a CUDA GPU and the vllm package (requirements-vllm.txt)",
)

STORY = [{"role": "user", "content": "Write a long story about a lighthouse keeper and a storm."}]
SUM = [{"role": "user", "content": "What is 2+2? Reply with only the number."}]
CAPITAL = [{"role": "user", "content": "What is the capital of France? Reply with one word."}]
PROMPTS = [STORY, SUM, CAPITAL]


@pytest.fixture(scope="module")
def model_dir() -> Path:
    from training.base_models import convert_bundled_model

    models = os.environ.get("PREFTUNE_MODELS_DIR") or str(Path(__file__).resolve().parents[2] / "var" / "models")
    return convert_bundled_model(Path(models) / "smollm2-135m-instruct")


@pytest.fixture(scope="module")
def adapter(model_dir, tmp_path_factory) -> str:
    from training.base_models import random_lora_adapter

    return str(random_lora_adapter(model_dir, tmp_path_factory.mktemp("adapters") / "tuned", seed=1, r=8, scale=5.0))


def test_vllm_writes_base_and_tuned_outputs_with_why_each_ended(model_dir, adapter):
    from training.trainer.generation_backends import resolve_backend
    from training.trainer.generation_settings import GenerationSettings
    from training.trainer.version_generation import generate_for_versions

    assert resolve_backend("auto") == "vllm", "auto picks vLLM where it can run"
    # Sample 0 greedy, sample 1 drawn at temperature 1.0: one engine start covers both kinds of decoding.
    settings = GenerationSettings(temperature=0.0, alt_temperature=1.0, top_p=0.9, max_new_tokens=24, seed=0, n=2)
    batches = []

    texts = generate_for_versions(
        str(model_dir), {"base": None, "tuned": adapter}, PROMPTS, settings, batch_size=8, backend="vllm",
        on_batch_done=lambda *args: batches.append(args),
    )

    assert [(name, indices, k) for name, indices, k, _, _ in batches] == [
        ("base", [0, 1, 2], 0), ("base", [0, 1, 2], 1), ("tuned", [0, 1, 2], 0), ("tuned", [0, 1, 2], 1),
    ]
    assert set(texts) == {"base", "tuned"}
    assert all(len(samples) == 2 for samples in texts["base"] + texts["tuned"])
    assert all(text.strip() for samples in texts["base"] for text in samples), "the real model answers every prompt"
    reasons = {(name, k): r for name, _, k, _, r in batches}
    assert all(set(r) <= {"stop", "length"} for r in reasons.values())
    # A long story does not fit in 24 tokens: cut off, recorded as truncated. Short answers end by themselves.
    assert reasons[("base", 0)][0] == "length"
    assert "stop" in reasons[("base", 0)][1:], reasons
    for name, indices, k, batch_texts, _ in batches:
        assert batch_texts == [texts[name][i][k] for i in indices]
    # The adapter is served: the tuned version writes something else than the base.
    assert [s[0] for s in texts["tuned"]] != [s[0] for s in texts["base"]]


def test_vllm_answers_as_the_transformers_path_does_and_frees_the_gpu_for_the_next_engine(model_dir):
    from training.trainer.generation_settings import GenerationSettings
    from training.trainer.version_generation import generate_for_versions

    settings = GenerationSettings(temperature=0.0, max_new_tokens=8, seed=0)
    on_vllm = generate_for_versions(str(model_dir), {"base": None}, [SUM, CAPITAL], settings, backend="vllm")
    free, total = torch.cuda.mem_get_info()
    on_transformers = generate_for_versions(str(model_dir), {"base": None}, [SUM, CAPITAL], settings, backend="transformers")

    # Closing the engine gave its memory back (it holds 90% of the GPU while it runs).
    assert free > 0.5 * total, f"{free / 2**30:.1f} of {total / 2**30:.1f} GiB free after the engine closed"
    # Same prompt ids, same greedy choice: the first word of each short answer agrees (bf16 kernels differ, so
    # later tokens may not).
    for vllm_samples, hf_samples in zip(on_vllm["base"], on_transformers["base"], strict=True):
        assert vllm_samples[0].split()[:1] == hf_samples[0].split()[:1], (vllm_samples, hf_samples)
    # A second engine in the same process (the next job on a worker) starts and answers.
    again = generate_for_versions(str(model_dir), {"base": None}, [SUM], settings, backend="vllm")
    assert again["base"][0][0].strip()
