"""TRL's chunked LM head against the app's CPU head (training.trainer.cpu_head): the same DPO steps on the bundled
model (or --model, e.g. the tiny test model), seconds per step and losses. Prints figures; asserts nothing.

    .venv/bin/python bench/lm_head_cpu.py --steps 6
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _run(head: str, model_path: str, steps: int) -> tuple[float, list[float]]:
    from tests.trainer.conftest import make_dpo_rows
    from training.trainer import TrainSettings, core, train
    from training.trainer.config import LoraSettings
    from training.trainer.cpu_head import plain_lm_head_on_cpu

    step_times: list[float] = []
    losses: list[float] = []
    last = [time.perf_counter()]

    def progress(event) -> None:  # noqa: ANN001
        if event.kind == "train":
            now = time.perf_counter()
            step_times.append(now - last[0])
            last[0] = now
            losses.append(float(event.metrics.get("loss", float("nan"))))

    # The core swaps the app's head in on a CPU; for TRL's own, it is told it is not on one.
    core.plain_lm_head_on_cpu = plain_lm_head_on_cpu if head == "app" else (lambda enabled: plain_lm_head_on_cpu(False))
    try:
        settings = TrainSettings(max_steps=steps, per_device_batch_size=4, max_length=256, validation_fraction=0.0,
                                 learning_rate=1e-3, lora=LoraSettings(r=8, alpha=16))
        train(model_path=model_path, rows=make_dpo_rows(4 * steps), output_dir=tempfile.mkdtemp(), settings=settings,
              progress=progress)
    finally:
        core.plain_lm_head_on_cpu = plain_lm_head_on_cpu
    # The first step carries the set-up (reference log-probs, data loading): leave it out of the pace.
    return statistics.median(step_times[1:]), losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--model", default=str(ROOT / "var" / "models" / "smollm2-135m-instruct"))
    options = parser.parse_args()
    results = {}
    for head in ("trl", "app", "trl", "app"):  # alternated, so a warming machine favours neither
        pace, losses = _run(head, options.model, options.steps)
        results.setdefault(head, []).append((pace, losses))
        print(f"{head:5}: {pace:.2f} s/step (median, steps 2-{options.steps}); losses {[round(x, 4) for x in losses]}")
    trl = statistics.mean(p for p, _ in results["trl"])
    app = statistics.mean(p for p, _ in results["app"])
    diff = max(abs(a - b) for a, b in zip(results["trl"][0][1], results["app"][0][1], strict=True))
    print(f"app / trl: {app / trl:.2f}x the time a step; largest loss difference {diff:.2e}")


if __name__ == "__main__":
    main()
