"""Does the loop move the model toward what annotators prefer? The whole loop through the app, on the bundled
model and a real Celery worker, with simulated annotators who vote by a hidden rule:

    import prompts → Generate candidates (worker) → annotators vote through the JSON API → launch a run with the
    form's defaults (worker) → review generation on held-out prompts (worker: outputs, "did it move?", blind
    battles) → annotators judge the battles through the JSON API by the same rule → figures

    .venv/bin/python bench/alignment_loop.py --rule length --votes 200 --method dpo
    .venv/bin/python bench/alignment_loop.py --rule bullets --votes 200
    .venv/bin/python bench/alignment_loop.py --rule length --votes 200 --method kto          # thumbs project
    .venv/bin/python bench/alignment_loop.py --rule length --votes 300 --annotators 3 --annotator-noise 0.2 \\
        --compare-noise-handling both                                                       # plain vs noise-aware
    .venv/bin/python bench/alignment_loop.py --rule length --votes 200 --method grpo        # reward model, then RL,
    .venv/bin/python bench/alignment_loop.py --rule length --votes 200 --method grpo+rloo   # against DPO on the votes
    .venv/bin/python bench/alignment_loop.py --rule thorough --brief --votes 150 --method grpo --rl-only \\
        --heldout 15                 # a hackable reward model (pays for length the prompts ask not to write)

It runs on the embedded defaults in a temporary folder (SQLite, the filesystem broker), so it needs no services
and leaves nothing behind; --database-url and --broker-url point it at PostgreSQL and Redis instead. It prints
the held-out win rate of the tuned model over the base by the rule (every matched output pair, identical ones
as ties) with a 95% interval over prompts, the annotators' battle win rate, raw and length-controlled, the
validation implicit-reward accuracy, KL per token, mean lengths, degenerate answers and the time of each stage.
A figure, not a test: the suite runs a small version (tests/training/test_alignment_direction.py).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from alignment_prompts import alignment_prompts  # noqa: E402
from alignment_report import Stages, percent, print_results  # noqa: E402
from api_annotators import Annotators  # noqa: E402
from simulated_annotators import RULES, Rule, is_degenerate, judge, word_count  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rule", default="length", choices=sorted(RULES), help="the annotators' hidden rule")
    parser.add_argument("--votes", type=int, default=200, help="labelling votes (compare) or thumbs (rate) to cast")
    parser.add_argument("--method", default="dpo", choices=["dpo", "kto", "grpo", "rloo", "grpo+rloo"],
                        help="dpo: a compare project; kto: thumbs; grpo, rloo: a reward model on the votes, then online "
                        "RL against it, beside a DPO run on the same votes")
    parser.add_argument("--rl-only", action="store_true", help="online RL without the DPO run beside it")
    parser.add_argument("--annotators", type=int, default=1)
    parser.add_argument("--overlap", type=int, default=None, help="votes per task (default: annotators, at most 3)")
    parser.add_argument("--annotator-noise", type=float, default=0.0, help="share of each annotator's votes flipped")
    parser.add_argument("--noise-handling", default="none", choices=["none", "drop_split", "robust", "both"])
    parser.add_argument(
        "--compare-noise-handling", default=None, choices=["drop_split", "robust", "both"],
        help="also train a second run with this noise handling on the same votes, and review both",
    )
    parser.add_argument("--heldout", type=int, default=30, help="held-out prompts")
    # Candidate and review settings default to what the app's forms submit untouched (None: the form's value).
    parser.add_argument("--candidates", type=int, default=None, help="candidates per train prompt (form: 3)")
    parser.add_argument("--pairing", default="all", choices=["all", "length_extremes"])
    parser.add_argument("--cut-off", default=None, choices=["against_finished", "left_out", "paired"],
                        help="how cut-off candidates are paired (form: against_finished)")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="for candidates and review outputs (forms: 384; 160 halves the time of both)")
    parser.add_argument("--candidate-temperature", type=float, default=None, help="(form: the generation default)")
    parser.add_argument("--edit-rate", type=float, default=0.0,
                        help="share of votes where an annotator whose pick misses the rule rewrites it (rewrite())")
    parser.add_argument("--styles", action="store_true",
                        help="candidates written under style hints (plain, brief, a list, a friendly opening, ...): "
                             "Generate candidates' 'Vary the style of the samples'")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="launch-form field to change from its default, e.g. --set learning_rate=1e-4")
    parser.add_argument("--reward-model", action="store_true",
                        help="also train a reward model on the votes (its held-out accuracy), score the review outputs "
                        "with it, and print each side's reward spread and the tuned model against base best-of-N")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temporary folder")
    parser.add_argument("--broker-url", default=None, help="default: the filesystem broker in a temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (database, adapters, logs)")
    parser.add_argument("--generation-batch-size", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="a few prompts and steps, to check the plumbing")
    parser.add_argument("--brief", action="store_true", help="prompts that ask for two sentences (see BRIEF)")
    return parser.parse_args(argv)


def _environment(args: argparse.Namespace, workdir: Path) -> dict[str, str]:
    env = {
        "DJANGO_SETTINGS_MODULE": "webapp.settings",
        "PREFTUNE_VAR_DIR": str(workdir / "var"),
        "PREFTUNE_ARTIFACTS_DIR": str(workdir / "artifacts"),
        # The converted bundled model is reused from the checkout (converting takes half a minute).
        "PREFTUNE_MODELS_DIR": os.environ.get("PREFTUNE_MODELS_DIR", str(ROOT / "var" / "models")),
        "PREFTUNE_GENERATION_BATCH_SIZE": str(args.generation_batch_size),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TQDM_DISABLE": "1",
        "LOG_LEVEL": "WARNING",
    }
    if args.database_url:
        env["DATABASE_URL"] = args.database_url
    if args.broker_url:
        env["CELERY_BROKER_URL"] = args.broker_url
    return env


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "webapp", "worker", "-Q", "default,gpu", "--concurrency", "1",
         "--hostname", "bench@%h", "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
        cwd=ROOT, env={**os.environ, **env}, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while " ready." not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"The worker did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    return process


def _wait(row: Any, *, what: str, timeout: float, log: Path) -> Any:  # noqa: ANN401
    """Poll a job or run row until it is no longer queued or running."""
    deadline = time.monotonic() + timeout
    while True:
        row.refresh_from_db()
        if row.status not in ("queued", "running"):
            return row
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} still {row.status} after {timeout:.0f}s; worker log:\n{log.read_text()[-3000:]}")
        time.sleep(2)


def _fill_form_defaults(args: argparse.Namespace) -> None:
    """Candidate and review settings the command line left out: Generate candidates' untouched form."""
    from training.review.forms import CandidatesForm

    form = CandidatesForm(choices=[("base:0", "base")])

    def initial(name: str) -> Any:  # noqa: ANN401
        return form.get_initial_for_field(form.fields[name], name)

    args.candidates = args.candidates if args.candidates is not None else initial("n")
    args.max_new_tokens = args.max_new_tokens or initial("max_new_tokens")
    if args.candidate_temperature is None:
        args.candidate_temperature = initial("temperature")
    args.candidate_top_p = initial("top_p")
    if args.cut_off is None:
        args.cut_off = initial("cut_off")


def _review_form_defaults() -> dict[str, Any]:
    from training.review.forms import GenerationForm

    return {name: GenerationForm.base_fields[name].initial for name in ("temperature", "top_p", "seed")}


def _launch_form_defaults(changes: list[str]) -> dict[str, Any]:
    """What an admin submits by opening the launch form and pressing Launch, plus ``--set`` changes."""
    from training.forms import RunLaunchForm

    form = RunLaunchForm()
    data = {}
    for name, field in form.fields.items():
        initial = form.get_initial_for_field(field, name)
        if isinstance(initial, bool):
            if initial:
                data[name] = "on"
        elif initial is not None:
            data[name] = str(initial)
    for change in changes:
        key, _, value = change.partition("=")
        data[key.strip()] = value.strip()
    return data


def _launch(project: Any, base_model: Any, admin: Any, method: str, form_data: dict[str, Any], noise: str, name: str):  # noqa: ANN001, ANN202
    from training.forms import RunLaunchForm
    from training.services import run_launch

    form = RunLaunchForm({**form_data, "method": method, "base_model": str(base_model.pk), "noise_handling": noise})
    if not form.is_valid():
        raise RuntimeError(f"The launch form refused its own defaults: {form.errors.as_text()}")
    return run_launch(
        project=project, base_model_id=base_model.pk, method=method, settings_data=form.settings_data(),
        created_by=admin, name=name, include_review=form.cleaned_data["include_review"],
        include_heldout=form.cleaned_data["include_heldout"], noise_handling=noise,
    )


def _rule_win_rate(rule: Rule, pairs: list[Any]) -> tuple[Any, dict[str, float]]:
    """The tuned model's win rate by ``rule`` over every matched pair (identical ones are ties), with the
    paired interval over prompts; and mean words, degenerate answers and rule satisfaction per side."""
    from training.trainer.win_rates import paired_win_rate

    outcomes = []
    for pair in pairs:
        vote = judge(rule, pair.first.text, pair.second.text, rng=random.Random(0))
        outcomes.append((pair.prompt_id, {"a": 1.0, "b": 0.0}.get(vote, 0.5)))
    tuned = [p.first.text for p in pairs]
    base = [p.second.text for p in pairs]
    facts = {
        "base_words": statistics.mean(map(word_count, base)),
        "tuned_words": statistics.mean(map(word_count, tuned)),
        "base_degenerate": sum(map(is_degenerate, base)),
        "tuned_degenerate": sum(map(is_degenerate, tuned)),
        "base_satisfies": statistics.mean(rule.satisfied(t) and not is_degenerate(t) for t in base),
        "tuned_satisfies": statistics.mean(rule.satisfied(t) and not is_degenerate(t) for t in tuned),
        "base_cut_off": sum(p.second.is_truncated for p in pairs),
        "tuned_cut_off": sum(p.first.is_truncated for p in pairs),
    }
    return paired_win_rate(outcomes, rounds=2000), facts



def _review(run: Any, *, project: Any, annotators: Annotators, rule: Rule, args: argparse.Namespace, stages: Stages,  # noqa: ANN401, PLR0913
            log: Path, admin: Any, label: str) -> dict[str, Any]:  # noqa: ANN401
    from training.review import generation as review_generation
    from training.review import matched_outputs as review_matched_outputs
    from training.review import results as review_results
    from training.review import selectors as review_selectors
    from training.review.versions import run_review_versions

    base, tuned = run_review_versions(run=run)
    samples = review_selectors.samples_for_target(args.heldout)
    job = review_generation.generation_job_create(
        project=project, versions=[base, tuned], run=run, created_by=admin, purpose="review", create_review_tasks=True,
        settings_data={**_review_form_defaults(), "max_new_tokens": args.max_new_tokens, "n": samples},
    )
    job = _wait(job, what="review generation", timeout=3 * 3600, log=log)
    if job.status != "succeeded":
        raise RuntimeError(f"Review generation failed: {job.error}")
    stages.done(f"{label}: review outputs", f"{job.prompt_count} held-out prompts x {samples} samples x 2 versions, "
                f"{job.completions_created} new, {job.tasks_created} review tasks")
    cast = annotators.work()
    stages.done(f"{label}: blind judging through the API", f"{sum(cast.values())} votes {cast}")
    rewards = _reward_figures(project, base, tuned, job, log=log, stages=stages, label=label) if args.reward_model else None
    pairs = review_matched_outputs.matched_pairs(project=project, first=tuned, second=base, settings=job.settings)
    paired, facts = _rule_win_rate(rule, pairs)
    figures: dict[str, Any] = {"run": run, "job": job, "pairs": len(pairs), "paired": paired, **facts, "rewards": rewards,
                               "examples": [p.first.text[:160] for p in pairs[:: max(1, len(pairs) // 3)]]}
    if project.mode == "compare":
        figures["battles"] = review_results.battle_results(project=project, tuned=tuned, base=base, settings=job.settings)
    else:
        figures["thumbs"] = review_results.heldout_thumbs(project=project, base=base, tuned=tuned, settings=job.settings)
    return figures



def _reward_figures(project: Any, base: Any, tuned: Any, job: Any, *, log: Path, stages: Stages, label: str) -> Any:  # noqa: ANN401
    """The review outputs as the project's reward model scores them (the review page's figures), once the scoring
    job that the review job queued has run."""
    from training.models import GenerationJob
    from training.review import rewards as review_rewards
    from training.review import side_by_side as review_side_by_side

    for scoring in GenerationJob.objects.filter(project=project, purpose="scores", status__in=["queued", "running"]):
        _wait(scoring, what="reward scoring", timeout=3600, log=log)
    rows = review_side_by_side.side_by_side(project=project, base=base, tuned=tuned, settings=job.settings)
    found = review_rewards.reward_comparison(project=project, rows=rows, base=base, tuned=tuned)
    stages.done(f"{label}: reward scores", f"{found.base.count if found else 0} matched pairs scored")
    return found


@dataclass
class _Bench:
    """What the stages of one bench run share, once the project exists."""

    args: argparse.Namespace
    rule: Rule
    stages: Stages
    log: Path
    project: Any
    base_model: Any
    admin: Any


def _rl_methods(method: str) -> list[str]:
    return [m for m in method.split("+") if m in ("grpo", "rloo")]


def _settle_args(args: argparse.Namespace) -> int:
    """Apply --quick and what online RL needs to ``args``; the overlap, refused when above the annotators."""
    if args.quick:
        args.votes, args.heldout = min(args.votes, 16), min(args.heldout, 3)
        args.max_new_tokens = min(args.max_new_tokens or 32, 32)
        args.set = ["max_steps=4", *args.set]
    overlap = args.overlap or min(args.annotators, 3)
    if overlap > args.annotators:
        raise SystemExit(f"--overlap {overlap} needs at least that many --annotators.")
    if _rl_methods(args.method):
        args.reward_model = True  # online RL trains against it
    return overlap


def _print_plan(args: argparse.Namespace, rule: Rule, overlap: int, workdir: Path) -> None:
    print(f"alignment loop: rule {rule.name} ({rule.kind}: {rule.description}); {args.method.upper()} from "
          f"{args.votes} {'thumbs' if args.method == 'kto' else 'votes'} by {args.annotators} annotator(s), overlap {overlap}, "
          f"noise {args.annotator_noise:.0%}, edit rate {args.edit_rate:.0%}; {args.candidates} candidates a prompt at "
          f"{args.max_new_tokens} tokens, temperature {args.candidate_temperature:g}, cut-off answers "
          f"{args.cut_off.replace('_', ' ')} in pairs"
          f"{' under style hints' if args.styles else ''}; folder {workdir}", flush=True)


def _set_up(args: argparse.Namespace, rule: Rule, overlap: int) -> tuple[Any, Any, Any]:
    """Migrate the fresh database and prepare the bundled model; the project, the base model and the admin."""
    from django.contrib.auth.models import User
    from django.core.management import call_command

    from labeling.models import Project
    from training.models import BaseModel

    call_command("migrate", verbosity=0)
    call_command("prepare_base_model", verbosity=0)
    base_model = BaseModel.objects.get()
    admin = User.objects.create_superuser("admin", password="bench-only")
    mode = "rate" if args.method == "kto" else "compare"
    project = Project.objects.create(name=f"Alignment bench: {rule.name}", mode=mode, overlap=overlap,
                                     guidelines=f"Simulated: {rule.description}.")
    return project, base_model, admin


def _import_prompts(args: argparse.Namespace, project: Any, overlap: int) -> Any:  # noqa: ANN401
    """Enough train prompts for the votes wanted, and the held-out ones, through the app's import."""
    from labeling.importing import project_import

    tasks_wanted = math.ceil(args.votes / overlap)
    per_prompt = float(args.candidates)
    if project.mode == "compare":
        from training.trainer.candidates import expected_pairs

        # The bundled model finished 144 of 225 candidates at 384 tokens (64%, 2026-12-06); fewer at lower limits.
        per_prompt, _ = expected_pairs(args.candidates, 0.64, args.pairing, cut_off=args.cut_off)
    # A few spare prompts: identical candidates and ties give no task.
    train_count = math.ceil(tasks_wanted / per_prompt * 1.1) + 1
    prompts = alignment_prompts(train_count + args.heldout, seed=args.seed + 1, brief=args.brief)
    lines = [{"id": f"train-{i}", "prompt": p, "split": "train"} for i, p in enumerate(prompts[:train_count])]
    lines += [{"id": f"heldout-{i}", "prompt": p, "split": "heldout"} for i, p in enumerate(prompts[train_count:])]
    return project_import(project=project, filename="prompts.jsonl",
                          data="".join(json.dumps(line) + "\n" for line in lines).encode())


def _generate_candidates(bench: _Bench) -> None:
    from training.review import generation as review_generation
    from training.review.versions import base_version_get_or_create

    args = bench.args
    base_version = base_version_get_or_create(base_model=bench.base_model)
    job = review_generation.generation_job_create(
        project=bench.project, versions=[base_version], purpose="candidates", split="train", created_by=bench.admin,
        settings_data={"temperature": args.candidate_temperature, "top_p": args.candidate_top_p, "max_new_tokens": args.max_new_tokens,
                       "seed": args.seed,
                       "n": args.candidates, **({"style_hints": True} if args.styles else {})},
        pairing=args.pairing, cut_off=args.cut_off,
    )
    job = _wait(job, what="candidate generation", timeout=3 * 3600, log=bench.log)
    if job.status != "succeeded":
        raise RuntimeError(f"Candidate generation failed: {job.error}")
    bench.stages.done("generate candidates", f"{job.completions_created} candidates for {job.prompt_count} prompts, "
                      f"{job.tasks_created} tasks; {'; '.join(job.notes) or 'nothing left out'}")


def _vote(bench: _Bench) -> Annotators:
    """The annotators cast the labelling votes; they judge the battles later, without rewriting."""
    args = bench.args
    annotators = Annotators(project=bench.project, count=args.annotators, rule=bench.rule, noise=args.annotator_noise,
                            seed=args.seed, edit_rate=args.edit_rate)
    cast = annotators.work(limit=args.votes)
    annotators.edit_rate = 0.0  # battles are judged, not rewritten
    bench.stages.done("annotators vote through the JSON API",
                      f"{sum(cast.values())} votes {cast}, {annotators.edits} with a rewrite")
    return annotators


def _train_reward_model(bench: _Bench, form_data: dict[str, Any]) -> None:
    reward_run = _launch(bench.project, bench.base_model, bench.admin, "reward", {**form_data, "beta": None}, "none",
                         f"bench {bench.rule.name} reward model")
    reward_run = _wait(reward_run, what="reward model training", timeout=6 * 3600, log=bench.log)
    if reward_run.status != "succeeded":
        raise RuntimeError(f"The reward model run ended {reward_run.status}: {reward_run.error}")
    held = reward_run.outcome.get("reward_model") or {}
    bench.stages.done("reward model: train", f"{reward_run.outcome.get('steps')} steps, {reward_run.train_rows} rows; "
                      f"held-out pairwise accuracy {percent(held.get('accuracy'))} "
                      f"(95% CI {percent((held.get('interval') or [None, None])[0])}–"
                      f"{percent((held.get('interval') or [None, None])[1])}) on {held.get('pairs')} pairs")


def _plans(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    """(label, noise handling, method) of each run to train and review."""
    rl_methods = _rl_methods(args.method)
    plans = [("plain" if args.compare_noise_handling else "run", args.noise_handling, args.method)]
    if args.compare_noise_handling:
        plans.append((f"noise-aware ({args.compare_noise_handling})", args.compare_noise_handling, args.method))
    if rl_methods:
        plans = [] if args.rl_only else [("DPO on the same votes", "none", "dpo")]
        plans += [(f"{m.upper()} against the reward model", "none", m) for m in rl_methods]
    return plans


def _form_data_for(method: str, form_data: dict[str, Any], *, rl_methods: list[str]) -> dict[str, Any]:
    if method in ("grpo", "rloo"):
        return {**form_data, "beta": form_data.get("beta", "")}
    if rl_methods:
        # --set changes meant for the RL run (its own fields) would make the DPO run refuse them.
        return {k: v for k, v in form_data.items() if k not in ("num_generations", "max_completion_length")}
    return form_data


def _train_and_review(bench: _Bench, annotators: Annotators, form_data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Each planned run trained, then reviewed; (label, figures) for each run that was not refused."""
    from training.services import LaunchError

    results = []
    for label, noise, method in _plans(bench.args):
        data = _form_data_for(method, form_data, rl_methods=_rl_methods(bench.args.method))
        try:
            run = _launch(bench.project, bench.base_model, bench.admin, method, data, noise, f"bench {bench.rule.name} {label}")
        except LaunchError as refused:
            # Online RL refuses a reward model that is not clearly above chance: a figure, not a crash.
            bench.stages.done(f"{label}: refused", refused.message)
            continue
        run = _wait(run, what="training", timeout=6 * 3600, log=bench.log)
        if run.status != "succeeded":
            raise RuntimeError(f"The run {label} ended {run.status}: {run.error}")
        bench.stages.done(f"{label}: train", f"{run.outcome.get('steps')} steps, {run.train_rows} rows")
        figures = _review(run, project=bench.project, annotators=annotators, rule=bench.rule, args=bench.args,
                          stages=bench.stages, log=bench.log, admin=bench.admin, label=label)
        results.append((label, figures))
    return results


def _stop_worker(worker: subprocess.Popen) -> None:
    worker.terminate()
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()


def _run_the_loop(bench: _Bench, env: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """Everything the worker does, from the candidates to the last review; the worker is stopped however it ends."""
    worker = _start_worker(env, bench.log)
    try:
        bench.stages.done("start the worker")
        _generate_candidates(bench)
        annotators = _vote(bench)
        form_data = _launch_form_defaults(bench.args.set)
        if bench.args.reward_model:
            _train_reward_model(bench, form_data)
        return _train_and_review(bench, annotators, form_data)
    finally:
        _stop_worker(worker)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    overlap = _settle_args(args)
    workdir = Path(tempfile.mkdtemp(prefix="preftune-alignment-"))
    env = _environment(args, workdir)
    os.environ.update(env)
    import django

    django.setup()
    stages = Stages()
    rule = RULES[args.rule]
    _fill_form_defaults(args)
    _print_plan(args, rule, overlap, workdir)
    project, base_model, admin = _set_up(args, rule, overlap)
    stages.done("import prompts", str(_import_prompts(args, project, overlap)))
    bench = _Bench(args=args, rule=rule, stages=stages, log=workdir / "worker.log", project=project,
                   base_model=base_model, admin=admin)
    results = _run_the_loop(bench, env)
    print_results(rule, results, stages)
    if args.keep:
        print(f"kept {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
