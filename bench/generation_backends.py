"""Review generation on the two engines: the batched transformers path against vLLM, base and a tuned version.

    .venv/bin/python bench/generation_backends.py                          # bundled SmolLM2-135M, 256 prompts
    .venv/bin/python bench/generation_backends.py --prompts 1024 --max-new-tokens 128 --batch-size 256

Both run `generate_for_versions` on the same prompts, settings and adapter (a random LoRA adapter over the base),
sampled at temperature 0.7 with one sample per prompt and version. Wall time includes loading the model (and for
vLLM starting its engine), as a job pays it. Needs a CUDA GPU with vllm installed (requirements-vllm.txt); says why
and stops otherwise. A figure, not a test.
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

from bench.generation_batched_vs_loop import make_prompts  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64, help="prompts per batch, on both engines")
    args = parser.parse_args()

    from training.base_models import convert_bundled_model, random_lora_adapter
    from training.trainer.generation_backends import vllm_unavailable_reason
    from training.trainer.generation_settings import GenerationSettings
    from training.trainer.text import word_count
    from training.trainer.version_generation import generate_for_versions

    reason = vllm_unavailable_reason()
    if reason is not None:
        sys.exit(f"vLLM cannot run here: {reason}.")
    model_dir = convert_bundled_model(ROOT / "var" / "models" / "smollm2-135m-instruct")
    adapter_dir = random_lora_adapter(model_dir, Path(tempfile.mkdtemp(prefix="bench-backends-")) / "adapter", seed=1, scale=0.3)
    prompts = make_prompts(args.prompts)
    settings = GenerationSettings(temperature=0.7, top_p=0.9, max_new_tokens=args.max_new_tokens, seed=0)
    versions = {"base": None, "tuned": str(adapter_dir)}
    print(f"model {model_dir.name}, {len(prompts)} prompts × 2 versions, up to {args.max_new_tokens} new tokens, "
          f"batch {args.batch_size}")

    figures = {}
    for backend in ("transformers", "vllm"):
        reasons: list[str] = []
        started = time.perf_counter()
        texts = generate_for_versions(
            str(model_dir), versions, prompts, settings, batch_size=args.batch_size, backend=backend,
            on_batch_done=lambda *batch, into=reasons: into.extend(batch[4]),
        )
        seconds = time.perf_counter() - started
        cut = sum(r == "length" for r in reasons)
        words = sum(word_count(t[0]) for name in versions for t in texts[name])
        figures[backend] = seconds
        print(f"{backend:>12}: {seconds:8.2f} s, {cut}/{len(reasons)} cut off at the limit, {words} words written")
    print(f"ratio (transformers / vllm): {figures['transformers'] / figures['vllm']:.2f}x")


if __name__ == "__main__":
    main()
