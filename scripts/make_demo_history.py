"""Make labeling/demo/history.json: the demo project with a labelling history, which `manage.py load_demo` loads.

How it is made (run once; the file ships with the project so `make run` stays fast):

1. 160 everyday prompts from bench/alignment_prompts.py (seed 7): 130 to label, 30 held out for the review.
2. The bundled model (SmolLM2-135M-Instruct) writes candidates for the 130 train prompts through the app's
   Generate candidates job with the form's defaults, on a real worker: 3 answers a prompt, 384 new tokens,
   answers cut off at the limit left out of pairs, all pairs of the rest.
3. Three simulated annotators (bench/simulated_annotators.py) vote on every pair through the JSON API, two votes
   a pair, by one guideline a 135M model can learn: the shorter of two answers that say the same, when it is at
   least 10% shorter; an answer that loops or breaks off always loses. annotator1 flips 3% of its votes at
   random, annotator2 6%, annotator3 10%, so the dashboard shows agreement that is high but not perfect. Each
   vote has a strength, a rationale on about a third, and a reading time that grows with the words read.
4. The base model's side of the review: its answers to the 30 held-out prompts, through the app's review job with
   the review form's defaults (3 samples a prompt, 384 new tokens, temperature 0.7, top-p 0.9, seed 0). A review
   reuses stored outputs with the same prompt, version and settings, so a newcomer's first review only has the
   tuned model write: the base half no longer costs minutes of CPU on every machine that runs the demo.
5. The prompts, the answers, every vote and the held-out base outputs are written to JSON (no database ids):
   answers by index within their prompt, votes by annotator name, in the order they were cast.

The held-out base outputs in the shipped file came from the review job of a `bench/newcomer_path.py` run on the
demo (the same job, settings and model as step 4, with the tuned version beside it), on the 2-core CPU, so with
transformers in float32; they were stored before outputs recorded their precision, and "dtype": "float32" was
added to them afterwards (2026-12-06), so that a review on this CPU reuses them (outputs are reused and matched
only within one engine and precision).

    .venv/bin/python scripts/make_demo_history.py                 # about 25 minutes on 2 CPU cores
    .venv/bin/python scripts/make_demo_history.py --quick --out /tmp/history.json   # the plumbing, in a minute
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import alignment_loop  # noqa: E402
from alignment_prompts import alignment_prompts  # noqa: E402
from simulated_annotators import RULES  # noqa: E402

ANNOTATORS = {"annotator1": 0.03, "annotator2": 0.06, "annotator3": 0.10}
OVERLAP = 2
FORMAT = "preftune-demo-history/1"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=130, help="prompts to label")
    parser.add_argument("--heldout", type=int, default=30, help="held-out prompts, for the review")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "labeling" / "demo" / "history.json")
    parser.add_argument("--quick", action="store_true", help="6 prompts and 32 tokens, to check the plumbing")
    parser.add_argument("--generation-batch-size", type=int, default=32)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.quick:
        args.train, args.heldout = 4, 2
    workdir = Path(tempfile.mkdtemp(prefix="preftune-demo-history-"))
    env = alignment_loop._environment(argparse.Namespace(  # noqa: SLF001
        generation_batch_size=args.generation_batch_size, database_url=None, broker_url=None), workdir)
    os.environ.update(env)
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command

    from labeling.importing import project_import
    from labeling.models import PairTask, Project
    from training.models import BaseModel
    from training.review import generation as review_generation
    from training.review.versions import base_version_get_or_create

    started = time.monotonic()
    form = argparse.Namespace(candidates=None, max_new_tokens=32 if args.quick else None, candidate_temperature=None,
                              cut_off=None)
    alignment_loop._fill_form_defaults(form)  # noqa: SLF001
    rule = RULES["length"]
    call_command("migrate", verbosity=0)
    call_command("prepare_base_model", verbosity=0)
    base_model = BaseModel.objects.get()
    admin = User.objects.create_superuser("admin", password="history-only")  # noqa: S106 - a throwaway database
    project = Project.objects.create(name="history", mode="compare", overlap=OVERLAP)
    prompts = alignment_prompts(args.train + args.heldout, seed=args.seed)
    lines = [{"id": f"train-{i}", "prompt": p, "split": "train"} for i, p in enumerate(prompts[:args.train])]
    lines += [{"id": f"heldout-{i}", "prompt": p, "split": "heldout"} for i, p in enumerate(prompts[args.train:])]
    project_import(project=project, filename="prompts.jsonl", data="".join(json.dumps(line) + "\n" for line in lines).encode())

    log = workdir / "worker.log"
    worker = alignment_loop._start_worker(env, log)  # noqa: SLF001
    try:
        settings = {"temperature": form.candidate_temperature, "top_p": form.candidate_top_p,
                    "max_new_tokens": form.max_new_tokens, "seed": args.seed, "n": form.candidates}
        job = review_generation.generation_job_create(
            project=project, versions=[base_version_get_or_create(base_model=base_model)], purpose="candidates",
            split="train", created_by=admin, settings_data=settings, cut_off=form.cut_off,
        )
        job = alignment_loop._wait(job, what="candidate generation", timeout=3 * 3600, log=log)  # noqa: SLF001
        if job.status != "succeeded":
            raise SystemExit(f"Candidate generation failed: {job.error}")
        generation_seconds = time.monotonic() - started
        print(f"candidates: {job.completions_created} answers for {job.prompt_count} prompts, {job.tasks_created} "
              f"pairs in {generation_seconds:.0f}s; {'; '.join(job.notes) or 'nothing left out'}", flush=True)
        review = review_generation.generation_job_create(
            project=project, versions=[base_version_get_or_create(base_model=base_model)], purpose="review",
            split="heldout", created_by=admin, settings_data=_review_defaults(args.heldout, quick=args.quick),
        )
        review = alignment_loop._wait(review, what="held-out base outputs", timeout=3 * 3600, log=log)  # noqa: SLF001
        if review.status != "succeeded":
            raise SystemExit(f"The held-out base outputs failed: {review.error}")
    finally:
        worker.terminate()
        worker.wait(timeout=60)

    annotators = alignment_loop.Annotators(project=project, count=len(ANNOTATORS), rule=rule,
                                           noise=list(ANNOTATORS.values()), seed=args.seed, names=list(ANNOTATORS))
    cast = annotators.work()
    print(f"votes: {sum(cast.values())} {cast}", flush=True)

    history = _history(project, PairTask, rule_description=rule.description, settings=settings,
                       cut_off=form.cut_off, generation_seconds=generation_seconds)
    args.out.write_text(json.dumps(history, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}: {len(history['prompts'])} prompts, {len(history['pairs'])} pairs, "
          f"{sum(len(p['votes']) for p in history['pairs'])} votes in {time.monotonic() - started:.0f}s")
    shutil.rmtree(workdir, ignore_errors=True)


def _review_defaults(heldout: int, *, quick: bool) -> dict:
    from training.review.forms import GenerationForm

    form = GenerationForm(heldout_prompts=heldout)
    values = {name: form.fields[name].initial for name in ("max_new_tokens", "temperature", "top_p", "seed", "n")}
    return {**values, "max_new_tokens": 32} if quick else values


def heldout_base_outputs(project: object) -> list[dict]:
    """The base model's outputs on the held-out prompts, each with the settings its job recorded (which a review
    matches on to reuse it)."""
    from labeling.models import Completion

    return [
        {"prompt": completion.prompt.external_id, "text": completion.text, "finish_reason": completion.finish_reason,
         "generation_settings": completion.generation_settings}
        for completion in Completion.objects.filter(prompt__project=project, prompt__split="heldout",
                                                    model_version__adapter_path="")
        .select_related("prompt").order_by("prompt_id", "id")
    ]


def _history(project: object, pair_task: type, *, rule_description: str, settings: dict, cut_off: str,
             generation_seconds: float) -> dict:
    prompts, index_of = [], {}
    for prompt in project.prompts.order_by("id").prefetch_related("completions"):
        answers = []
        for completion in prompt.completions.order_by("id") if prompt.split == "train" else []:
            index_of[completion.pk] = (prompt.external_id, len(answers))
            answers.append({"text": completion.text, "finish_reason": completion.finish_reason})
        prompts.append({"id": prompt.external_id, "split": prompt.split, "messages": prompt.messages, "answers": answers})
    pairs = []
    for task in pair_task.objects.filter(project=project).order_by("id").prefetch_related("votes__annotator"):
        prompt_id, a = index_of[task.completion_a_id]
        _, b = index_of[task.completion_b_id]
        votes = [
            {"annotator": vote.annotator.username, "choice": vote.choice, "a_side": vote.a_side, "strength": vote.strength,
             "rationale": vote.rationale, "time_spent_ms": vote.time_spent_ms}
            for vote in task.votes.order_by("id")
        ]
        pairs.append({"prompt": prompt_id, "a": a, "b": b, "votes": votes})
    return {
        "format": FORMAT,
        "made_by": "scripts/make_demo_history.py (see its docstring)",
        "model": "SmolLM2-135M-Instruct, the bundled base model",
        "candidate_settings": {**settings, "cut_off": cut_off},
        "candidate_seconds": round(generation_seconds),
        "guideline_rule": rule_description,
        "annotators": {name: {"flips": share} for name, share in ANNOTATORS.items()},
        "overlap": OVERLAP,
        "prompts": prompts,
        "pairs": pairs,
        "heldout_base_outputs": heldout_base_outputs(project),
    }


if __name__ == "__main__":
    main()
