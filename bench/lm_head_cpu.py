"""TRL's chunked LM head against a plain one on CPU: the same DPO steps on the bundled model, seconds per step and
losses. Prints figures; asserts nothing.

    .venv/bin/python bench/lm_head_cpu.py --steps 6
"""
from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _plain_head(model, *, temperature: float = 1.0, cast_lm_head_to_fp32: bool = False, outputs=("log_probs",)):  # noqa: ANN001, ARG001
    """Stands in for trl's add_fused_lm_head: the same outputs from full logits (more memory, no tiling)."""
    import torch
    from trl.trainer.utils import FusedCausalLMOutput

    original = model.forward

    @functools.wraps(type(model).forward)
    def forward(self, *args, fused_lm_head=False, labels=None, shift_labels=None, num_items_in_batch=None, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if not fused_lm_head:
            for name, value in (("labels", labels), ("shift_labels", shift_labels), ("num_items_in_batch", num_items_in_batch)):
                if value is not None:
                    kwargs[name] = value
            return original(*args, **kwargs)
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state
        if shift_labels is None:
            hidden, labels = hidden[:, :-1], labels[:, 1:]
        else:
            labels = shift_labels
        mask = labels != -100
        logits = self.get_output_embeddings()(hidden).float() / temperature
        log_softmax = logits.log_softmax(-1)
        log_probs = log_softmax.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1).masked_fill(~mask, 0)
        with torch.no_grad():
            entropy = -(log_softmax.exp() * log_softmax).sum(-1).masked_fill(~mask, 0) if "entropy" in outputs else None
            mean_logits = logits.mean(-1).masked_fill(~mask, 0) if "mean_logits" in outputs else None
            is_top1 = ((logits.argmax(-1) == labels) & mask) if "is_top1" in outputs else None
            log_sum_sq = (
                torch.logsumexp(2 * log_softmax, -1).masked_fill(~mask, 0) if "log_sum_sq_probs" in outputs else None
            )
        loss = -log_probs.sum() / (mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch)
        return FusedCausalLMOutput(
            loss=loss, log_probs=log_probs, entropy=entropy, log_sum_sq_probs=log_sum_sq, mean_logits=mean_logits,
            is_top1=is_top1, label_mask=mask, aux_loss=None,
        )

    model.forward = types.MethodType(forward, model)


def _run(head: str, model_path: str, steps: int) -> tuple[float, list[float]]:
    import trl.trainer.dpo_trainer as dpo_trainer

    from tests.trainer.conftest import make_dpo_rows
    from training.trainer import TrainSettings, train
    from training.trainer.config import LoraSettings

    real = dpo_trainer.add_fused_lm_head
    if head == "plain":
        dpo_trainer.add_fused_lm_head = _plain_head
    step_times: list[float] = []
    losses: list[float] = []
    last = [time.perf_counter()]

    def progress(event) -> None:  # noqa: ANN001
        if event.kind == "train":
            now = time.perf_counter()
            step_times.append(now - last[0])
            last[0] = now
            losses.append(float(event.metrics.get("loss", float("nan"))))

    try:
        settings = TrainSettings(max_steps=steps, per_device_batch_size=4, max_length=256, validation_fraction=0.0,
                                 learning_rate=1e-3, lora=LoraSettings(r=8, alpha=16))
        train(model_path=model_path, rows=make_dpo_rows(4 * steps), output_dir=tempfile.mkdtemp(), settings=settings,
              progress=progress)
    finally:
        dpo_trainer.add_fused_lm_head = real
    # The first step carries the set-up (reference log-probs, data loading): leave it out of the pace.
    return statistics.median(step_times[1:]), losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--model", default=str(ROOT / "var" / "models" / "smollm2-135m-instruct"))
    options = parser.parse_args()
    results = {}
    for head in ("fused", "plain", "fused", "plain"):  # alternated, so a warming machine favours neither
        pace, losses = _run(head, options.model, options.steps)
        results.setdefault(head, []).append((pace, losses))
        print(f"{head:5}: {pace:.2f} s/step (median, steps 2-{options.steps}); losses {[round(x, 4) for x in losses]}")
    fused = statistics.mean(p for p, _ in results["fused"])
    plain = statistics.mean(p for p, _ in results["plain"])
    diff = max(abs(a - b) for a, b in zip(results["fused"][0][1], results["plain"][0][1], strict=True))
    print(f"plain / fused: {plain / fused:.2f}x the time a step; largest loss difference {diff:.2e}")


if __name__ == "__main__":
    main()
