"""Review generation: batched over one loaded base with adapters switched, vs one prompt at a time per model.

    .venv/bin/python bench/generation_batched_vs_loop.py                      # bundled SmolLM2-135M, 64 prompts
    .venv/bin/python bench/generation_batched_vs_loop.py --tiny               # tiny random model, seconds
    .venv/bin/python bench/generation_batched_vs_loop.py --prompts 32 --max-new-tokens 16 --batch-size 16

Both paths produce greedy completions of the same prompts from the base model and a "tuned" version (a
random LoRA adapter over it). Batched: `generate_for_versions` loads the base once, loads the adapter onto
it, and generates in left-padded batches with the adapter on, then off. Loop: for each model, load it
(base, or base + adapter) and generate prompt by prompt. Wall time includes model loading for both.
A figure, not a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

SUBJECTS = ["the sea", "a cat", "bread", "rain", "a bicycle", "the moon", "tea", "a garden", "snow", "a train",
            "music", "a river", "coffee", "a library", "autumn", "a bridge"]
ASKS = ["Write one sentence about {s}.", "Give two facts about {s}.", "Describe {s} to a child.",
        "What is the most surprising thing about {s}? Answer briefly and explain why it matters."]


def make_prompts(n: int) -> list[list[dict[str, str]]]:
    return [
        [{"role": "user", "content": ASKS[i % len(ASKS)].format(s=SUBJECTS[(i // len(ASKS)) % len(SUBJECTS)])}]
        for i in range(n)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="A tiny random model instead of the bundled SmolLM2.")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: what the trainer would choose).")
    args = parser.parse_args()

    import torch

    from training.base_models import convert_bundled_model, random_lora_adapter, tiny_random_model
    from training.trainer.generation import generate, load_for_generation
    from training.trainer.generation_settings import GenerationSettings
    from training.trainer.version_generation import generate_for_versions

    work = Path(tempfile.mkdtemp(prefix="bench-gen-"))
    bundled = ROOT / "var" / "models" / "smollm2-135m-instruct"
    if args.tiny:
        model_dir = tiny_random_model(work / "tiny", tokenizer_source=bundled if bundled.is_dir() else None)
    else:
        model_dir = convert_bundled_model(bundled)
    # A small scale keeps the "tuned" model close to the base, as a real adapter is; lengths stay comparable.
    adapter_dir = random_lora_adapter(model_dir, work / "adapter", seed=1, scale=0.3)
    prompts = make_prompts(args.prompts)
    settings = GenerationSettings(temperature=0.0, max_new_tokens=args.max_new_tokens, seed=0)
    versions = {"base": None, "tuned": str(adapter_dir)}
    print(f"model {model_dir.name}, {len(prompts)} prompts × 2 versions, {args.max_new_tokens} new tokens, "
          f"batch {args.batch_size}, torch threads {torch.get_num_threads()}")

    started = time.perf_counter()
    batched = generate_for_versions(str(model_dir), versions, prompts, settings, batch_size=args.batch_size, device=args.device)
    batched_s = time.perf_counter() - started

    started = time.perf_counter()
    looped: dict[str, list[str]] = {}
    for name, adapter in versions.items():
        model, tokenizer = load_for_generation(str(model_dir), adapter, device=args.device)
        looped[name] = [
            generate(model, tokenizer, [prompt], max_new_tokens=args.max_new_tokens, temperature=0.0, batch_size=1)[0]
            for prompt in prompts
        ]
        del model
    loop_s = time.perf_counter() - started

    same = sum(batched[name][i][0] == looped[name][i] for name in versions for i in range(len(prompts)))
    differ = sum(batched["base"][i][0] != batched["tuned"][i][0] for i in range(len(prompts)))
    print(f"batched, one loaded base, adapter switched: {batched_s:8.2f} s")
    print(f"one prompt at a time, a load per model:     {loop_s:8.2f} s")
    print(f"ratio (loop / batched):                     {loop_s / batched_s:8.2f}x")
    print(f"identical texts between the two paths: {same}/{2 * len(prompts)} (greedy; left padding can move a near-tie)")
    print(f"prompts where base and tuned differ: {differ}/{len(prompts)}")


if __name__ == "__main__":
    main()
