"""Generation on CPU: rows that end leave the batch (the app's decoder) against model.generate, which keeps every
row until the batch's last one ends. Same prompts, settings and seed, alternated in one process.

    .venv/bin/python bench/generation_compacting.py                       # bundled SmolLM2-135M, 32 prompts, 384 tokens
    .venv/bin/python bench/generation_compacting.py --prompts 16 --max-new-tokens 128 --repeat 1

The prompts are the alignment bench's everyday questions, sampled as Generate candidates does by default
(temperature and top-p of the form, 384 new tokens). Prints the wall time of each pass, answers and generated
tokens per second, how many answers were cut off, and the ratio. Greedy decoding gives the same tokens on both
paths (tests/trainer/test_generation.py); sampled answers match until the first row of a batch ends, then differ
as two seeds would. A figure, not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=384)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2, help="passes of each path, alternated")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--top-p", type=float, default=0.9)
    args = parser.parse_args()

    import torch
    from alignment_prompts import alignment_prompts

    from training.base_models import convert_bundled_model
    from training.trainer.generation import generate_outputs, load_for_generation

    model_dir = convert_bundled_model(ROOT / "var" / "models" / "smollm2-135m-instruct")
    model, tokenizer = load_for_generation(str(model_dir), device="cpu")
    prompts = [[{"role": "user", "content": text}] for text in alignment_prompts(args.prompts, seed=11)]
    print(f"{len(prompts)} prompts, {args.max_new_tokens} new tokens, temperature {args.temperature}, top-p {args.top_p}, "
          f"batch {args.batch_size}, torch threads {torch.get_num_threads()}", flush=True)
    walls: dict[str, list[float]] = {"compacting": [], "model.generate": []}
    for turn in range(args.repeat):
        for name in (("compacting", "model.generate") if turn % 2 == 0 else ("model.generate", "compacting")):
            started = time.perf_counter()
            outputs = generate_outputs(model, tokenizer, prompts, max_new_tokens=args.max_new_tokens,
                                       temperature=args.temperature, top_p=args.top_p, seed=turn,
                                       batch_size=args.batch_size, compact=name == "compacting")
            wall = time.perf_counter() - started
            walls[name].append(wall)
            tokens = sum(len(tokenizer(o.text, add_special_tokens=False)["input_ids"]) for o in outputs)
            cut = sum(o.is_truncated for o in outputs)
            print(f"  {name:15s} pass {turn + 1}: {wall:7.1f} s, {len(outputs) / wall:5.2f} answers/s, "
                  f"{tokens / wall:6.1f} answer tokens/s, {cut} of {len(outputs)} cut off", flush=True)
    fast, slow = statistics.median(walls["compacting"]), statistics.median(walls["model.generate"])
    print(f"median wall: compacting {fast:.1f} s, model.generate {slow:.1f} s; compacting takes {fast / slow:.2f}x the time")


if __name__ == "__main__":
    main()
