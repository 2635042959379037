"""How many votes each labeling order needs: random order against uncertainty-first, with simulated annotators.

A pool of answer pairs varies in several ways at once (length, list layout, a polite opener, the word
"important"); a simulated annotator votes by one hidden rule (bench/simulated_annotators.py), so a reward model
must find which difference matters while the others are distractors. Both orders start from the same random
seed votes. Each round trains a reward model from the base on the votes so far (training.trainer.train, method
"reward", as a run launched from the form does), measures its pairwise accuracy on a separate test set judged by
the rule without noise, then adds the next votes: a random batch, or the pairs the current reward model scores
closest (the smallest |score gap|, the order Project.label_order "uncertain_first" serves annotators).

    python bench/label_order.py --rule polite --start 16 --step 16 --rounds 4

Prints accuracy with its 95% interval per number of votes for each order, and the votes each order needed to
reach the random order's final accuracy. Runs on the CPU in about 10 minutes with the defaults.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

from bench.simulated_annotators import RULES, judge  # noqa: E402

SUBJECTS = [
    "tides", "volcanoes", "bees", "glaciers", "comets", "coral reefs", "deserts", "owls", "rainbows", "earthquakes",
    "mushrooms", "thunder", "penguins", "fog", "lightning", "salt", "copper", "maple trees", "wolves", "clouds",
    "sand dunes", "whales", "frost", "magnets", "eclipses", "moss", "caves", "hurricanes", "honey", "ferns",
    "geysers", "otters", "amber", "pebbles", "auroras", "kelp", "flint", "swallows", "lava", "dew",
]
SENTENCES = [
    "{S} change slowly over many years.",
    "People have studied {s} for centuries.",
    "You can find {s} in many parts of the world.",
    "Scientists measure {s} with careful instruments.",
    "Many stories and songs mention {s}.",
    "The way {s} form depends on heat and water.",
    "Children often ask about {s} on long walks.",
    "Some {s} are easy to see, others are hidden.",
    "It is important to remember that {s} vary a lot.",
    "Photographers travel far to capture {s}.",
]
OPENERS = ["Sure! ", "Great question! ", "Happy to help. ", "Here is what I know. "]


def _answer(subject: str, rng: random.Random) -> str:
    count = rng.randint(1, 6)
    sentences = [s.format(s=subject, S=subject.capitalize()) for s in rng.sample(SENTENCES, count)]
    if rng.random() < 0.5:
        body = "\n".join(f"- {s}" for s in sentences) if count >= 2 else sentences[0]
    else:
        body = " ".join(sentences)
    return (rng.choice(OPENERS) if rng.random() < 0.5 else "") + body


def make_pairs(rule_name: str, subjects: list[str], per_subject: int, *, seed: int, noise: float) -> list[dict]:
    """DPO-format rows voted by the rule (ties left out, as a tie vote is); `noise` flips that share of votes."""
    rule, rng = RULES[rule_name], random.Random(seed)
    rows = []
    for subject in subjects:
        for _ in range(per_subject):
            first, second = _answer(subject, rng), _answer(subject, rng)
            vote = judge(rule, first, second, rng=rng, noise=noise)
            if vote not in ("a", "b"):
                continue
            chosen, rejected = (first, second) if vote == "a" else (second, first)
            rows.append({
                "prompt": [{"role": "user", "content": f"Tell me about {subject}."}],
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
            })
    return rows


def _train_and_measure(model_path: str, labeled: list[dict], test: list[dict], pool: list[dict], args) -> tuple:  # noqa: ANN001
    from training.trainer import TrainSettings, train
    from training.trainer.reward import load_reward_model, pairwise_accuracy, score_pairs

    settings = TrainSettings(
        method="reward", num_train_epochs=args.epochs, per_device_batch_size=4, validation_fraction=0.0,
        max_length=192, seed=args.seed,
    )
    with tempfile.TemporaryDirectory(prefix="label-order-") as out:
        result = train(model_path=model_path, rows=labeled, settings=settings, output_dir=out)
        model, tokenizer = load_reward_model(result.adapter_dir, model_path)
        accuracy = pairwise_accuracy(score_pairs(model, tokenizer, test, batch_size=16, max_length=192))
        gaps = [abs(c - r) for c, r in score_pairs(model, tokenizer, pool, batch_size=16, max_length=192)] if pool else []
    return accuracy, gaps


def run_order(order: str, model_path: str, seed_rows: list[dict], pool: list[dict], test: list[dict], args) -> list:  # noqa: ANN001
    rng = random.Random(args.seed + 1)
    labeled, unlabeled = list(seed_rows), list(pool)
    found = []
    for round_index in range(args.rounds):
        started = time.monotonic()
        last = round_index == args.rounds - 1
        accuracy, gaps = _train_and_measure(
            model_path, labeled, test, unlabeled if (order == "uncertain" and not last) else [], args
        )
        found.append((len(labeled), accuracy, time.monotonic() - started))
        low, high = accuracy.interval()
        print(f"  {order:9s} {len(labeled):4d} votes: accuracy {accuracy.accuracy:.1%} ({low:.1%}–{high:.1%}) "
              f"on {accuracy.pairs} test pairs, {time.monotonic() - started:.0f} s", flush=True)
        if last:
            break
        if order == "uncertain":
            picked = sorted(range(len(unlabeled)), key=lambda i: gaps[i])[: args.step]
        else:
            picked = rng.sample(range(len(unlabeled)), min(args.step, len(unlabeled)))
        chosen = set(picked)
        labeled += [unlabeled[i] for i in picked]
        unlabeled = [row for i, row in enumerate(unlabeled) if i not in chosen]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rule", choices=sorted(RULES), default="polite")
    parser.add_argument("--model", default=str(Path(__file__).resolve().parent.parent / "var" / "models" / "smollm2-135m-instruct"))
    parser.add_argument("--start", type=int, default=16, help="random seed votes both orders begin with")
    parser.add_argument("--step", type=int, default=16, help="votes added per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--annotator-noise", type=float, default=0.0)
    parser.add_argument("--test-per-subject", type=int, default=12, help="test pairs drawn per unseen subject")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from training.base_models import convert_bundled_model

    model_path = str(convert_bundled_model(Path(args.model)))
    train_subjects, test_subjects = SUBJECTS[:30], SUBJECTS[30:]
    pool = make_pairs(args.rule, train_subjects, 6, seed=args.seed, noise=args.annotator_noise)
    test = make_pairs(args.rule, test_subjects, args.test_per_subject, seed=args.seed + 100, noise=0.0)
    rng = random.Random(args.seed)
    rng.shuffle(pool)
    seed_rows, pool = pool[: args.start], pool[args.start :]
    print(f"rule {args.rule!r} ({RULES[args.rule].description}); noise {args.annotator_noise:.0%}; pool {len(pool)} "
          f"pairs after {len(seed_rows)} seed votes; test {len(test)} pairs on unseen subjects; "
          f"+{args.step} votes a round, {args.rounds} rounds", flush=True)
    results = {}
    for order in ("random", "uncertain"):
        results[order] = run_order(order, model_path, seed_rows, pool, test, args)
    target = results["random"][-1][1].accuracy
    print(f"\nvotes needed to reach the random order's final accuracy ({target:.1%}):")
    for order, rows in results.items():
        reached = next((votes for votes, accuracy, _ in rows if accuracy.accuracy >= target), None)
        total = sum(seconds for *_, seconds in rows)
        print(f"  {order:9s} {reached if reached is not None else 'not reached'}"
              f"  (accuracy by votes: {', '.join(f'{v}: {a.accuracy:.1%}' for v, a, _ in rows)}; {total:.0f} s)")


if __name__ == "__main__":
    main()
