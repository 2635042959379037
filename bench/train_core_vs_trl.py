"""Does the app's training core cost anything over a plain TRL DPO script? Prints steps/s for both.

    .venv/bin/python bench/train_core_vs_trl.py --steps 4
    .venv/bin/python bench/train_core_vs_trl.py --tiny --steps 10 --precompute-ref --group-by-length
    .venv/bin/python bench/train_core_vs_trl.py --child --steps 4 --repeat 2   # the core as the worker runs it

Both runs use the same model, rows (32 synthetic pairs of realistic length), LoRA shape and
trainer settings; steps/s is transformers' own `train_steps_per_second` (the training loop only,
excluding model loading and tokenisation), wall time is end to end. A figure, not a test.

With --child each contender runs in a fresh Python process: the core as the worker starts it
(`python -m training.trainer` under `run_supervised`), the plain script as a user runs it
(`python <this file> --plain-trl SPEC`). In one shared process whichever runs second finds torch's
kernels and allocator warm, which is worth about a tenth of the steps/s in a 4-step run on CPU;
a child process never is, so it is compared with a plain script that is not either.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

WORDS = [
    "the",
    "model",
    "should",
    "answer",
    "clearly",
    "and",
    "helpfully",
    "with",
    "concrete",
    "steps",
    "examples",
    "and",
    "a",
    "short",
    "summary",
    "while",
    "avoiding",
    "needless",
    "repetition",
    "vague",
    "claims",
    "and",
    "unsupported",
    "statements",
    "about",
    "data",
    "training",
    "evaluation",
    "users",
    "often",
    "ask",
    "about",
    "cooking",
    "travel",
    "programming",
    "history",
    "science",
    "health",
    "money",
    "and",
    "writing",
]


def synthetic_pairs(n: int, seed: int = 0) -> list[dict]:
    """n DPO rows: ~30-word prompts, ~120-word chosen and ~60-word rejected answers."""
    rng = random.Random(seed)

    def text(k: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(k)).capitalize() + "."

    return [
        {
            "prompt": [{"role": "user", "content": text(rng.randint(20, 40))}],
            "chosen": [{"role": "assistant", "content": text(rng.randint(80, 160))}],
            "rejected": [{"role": "assistant", "content": text(rng.randint(30, 90))}],
        }
        for _ in range(n)
    ]


def run_core(model_path: str, rows: list[dict], settings, out: str) -> tuple[float, float]:
    from training.trainer import train

    started = time.monotonic()
    result = train(model_path=model_path, rows=rows, settings=settings, output_dir=out)
    return result.train_metrics["train_steps_per_second"], time.monotonic() - started


def run_child(model_path: str, rows: list[dict], settings, out: str) -> tuple[float, float]:
    """The core as the worker runs it: `python -m training.trainer` in a child process, events over a file."""
    import json

    from training.trainer.child import RunSpec
    from training.trainer.process import run_supervised
    from training.trainer.rows import rows_hash

    started = time.monotonic()
    Path(out).mkdir(parents=True, exist_ok=True)
    rows_path = Path(out) / "rows.json"
    rows_path.write_text(json.dumps(rows))
    spec = RunSpec(
        model_path=model_path, rows_path=str(rows_path), rows_hash=rows_hash(rows), settings=settings.to_dict(),
        output_dir=out, events_path=str(Path(out) / "events.jsonl"),
    )
    ended = run_supervised(spec, on_progress=lambda events: None, should_cancel=lambda: False, still_ours=lambda: True)
    if ended.result is None:
        raise RuntimeError(ended.error)
    return ended.result["train_metrics"]["train_steps_per_second"], time.monotonic() - started


def run_plain_trl_child(model_path: str, rows: list[dict], settings, out: str) -> tuple[float, float]:
    """The plain TRL script in its own fresh process, as a user would run it."""
    import json
    import subprocess

    started = time.monotonic()
    Path(out).mkdir(parents=True, exist_ok=True)
    spec = Path(out) / "plain-spec.json"
    rows_path = Path(out) / "rows.json"
    rows_path.write_text(json.dumps(rows))
    spec.write_text(json.dumps({"model_path": model_path, "rows_path": str(rows_path), "settings": settings.to_dict(),
                                "out": out}))
    done = subprocess.run(
        [sys.executable, __file__, "--plain-trl", str(spec)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"the plain TRL child failed:\n{done.stderr[-2000:]}")
    steps_per_second = json.loads(done.stdout.strip().splitlines()[-1])["train_steps_per_second"]
    return steps_per_second, time.monotonic() - started


def plain_trl_child_main(spec_path: str) -> None:
    import json

    from training.trainer import TrainSettings

    spec = json.loads(Path(spec_path).read_text())
    rows = json.loads(Path(spec["rows_path"]).read_text())
    settings = TrainSettings.from_dict(spec["settings"])
    steps_per_second, _ = run_plain_trl(spec["model_path"], rows, settings, spec["out"])
    print(json.dumps({"train_steps_per_second": steps_per_second}))


def run_plain_trl(model_path: str, rows: list[dict], settings, out: str) -> tuple[float, float]:
    """The script a TRL user would write, with the same settings (CPU: fp32, no checkpointing)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    started = time.monotonic()
    on_cuda = torch.cuda.is_available()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    # The core's own choice (training/trainer/device.py): bf16 base weights on a bf16 GPU, fp32 on CPU.
    bf16 = on_cuda and torch.cuda.is_bf16_supported()
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.bfloat16 if bf16 else torch.float32)
    args = DPOConfig(
        output_dir=out,
        learning_rate=settings.learning_rate,
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.per_device_batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        beta=settings.beta,
        loss_type=[settings.resolved_loss_type],
        max_length=settings.max_length,
        precompute_ref_log_probs=settings.precompute_ref_log_probs,
        seed=settings.seed,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        bf16=bf16,
        gradient_checkpointing=on_cuda,
        use_cpu=not on_cuda,
        dataloader_pin_memory=on_cuda,
    )
    peft_config = LoraConfig(
        r=settings.lora.r,
        lora_alpha=settings.lora.alpha,
        lora_dropout=settings.lora.dropout,
        target_modules=settings.lora.target_modules,
        task_type="CAUSAL_LM",
    )
    trainer = DPOTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    output = trainer.train()
    return output.metrics["train_steps_per_second"], time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "var" / "models" / "smollm2-135m-instruct"))
    parser.add_argument("--tiny", action="store_true", help="use a tiny random model instead (fast, shape only)")
    parser.add_argument("--random-weights", action="store_true",
                        help="--model's architecture with random weights (where its weights cannot be copied)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--precompute-ref", action="store_true")
    parser.add_argument("--group-by-length", action="store_true", help="app core only: TRL's DPO has no such option")
    parser.add_argument("--repeat", type=int, default=1, help="alternate the order this many times; medians reported")
    parser.add_argument("--child", action="store_true",
                        help="each contender in a fresh process: the core as the worker runs it, the plain script as a user does")
    parser.add_argument("--plain-trl", metavar="SPEC", help=argparse.SUPPRESS)  # internal: the plain side's child
    opts = parser.parse_args()
    if opts.plain_trl:
        plain_trl_child_main(opts.plain_trl)
        return

    from training.base_models import is_model_dir, tiny_random_model
    from training.trainer import TrainSettings

    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    if opts.tiny:
        model_path = str(tiny_random_model(work / "tiny"))
    elif opts.random_weights:
        from bench.gpu_paths import random_copy

        model_path = str(random_copy(Path(opts.model), work / "random"))
    else:
        model_path = opts.model
        if not is_model_dir(Path(model_path)):
            sys.exit(f"{model_path} is not a model folder: run `manage.py prepare_base_model` first, or pass --tiny.")

    settings = TrainSettings(
        max_steps=opts.steps,
        per_device_batch_size=opts.batch_size,
        max_length=opts.max_length,
        validation_fraction=0.0,  # the plain script has no validation split either
        precompute_ref_log_probs=opts.precompute_ref,
        group_by_length=opts.group_by_length,
        save_steps=10_000,  # no checkpoint writes inside the timed loop
        sft_weight=0.0,  # the plain script trains the sigmoid loss alone
    ).validate()
    rows = synthetic_pairs(opts.pairs)
    # Both sides train with the same resolved numbers (the core would choose the learning rate itself).
    settings, _ = settings.resolve(len(rows))

    print(
        f"model={model_path} pairs={len(rows)} steps={opts.steps} batch={opts.batch_size} "
        f"precompute_ref={opts.precompute_ref} group_by_length={opts.group_by_length} "
        f"{'each in a fresh process' if opts.child else 'both in this process'}"
    )
    # Read the weights once so neither contender pays for a cold disk.
    for weights in Path(model_path).glob("*.safetensors"):
        weights.read_bytes()
    results: dict[str, list[tuple[float, float]]] = {"trl": [], "core": []}
    for attempt in range(opts.repeat):
        order = ("trl", "core") if attempt % 2 == 0 else ("core", "trl")
        for name in order:
            if opts.child:
                runner = run_plain_trl_child if name == "trl" else run_child
            else:
                runner = run_plain_trl if name == "trl" else run_core
            results[name].append(runner(model_path, rows, settings, str(work / f"{name}-{attempt}")))
    trl_sps, trl_wall = (statistics.median(v) for v in zip(*results["trl"], strict=True))
    core_sps, core_wall = (statistics.median(v) for v in zip(*results["core"], strict=True))
    print(f"plain TRL{' (child)' if opts.child else ''} : {trl_sps:.4f} steps/s  ({trl_wall:.1f} s wall)  runs={[round(r[0], 4) for r in results['trl']]}")
    print(f"app core{' (child)' if opts.child else ''}  : {core_sps:.4f} steps/s  ({core_wall:.1f} s wall)  runs={[round(r[0], 4) for r in results['core']]}")
    print(f"core / TRL: {core_sps / trl_sps:.2f}x")


if __name__ == "__main__":
    main()
