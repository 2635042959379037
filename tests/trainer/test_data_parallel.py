"""Two CPU processes (torch's launcher, gloo) train the same curve as one process with the same global batch, both
data parallel (a copy of the model each) and fully sharded (FSDP2, each process holding half of every weight): the
several-GPU paths, tested where there is no GPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.trainer.conftest import make_dpo_rows
from training.trainer.checkpoints import latest_checkpoint
from training.trainer.child import RunSpec
from training.trainer.process import ChildOutcome, run_supervised
from training.trainer.rows import rows_hash

# Same global batch (4 rows a step), no dropout and no token-weighted SFT term, so the per-step mean loss over
# the batch is the same number computed in one process or averaged over two.
COMMON = {
    "max_steps": 4,
    "learning_rate": 5e-3,
    "validation_fraction": 0.0,
    "max_length": 64,
    "sft_weight": 0.0,
    "save_steps": 2,
    "seed": 7,
    "precompute_ref_log_probs": False,  # several processes compute the reference with each step (see resolve)
    "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
}
TOLERANCE = 1e-3
# The trained LoRA weights, element by element: four Adam steps of at most about the learning rate (5e-3) each.
ADAPTER_TOLERANCE = 1e-4
# accelerate shards only across GPUs; this folder's sitecustomize lifts that gate in the test's trainer processes.
CPU_FSDP_SHIM = Path(__file__).resolve().parent / "cpu_fsdp"


def _run(model_dir: Path, out: Path, **settings) -> tuple[ChildOutcome, dict[int, float]]:
    out.mkdir()
    rows = make_dpo_rows(16)
    (out / "rows.json").write_text(json.dumps(rows))
    spec = RunSpec(
        model_path=str(model_dir), rows_path=str(out / "rows.json"), rows_hash=rows_hash(rows),
        settings={**COMMON, **settings}, output_dir=str(out), events_path=str(out / "events.jsonl"),
        num_processes=settings.get("num_processes", 1), sharding=settings.get("sharding", "none"),
    )
    losses: dict[int, float] = {}
    ended = run_supervised(
        spec,
        on_progress=lambda events: losses.update((e["step"], e["metrics"]["loss"]) for e in events if e["kind"] == "train"),
        should_cancel=lambda: False, still_ours=lambda: True,
    )
    return ended, losses


def _train(model_dir: Path, out: Path, **settings) -> tuple[dict, dict[int, float]]:
    ended, losses = _run(model_dir, out, **settings)
    assert ended.result is not None, ended.error
    return ended.result, losses


@pytest.fixture(scope="module")
def one_process(tiny_model_dir, tmp_path_factory) -> tuple[dict, dict[int, float]]:
    return _train(tiny_model_dir, tmp_path_factory.mktemp("one") / "run", per_device_batch_size=4)


def _largest_difference(one_losses: dict[int, float], two_losses: dict[int, float], label: str) -> float:
    assert sorted(one_losses) == sorted(two_losses) == [1, 2, 3, 4]
    differences = {step: abs(one_losses[step] - two_losses[step]) for step in one_losses}
    print(f"one process {one_losses}\n{label} {two_losses}\nlargest difference {max(differences.values()):.2e}")
    return max(differences.values())


def test_two_cpu_processes_match_one_process_with_the_same_global_batch(tiny_model_dir, one_process, tmp_path):
    one, one_losses = one_process
    two, two_losses = _train(tiny_model_dir, tmp_path / "two", per_device_batch_size=2, num_processes=2)

    assert one["steps"] == two["steps"] == 4
    assert _largest_difference(one_losses, two_losses, "two processes") < TOLERANCE, (one_losses, two_losses)
    # The curve moved: the check compares training, not four copies of the starting loss.
    assert one_losses[4] != one_losses[1]
    assert Path(two["adapter_dir"], "adapter_model.safetensors").is_file()
    assert (one["world_size"], two["world_size"]) == (1, 2)


def test_two_cpu_processes_sharding_the_model_match_one_process(tiny_model_dir, one_process, tmp_path, monkeypatch):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("PYTHONPATH", str(CPU_FSDP_SHIM))
    one, one_losses = one_process

    sharded, sharded_losses = _train(
        tiny_model_dir, tmp_path / "fsdp", per_device_batch_size=2, num_processes=2, sharding="fsdp"
    )

    assert sharded["steps"] == 4 and sharded["world_size"] == 2 and sharded["settings"]["sharding"] == "fsdp"
    assert _largest_difference(one_losses, sharded_losses, "two sharded processes") < TOLERANCE
    # Written by accelerate's FSDP checkpointing only: the run was sharded, not quietly data parallel.
    last = tmp_path / "fsdp" / "checkpoints" / "checkpoint-4"
    assert (last / "pytorch_model_fsdp.bin").is_file()
    assert latest_checkpoint(tmp_path / "fsdp") == str(last), "its optimizer.bin counts as a complete checkpoint"
    # The adapter was gathered from both shards into ordinary PEFT files that load on the plain base model ...
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), sharded["adapter_dir"])
    loaded = {name: p.detach() for name, p in model.named_parameters() if "lora_" in name}
    assert len(loaded) == 2 * 2 * 2, "A and B, for q_proj and v_proj, in both layers"
    # ... and hold the weights one process trained.
    whole, gathered = (load_file(Path(r["adapter_dir"], "adapter_model.safetensors")) for r in (one, sharded))
    assert sorted(whole) == sorted(gathered)
    largest = max((whole[k] - gathered[k]).abs().max().item() for k in whole)
    print(f"largest adapter weight difference {largest:.2e}")
    assert largest < ADAPTER_TOLERANCE
    assert max(t.abs().max().item() for k, t in gathered.items() if "lora_B" in k) > 0, "B starts at zero"


def test_a_sharded_run_is_refused_where_accelerate_cannot_shard(tiny_model_dir, tmp_path):
    ended, losses = _run(
        tiny_model_dir, tmp_path / "cpu", per_device_batch_size=2, num_processes=2, sharding="fsdp", max_steps=1
    )

    assert ended.result is None and losses == {}
    assert ended.error.startswith("SettingsError: Sharding (FSDP) needs CUDA GPUs: accelerate shards a model only "
                                  "across GPUs, and these 2 processes run on CPU"), ended.error
