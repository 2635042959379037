"""The GPU paths on one CUDA device: LoRA (bf16 compute) against QLoRA (4-bit NF4 base), the trainer as a child
process, and batched generation, base and tuned. Prints tokens/s, steps/s and peak GPU memory. A figure, not a test.

    python bench/gpu_paths.py                      # the bundled model, converted under var/models
    python bench/gpu_paths.py --random-weights     # same architecture and size, random weights (no weights to ship)

Training: synthetic preference pairs of realistic length (bench/train_core_vs_trl.py), the same settings for
both modes; tokens/s is TRL's running token count over transformers' training-loop time. Generation: 64 chat
prompts in batches of 32, 128 new tokens sampled; tokens/s counts the tokens actually generated.
vLLM is used when installed; otherwise the batched transformers path, and this says so.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

from bench.generation_batched_vs_loop import make_prompts  # noqa: E402
from bench.train_core_vs_trl import synthetic_pairs  # noqa: E402

DEFAULT_MODEL = ROOT / "var" / "models" / "smollm2-135m-instruct"


def random_copy(model_dir: Path, into: Path) -> Path:
    """The same architecture with random weights, beside the real tokenizer and chat template."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    into.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (model_dir / name).is_file():
            shutil.copy(model_dir / name, into / name)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir), dtype=torch.float32)
    model.save_pretrained(into, safe_serialization=True)
    return into


def bench_training(model: str, quantization: str, steps: int, out: Path) -> dict:
    import torch

    from training.trainer import TrainSettings, train

    settings = TrainSettings(
        max_steps=steps, per_device_batch_size=8, max_length=512, validation_fraction=0.0, learning_rate=5e-4,
        save_steps=10_000, quantization=quantization, sft_weight=1.0, precompute_ref_log_probs=True,
    )
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    result = train(model_path=model, rows=synthetic_pairs(8 * steps), settings=settings, output_dir=str(out))
    wall = time.perf_counter() - started
    runtime = result.train_metrics.get("train_runtime") or wall
    return {
        "mode": "QLoRA 4-bit NF4" if quantization == "4bit" else "LoRA, bf16 compute",
        "steps": result.steps,
        "tokens_per_s": round((result.tokens_seen or 0) / runtime, 1),
        "steps_per_s": round(result.steps / runtime, 3),
        "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20),
        "wall_s": round(wall, 1),
        "final_loss": round(result.train_metrics.get("loss", float("nan")), 4),
        "adapter_dir": result.adapter_dir,
    }


def bench_child(model: str, steps: int, out: Path) -> dict:
    from training.trainer.child import RunSpec
    from training.trainer.process import run_supervised
    from training.trainer.rows import rows_hash

    rows = synthetic_pairs(8 * steps)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rows.json").write_text(json.dumps(rows))
    spec = RunSpec(
        model_path=model, rows_path=str(out / "rows.json"), rows_hash=rows_hash(rows),
        settings={"max_steps": steps, "per_device_batch_size": 8, "max_length": 512, "validation_fraction": 0.0,
                  "learning_rate": 5e-4, "save_steps": 10_000},
        output_dir=str(out), events_path=str(out / "events.jsonl"),
    )
    seen: list[int] = []
    started = time.perf_counter()
    ended = run_supervised(spec, on_progress=lambda events: seen.extend(e["step"] for e in events), should_cancel=lambda: False,
                           still_ours=lambda: True, cuda=True)
    return {
        "mode": "child process (python -m training.trainer)",
        "ok": ended.result is not None and not ended.result["cancelled"],
        "steps": ended.result["steps"] if ended.result else None,
        "progress_events": len(seen),
        "wall_s": round(time.perf_counter() - started, 1),
        "error": ended.error[-600:],
    }


def bench_generation(model: str, adapter: str | None) -> dict:
    import torch

    from training.trainer.generation import adapter_disabled, generate_outputs, load_for_generation

    loaded, tokenizer = load_for_generation(model, adapter)
    prompts = make_prompts(64)
    figures = {}
    for label in ("base", "tuned") if adapter else ("base",):
        context = adapter_disabled(loaded) if label == "base" and adapter else _nothing()
        with context:
            generate_outputs(loaded, tokenizer, prompts[:32], max_new_tokens=16, batch_size=32)  # warm-up, same shapes
            torch.cuda.synchronize()
            started = time.perf_counter()
            outputs = generate_outputs(loaded, tokenizer, prompts, max_new_tokens=128, batch_size=32)
            torch.cuda.synchronize()
            elapsed = time.perf_counter() - started
        tokens = sum(len(tokenizer(o.text, add_special_tokens=False)["input_ids"]) for o in outputs)
        figures[label] = {"tokens_per_s": round(tokens / elapsed, 1), "tokens": tokens, "s": round(elapsed, 2)}
    backend = "vllm" if importlib.util.find_spec("vllm") else "transformers (vLLM not installed here)"
    return {"backend": backend, "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20), **figures}


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--random-weights", action="store_true", help="random weights of the same architecture")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        sys.exit("bench/gpu_paths.py needs a CUDA GPU.")
    work = Path(tempfile.mkdtemp(prefix="preftune-gpu-"))
    model = str(random_copy(Path(args.model), work / "model")) if args.random_weights else args.model
    print(f"GPU: {torch.cuda.get_device_name()}  torch {torch.__version__}  model {args.model}"
          f"{' (random weights)' if args.random_weights else ''}", flush=True)
    figures: dict = {"gpu": torch.cuda.get_device_name(), "random_weights": args.random_weights, "training": []}
    for quantization in ("none", "4bit"):
        try:
            row = bench_training(model, quantization, args.steps, work / f"train-{quantization}")
        except Exception as exc:  # noqa: BLE001 - report and go on to the next figure
            row = {"mode": quantization, "error": f"{type(exc).__name__}: {exc}"[:600]}
        figures["training"].append(row)
        print(json.dumps(row), flush=True)
    figures["child"] = bench_child(model, 10, work / "child")
    print(json.dumps(figures["child"]), flush=True)
    adapter = next((r.get("adapter_dir") for r in figures["training"] if r.get("adapter_dir")), None)
    figures["generation"] = bench_generation(model, adapter)
    print(json.dumps(figures["generation"]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
