"""Two data-parallel CPU processes (torch's launcher, gloo) train the same curve as one process with the same
global batch: the several-GPU path, tested where there is no GPU."""

from __future__ import annotations

import json
from pathlib import Path

from tests.trainer.conftest import make_dpo_rows
from training.trainer.child import RunSpec
from training.trainer.process import run_supervised
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


def _train(model_dir: Path, out: Path, **settings) -> tuple[dict, dict[int, float]]:
    out.mkdir()
    rows = make_dpo_rows(16)
    (out / "rows.json").write_text(json.dumps(rows))
    spec = RunSpec(
        model_path=str(model_dir), rows_path=str(out / "rows.json"), rows_hash=rows_hash(rows),
        settings={**COMMON, **settings}, output_dir=str(out), events_path=str(out / "events.jsonl"),
        num_processes=settings.get("num_processes", 1),
    )
    losses: dict[int, float] = {}
    ended = run_supervised(
        spec,
        on_progress=lambda e: losses.update({e["step"]: e["metrics"]["loss"]}) if e["kind"] == "train" else None,
        should_cancel=lambda: False, still_ours=lambda: True,
    )
    assert ended.result is not None, ended.error
    return ended.result, losses


def test_two_cpu_processes_match_one_process_with_the_same_global_batch(tiny_model_dir, tmp_path):
    one, one_losses = _train(tiny_model_dir, tmp_path / "one", per_device_batch_size=4)
    two, two_losses = _train(tiny_model_dir, tmp_path / "two", per_device_batch_size=2, num_processes=2)

    assert one["steps"] == two["steps"] == 4
    assert sorted(one_losses) == sorted(two_losses) == [1, 2, 3, 4]
    differences = {step: abs(one_losses[step] - two_losses[step]) for step in one_losses}
    print(f"one process {one_losses}\ntwo processes {two_losses}\nlargest difference {max(differences.values()):.2e}")
    assert max(differences.values()) < TOLERANCE, (one_losses, two_losses)
    # The curve moved: the check compares training, not four copies of the starting loss.
    assert one_losses[4] != one_losses[1]
    assert Path(two["adapter_dir"], "adapter_model.safetensors").is_file()
    assert (one["world_size"], two["world_size"]) == (1, 2)
