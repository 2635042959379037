"""The alignment loop's training core without the app: candidates → simulated votes → DPO/KTO → held-out
judged blind by the same rule, for several training configurations in one process. It is how the launch
form's automatic defaults were chosen; `bench/alignment_loop.py` runs the same loop through the app.

    .venv/bin/python bench/alignment_sweep.py --runs "dpo:first:length:lr=5e-4,epochs=2" "kto:first:length:"
    python bench/alignment_sweep.py --candidates 4 --runs "dpo:all:bullets:" "dpo:extremes:length:"   # GPU: bf16

Prints, per rule and configuration: rows, validation accuracy at the kept checkpoint, held-out win rate of
tuned over base by the rule (ties half) with a 95% interval over prompts, mean words, and time per stage.
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
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

from alignment_prompts import alignment_prompts  # noqa: E402
from simulated_annotators import RULES, is_degenerate, judge, thumbs, word_count  # noqa: E402


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def parse_config(text: str) -> dict[str, float]:
    names = {"lr": "learning_rate", "epochs": "num_train_epochs", "beta": "beta", "ls": "label_smoothing",
             "r": "r", "steps": "max_steps", "sft": "sft_weight"}
    out: dict[str, float] = {}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        out[names[key.strip()]] = float(value)
    return out


def dpo_rows(rule, prompts, candidates, *, pairing: str, rng: random.Random, noise: float) -> list[dict]:
    rows = []
    for prompt, samples in zip(prompts, candidates, strict=True):
        texts = [t for t in dict.fromkeys(samples) if t.strip()]
        if len(texts) < 2:
            continue
        if pairing == "extremes":
            ordered = sorted(texts, key=word_count)
            pairs = [(ordered[0], ordered[-1])]
        elif pairing == "all":
            pairs = [(a, b) for i, a in enumerate(texts) for b in texts[i + 1 :]]
        else:  # first two
            pairs = [(texts[0], texts[1])]
        for a, b in pairs:
            vote = judge(rule, a, b, rng=rng, noise=noise)
            if vote not in ("a", "b"):
                continue
            chosen, rejected = (a, b) if vote == "a" else (b, a)
            rows.append({"prompt": _user(prompt), "chosen": _assistant(chosen), "rejected": _assistant(rejected)})
    return rows


def kto_rows(rule, prompts, candidates, *, rng: random.Random, noise: float) -> list[dict]:
    return [
        {"prompt": _user(p), "completion": _assistant(t), "label": thumbs(rule, t, rng=rng, noise=noise)}
        for p, samples in zip(prompts, candidates, strict=True)
        for t in dict.fromkeys(samples)
        if t.strip()
    ]


def held_out_win_rate(rule, base: list[list[str]], tuned: list[list[str]]) -> tuple[float, float, float, int]:
    from training.trainer.win_rates import paired_win_rate

    outcomes = []
    for i, (bs, ts) in enumerate(zip(base, tuned, strict=True)):
        for b, t in zip(bs, ts, strict=True):
            vote = judge(rule, t, b, rng=random.Random(0))
            outcomes.append((i, 1.0 if vote == "a" else 0.0 if vote == "b" else 0.5))  # tie and both-bad: half
    result = paired_win_rate(outcomes, rounds=1000)
    return result.rate, result.low, result.high, len(outcomes)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "var/models/smollm2-135m-instruct"))
    parser.add_argument("--train-prompts", type=int, default=200)
    parser.add_argument("--heldout", type=int, default=30)
    parser.add_argument("--samples", type=int, default=3, help="held-out samples per prompt and version")
    parser.add_argument("--candidates", type=int, default=2, help="candidates per train prompt")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--candidate-temperature", type=float, default=1.0)
    parser.add_argument("--noise", type=float, default=0.0)
    parser.add_argument("--batch-size", type=int, default=32, help="generation batch size")
    parser.add_argument(
        "--runs", nargs="+", default=["dpo:first:length:"],
        help='method:pairing:rule:config, e.g. "dpo:first:length:lr=5e-4,epochs=2" (pairing first|all|extremes; '
        "an empty config is automatic)",
    )
    return parser.parse_args()


def _base_outputs(args: argparse.Namespace, train_prompts: list[str],
                  heldout_prompts: list[str]) -> tuple[list[list[str]], list[list[str]]]:
    """The base model's candidates for the train prompts and its samples for the held-out ones."""
    from training.trainer.generation_settings import GenerationSettings
    from training.trainer.version_generation import generate_for_versions

    started = time.monotonic()
    candidates = generate_for_versions(
        args.model, {"base": None}, [_user(p) for p in train_prompts],
        GenerationSettings(temperature=args.candidate_temperature, top_p=0.95, max_new_tokens=args.max_new_tokens,
                           seed=0, n=args.candidates),
        batch_size=args.batch_size,
    )["base"]
    flat = [t for s in candidates for t in s]
    print(f"candidates: {len(flat)} in {time.monotonic() - started:.0f}s, mean {statistics.mean(map(word_count, flat)):.0f} words", flush=True)
    started = time.monotonic()
    base_heldout = generate_for_versions(
        args.model, {"base": None}, [_user(p) for p in heldout_prompts],
        GenerationSettings(temperature=0.7, top_p=0.9, max_new_tokens=args.max_new_tokens, seed=100, n=args.samples),
        batch_size=args.batch_size,
    )["base"]
    print(f"base held-out: {args.heldout}x{args.samples} in {time.monotonic() - started:.0f}s", flush=True)
    return candidates, base_heldout


def _train_settings(method: str, config: str) -> Any:  # noqa: ANN401
    """The trainer's settings for a run's ``config`` (empty: automatic)."""
    from training.trainer.config import LoraSettings, TrainSettings

    values = parse_config(config)
    r = int(values.pop("r", 16))
    steps = int(values.pop("max_steps", -1))
    settings = TrainSettings(method=method, max_length=512, lora=LoraSettings(r=r, alpha=2 * r), max_steps=steps,
                             **{k: v for k, v in values.items()})
    if values.get("label_smoothing", 0) > 0:
        settings.loss_type = "robust"
    return settings


def _sweep_run(args: argparse.Namespace, spec: str, train_prompts: list[str], heldout_prompts: list[str],
               candidates: list[list[str]], base_heldout: list[list[str]]) -> None:
    """One ``--runs`` entry: rows voted by its rule, training, held-out samples of the tuned model, one result line."""
    from training.trainer.core import train
    from training.trainer.generation_settings import GenerationSettings
    from training.trainer.rows import RowsError
    from training.trainer.version_generation import generate_for_versions

    method, pairing, rule_name, config = (spec.split(":", 3) + [""] * 4)[:4]
    rule = RULES[rule_name]
    rng = random.Random(7)
    if method == "dpo":
        rows = dpo_rows(rule, train_prompts, candidates, pairing=pairing, rng=rng, noise=args.noise)
    else:
        usable = [c[:2] for c in candidates] if pairing == "first" else candidates
        rows = kto_rows(rule, train_prompts, usable, rng=rng, noise=args.noise)
    base_ok = statistics.mean(rule.satisfied(t) for s in base_heldout for t in s)
    print(f"\n== {method} {pairing} {rule_name} ({rule.description}): {len(rows)} rows; base held-out satisfies {base_ok:.0%}", flush=True)
    if len(rows) < 4:
        print("   too few rows to train: the candidates never differ by this rule", flush=True)
        return
    settings = _train_settings(method, config)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as out:
        try:
            result = train(model_path=args.model, rows=rows, settings=settings, output_dir=out)
        except RowsError as exc:
            print(f"   cannot train: {exc}", flush=True)
            return
        trained = time.monotonic() - started
        started = time.monotonic()
        tuned = generate_for_versions(
            args.model, {"tuned": result.adapter_dir}, [_user(p) for p in heldout_prompts],
            GenerationSettings(temperature=0.7, top_p=0.9, max_new_tokens=args.max_new_tokens, seed=100, n=args.samples),
            batch_size=args.batch_size,
        )["tuned"]
    _print_result(rule, config, result, base_heldout, tuned, trained=trained, generation_started=started)


def _print_result(rule: Any, config: str, result: Any, base_heldout: list[list[str]], tuned: list[list[str]], *,  # noqa: ANN401
                  trained: float, generation_started: float) -> None:
    rate, low, high, n = held_out_win_rate(rule, base_heldout, tuned)
    val = result.outcome.get("validation", {})
    acc = val.get("rewards/accuracies", val.get("ranking_accuracy"))
    words_b = statistics.mean(word_count(t) for s in base_heldout for t in s)
    words_t = statistics.mean(word_count(t) for s in tuned for t in s)
    short = sum(1 for s in tuned for t in s if is_degenerate(t))
    used = result.settings
    print(
        f"[{config or 'auto'}] lr {used.learning_rate:g} epochs {used.num_train_epochs:g} steps {result.steps} kept {result.outcome.get('kept_step')}"
        f" | val acc {acc if acc is None else round(acc, 3)} | win {rate:.1%} [{low:.1%}, {high:.1%}] of {n}"
        f" | words {words_b:.0f} -> {words_t:.0f} (degenerate: {short}) | satisfies {statistics.mean(rule.satisfied(t) for x in tuned for t in x):.0%}"
        f" | train {trained:.0f}s gen {time.monotonic() - generation_started:.0f}s",
        flush=True,
    )
    print("   e.g.:", repr(tuned[0][0][:200]), "|", repr(tuned[1][0][:200]), flush=True)


def main() -> None:
    args = parse_args()

    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device {device} {torch.cuda.get_device_name(0) if device == 'cuda' else ''} torch {torch.__version__}", flush=True)
    prompts = alignment_prompts(args.train_prompts + args.heldout, seed=1)
    train_prompts, heldout_prompts = prompts[: args.train_prompts], prompts[args.train_prompts :]
    candidates, base_heldout = _base_outputs(args, train_prompts, heldout_prompts)
    for spec in args.runs:
        _sweep_run(args, spec, train_prompts, heldout_prompts, candidates, base_heldout)

if __name__ == "__main__":
    main()
