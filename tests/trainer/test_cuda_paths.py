"""The CUDA-only paths: QLoRA (4-bit NF4 base weights) and generation on the GPU. They run where CUDA is (the
lent GPU machine: `pytest -p no:django --noconftest tests/trainer/test_cuda_paths.py`); on a CPU machine the
refusal of QLoRA is tested instead (tests/trainer/test_core.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from training.base_models import tiny_random_model

    # PREFTUNE_TEST_TOKENIZER: a saved model folder to take the tokenizer from where the bundled package is absent.
    source = os.environ.get("PREFTUNE_TEST_TOKENIZER")
    return tiny_random_model(
        tmp_path_factory.mktemp("models") / "tiny-llama", tokenizer_source=Path(source) if source else None
    )


def _rows(n: int) -> list[dict]:
    return [
        {
            "prompt": [{"role": "user", "content": f"Say something about item {i}."}],
            "chosen": [{"role": "assistant", "content": f"Item {i} is useful, and here is why it matters."}],
            "rejected": [{"role": "assistant", "content": "No."}],
        }
        for i in range(n)
    ]


def test_qlora_loads_the_base_in_4bit_and_trains_an_adapter(tiny_model, tmp_path):
    import bitsandbytes as bnb

    from training.trainer import TrainSettings, choose_device, train
    from training.trainer.model_loading import _load_base_model

    settings = TrainSettings(
        max_steps=3, per_device_batch_size=2, learning_rate=5e-3, validation_fraction=0.25, max_length=64,
        quantization="4bit", save_steps=10,
    )
    base = _load_base_model(str(tiny_model), settings, choose_device())
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in base.modules())
    assert base.model.layers[0].self_attn.q_proj.weight.quant_state.nested, "double quantisation is on"
    del base

    result = train(model_path=str(tiny_model), rows=_rows(8), settings=settings, output_dir=str(tmp_path))

    assert result.steps == 3 and not result.cancelled
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert torch.isfinite(torch.tensor(result.train_metrics["loss"]))


def test_generation_runs_on_the_gpu_with_an_adapter(tiny_model, tmp_path):
    from training.trainer import TrainSettings, train
    from training.trainer.generation import generate_outputs, load_for_generation

    result = train(
        model_path=str(tiny_model), rows=_rows(6), output_dir=str(tmp_path),
        settings=TrainSettings(max_steps=2, per_device_batch_size=2, validation_fraction=0.0, max_length=64),
    )
    model, tokenizer = load_for_generation(str(tiny_model), result.adapter_dir)
    outputs = generate_outputs(model, tokenizer, [r["prompt"] for r in _rows(4)], max_new_tokens=8, batch_size=4)

    assert next(model.parameters()).device.type == "cuda"
    assert len(outputs) == 4 and all(o.finish_reason in ("stop", "length") for o in outputs)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="sharding needs two GPUs")
def test_two_gpus_shard_the_model_with_fsdp_and_train_an_adapter(tiny_model, tmp_path):
    import json

    from training.trainer.child import RunSpec
    from training.trainer.process import run_supervised
    from training.trainer.rows import rows_hash

    rows = _rows(16)
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    spec = RunSpec(
        model_path=str(tiny_model), rows_path=str(tmp_path / "rows.json"), rows_hash=rows_hash(rows),
        settings={"max_steps": 4, "per_device_batch_size": 2, "learning_rate": 5e-3, "validation_fraction": 0.25,
                  "max_length": 64, "save_steps": 2, "num_processes": 2, "sharding": "fsdp"},
        output_dir=str(tmp_path), events_path=str(tmp_path / "events.jsonl"), num_processes=2, sharding="fsdp",
    )

    # accelerate launch --use_fsdp, as a GPU worker starts it.
    ended = run_supervised(spec, on_progress=lambda events: None, should_cancel=lambda: False, still_ours=lambda: True,
                           cuda=True)

    assert ended.result is not None, ended.error
    assert ended.result["steps"] == 4 and ended.result["world_size"] == 2
    assert (tmp_path / "checkpoints" / "checkpoint-4" / "pytorch_model_fsdp.bin").is_file()
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
