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
    .venv/bin/python bench/alignment_loop.py --rule thorough --votes 100 --method grpo --rl-only \\
        --set max_completion_length=256                             # a hackable reward model: the watch should fire

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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from alignment_prompts import alignment_prompts  # noqa: E402
from simulated_annotators import (  # noqa: E402
    RULES,
    Rule,
    is_degenerate,
    judge,
    rewrite,
    thumbs,
    vote_details,
    word_count,
)


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
    return parser.parse_args(argv)


class Stages:
    """Wall time of each stage, printed as it ends."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.times: dict[str, float] = {}
        self._stage_started = self.started

    def done(self, name: str, detail: str = "") -> None:
        now = time.monotonic()
        self.times[name] = now - self._stage_started
        self._stage_started = now
        print(f"[{now - self.started:6.0f}s] {name}: {self.times[name]:.0f}s{'  ' + detail if detail else ''}", flush=True)


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


class Annotators:
    """Simulated annotators, each with an API token, voting through the JSON API by one hidden rule, with a
    strength, now and then a rationale, and a reading time (``vote_details``). ``noise`` is one share of flipped
    votes for all, or one per annotator. With ``edit_rate``, an annotator whose pick (or, on a tie or both-bad,
    the first readable answer) misses the rule rewrites it as a person would (``rewrite``) that share of the
    time, and sends the rewrite as the preferred answer; an answer cut off at the token limit is not rewritten (a
    person would finish it, which a rule cannot), the other one is."""

    def __init__(self, *, project: Any, count: int, rule: Rule, noise: float | list[float], seed: int,  # noqa: ANN401
                 edit_rate: float = 0.0, names: list[str] | None = None) -> None:
        from django.contrib.auth.models import User
        from django.test import Client

        from labeling.services import api_token_create

        self.rule = rule
        self.noises = list(noise) if isinstance(noise, list) else [noise] * count
        self.edit_rate = edit_rate
        self.edits = 0
        self.clients = []
        for i in range(count):
            user = User.objects.create_user((names or [])[i] if names else f"annotator{i + 1}", password="bench-only")
            project.members.add(user)
            token = api_token_create(user=user, name="bench")
            self.clients.append((Client(HTTP_AUTHORIZATION=f"Bearer {token}"), random.Random(seed * 1000 + i)))
        self.project = project

    def _pair_body(self, task: dict[str, Any], rng: random.Random, noise: float) -> dict[str, Any]:
        left, right = task["left"]["text"], task["right"]["text"]
        vote = judge(self.rule, left, right, rng=rng, noise=noise)
        details = vote_details(self.rule, left, right, vote, rng=rng)
        body: dict[str, Any] = {"pick": {"a": "left", "b": "right"}.get(vote, vote), "time_spent_ms": details.time_spent_ms}
        if details.strength is not None:
            body["strength"] = details.strength
        if details.rationale:
            body["rationale"] = details.rationale
        if self.edit_rate and rng.random() < self.edit_rate:
            # A person rewrites an answer they can finish reading: their pick if it is one, else the first such.
            sides = {"a": task["left"], "b": task["right"]}
            order = [vote] if vote in sides else []
            order += [side for side in sides if side not in order]
            readable = [sides[side]["text"] for side in order
                        if not sides[side].get("cut_off") and not is_degenerate(sides[side]["text"])]
            base = readable[0] if readable else None
            fixed = rewrite(self.rule, base) if base else None
            if fixed and fixed.strip() != base.strip() and not self.rule.satisfied(base):
                body["edited_text"] = fixed
                self.edits += 1
        return body

    def work(self, *, limit: int | None = None) -> dict[str, int]:
        """Each annotator in turn takes the next task and votes, until ``limit`` votes or no task is left."""
        cast: dict[str, int] = {}
        active = list(range(len(self.clients)))
        total = 0
        while active and (limit is None or total < limit):
            for index in list(active):
                if limit is not None and total >= limit:
                    break
                client, rng = self.clients[index]
                response = client.get(f"/api/projects/{self.project.pk}/next")
                if response.status_code != 200:
                    raise RuntimeError(f"GET next: {response.status_code} {response.content[:300]!r}")
                task = response.json()["task"]
                if task is None:
                    active.remove(index)
                    continue
                if task["kind"] == "pair":
                    body = self._pair_body(task, rng, self.noises[index])
                else:
                    up = thumbs(self.rule, task["completion"]["text"], rng=rng, noise=self.noises[index])
                    body = {"value": "up" if up else "down"}
                body["client_key"] = response.json()["client_key"]
                answer = client.post(task["vote_url"], data=json.dumps(body), content_type="application/json")
                if answer.status_code not in (200, 201):
                    raise RuntimeError(f"POST vote: {answer.status_code} {answer.content[:300]!r}")
                key = body.get("pick") or body["value"]
                cast[key] = cast.get(key, 0) + 1
                total += 1
        return cast


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


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _review(run: Any, *, project: Any, annotators: Annotators, rule: Rule, args: argparse.Namespace, stages: Stages,  # noqa: ANN401, PLR0913
            log: Path, admin: Any, label: str) -> dict[str, Any]:  # noqa: ANN401
    from training.review import generation as review_generation
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
    pairs = review_selectors.matched_pairs(project=project, first=tuned, second=base, settings=job.settings)
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
    from training.review import selectors as review_selectors

    for scoring in GenerationJob.objects.filter(project=project, purpose="scores", status__in=["queued", "running"]):
        _wait(scoring, what="reward scoring", timeout=3600, log=log)
    rows = review_selectors.side_by_side(project=project, base=base, tuned=tuned, settings=job.settings)
    found = review_rewards.reward_comparison(project=project, rows=rows, base=base, tuned=tuned)
    stages.done(f"{label}: reward scores", f"{found.base.count if found else 0} matched pairs scored")
    return found


def _report_rewards(found: Any) -> None:  # noqa: ANN401
    def spread(d: Any) -> str:  # noqa: ANN401
        low, high = d.mean_interval or (float("nan"), float("nan"))
        return f"mean {d.mean:.3f} (95% CI {low:.3f} to {high:.3f}), sd {d.std:.3f}, n {d.count}"

    print(f"    reward model scores, base: {spread(found.base)}")
    print(f"    reward model scores, tuned: {spread(found.tuned)}{'  SPREAD COLLAPSED' if found.collapsed else ''}")
    low, high = found.paired.mean_interval or (float("nan"), float("nan"))
    print(f"    tuned minus base, paired: {found.paired.mean:.3f} (95% CI {low:.3f} to {high:.3f})")
    if found.best_of_n is not None:
        bon, share = found.best_of_n, found.best_of_n.win_share
        low, high = share.interval()
        print(f"    TUNED vs BASE BEST-OF-{bon.n} (reward model's pick): tuned scores higher on {_percent(share.accuracy)} "
              f"(95% CI {_percent(low)}–{_percent(high)}) of {bon.prompts} held-out prompts; mean score base best-of-{bon.n} "
              f"{bon.base_best_mean:.3f}, tuned {bon.tuned_mean:.3f}")


def _reached_training(summary: dict[str, int]) -> str:
    """Of the decided judgements (pairs won by a side, or rewritten on a tie or both-bad), how many gave a row."""
    no_preference = summary.get("ties", 0) + summary.get("both_bad", 0) + summary.get("disagreements", 0)
    left_out = {name: summary.get(name, 0) for name in ("identical", "low_agreement", "cut_off_chosen") if summary.get(name)}
    # A tie or both-bad with a rewrite is decided (labeling.exporting counts it apart from the ties): it gives up
    # to two rows, the rewrite preferred to each shown answer.
    decided = summary.get("considered", 0) - no_preference
    reached = decided - sum(left_out.values())
    share = reached / decided if decided else float("nan")
    return (f"DECIDED JUDGEMENTS THAT REACHED TRAINING: {reached} of {decided} ({_percent(share)}), "
            f"{summary.get('rows', 0)} rows with {summary.get('edited', 0)} written by annotators; "
            f"no preference: {no_preference}; left out: {left_out or 'none'}")


def _print_win_rate(figures: dict[str, Any]) -> None:
    paired = figures["paired"]
    print(f"    HELD-OUT WIN RATE by the rule: {_percent(paired.rate)} (95% CI {_percent(paired.low)}–{_percent(paired.high)}) "
          f"over {figures['pairs']} matched pairs on {paired.prompts} prompts; sign test p = {paired.sign_test_p:.2g}")


def _print_answers(figures: dict[str, Any]) -> None:
    print(f"    words base {figures['base_words']:.0f} -> tuned {figures['tuned_words']:.0f}; degenerate base "
          f"{figures['base_degenerate']} / tuned {figures['tuned_degenerate']}; cut off base {figures['base_cut_off']} / "
          f"tuned {figures['tuned_cut_off']}; has the preferred property: base {_percent(figures['base_satisfies'])} / "
          f"tuned {_percent(figures['tuned_satisfies'])}")


def _report_watch(run: Any, figures: dict[str, Any]) -> None:  # noqa: ANN401
    """An online RL run: the held-out figures, then what its reward-hacking watch saw and kept."""
    movement, settings = figures["job"].movement or {}, run.settings
    watch = (run.outcome or {}).get("watch") or {}
    base = watch.get("base") or {}
    kept = next((p for p in watch.get("points", []) if p["step"] == watch.get("kept_step")), {})
    seconds = (run.finished_at - run.started_at).total_seconds() if run.finished_at and run.started_at else float("nan")
    print(f"    KL coefficient {settings['beta']:g}, group {settings['num_generations']}, answers up to "
          f"{settings['max_completion_length']} tokens, temperature {settings['temperature']:g}, lr {settings['learning_rate']:g}; "
          f"{run.train_rows} train prompts, {run.validation_rows} watched; training took {seconds:.0f}s")
    _print_win_rate(figures)
    print(f"    did it move: KL {movement.get('kl_per_token', float('nan')):.4f} per token; {movement.get('identical', '?')} of "
          f"{movement.get('pairs', '?')} outputs identical to the base's")
    _print_answers(figures)
    if "battles" in figures:
        b = figures["battles"]
        print(f"    annotators' blind battles: {b.wins}-{b.ties}-{b.losses}, raw {_percent(b.rate)} "
              f"({_percent(b.low)}–{_percent(b.high)})")
    print(f"    WATCH: validation reward {base.get('reward_mean', float('nan')):+.3f} before training -> "
          f"{kept.get('reward_mean', float('nan')):+.3f} at the kept step {watch.get('kept_step')} ({watch.get('kept_reason')}); "
          f"words {base.get('mean_words', float('nan')):.0f} -> {kept.get('mean_words', float('nan')):.0f}")
    print("    step  reward   words  cut-off  degenerate  repeated")
    for point in [base, *watch.get("points", [])]:
        print(f"    {point['step']:>4}  {point['reward_mean']:+.3f}  {point['mean_words']:>5.0f}  {point['cut_off']:>3}/{point['answers']:<3}"
              f"  {point['degenerate']:>3}/{point['answers']:<6}  {point['repetition']:.0%}")
    warnings = watch.get("warnings") or []
    print(f"    WATCH WARNINGS: {len(warnings)}" + ("" if warnings else " (none fired)"))
    for warning in warnings:
        print(f"    ! step {warning['step']} [{warning['kind']}] {warning['message']}")
        for example in warning["examples"][:2]:
            print(f"        e.g. reward {example['reward']:+.2f}, {example['words']} words"
                  f"{', cut off' if example['cut_off'] else ''}: {example['answer'][:200]!r}")
    for text in figures["examples"][:2]:
        print(f"    e.g. {text!r}")


def _report(figures: dict[str, Any], label: str) -> None:
    run, job = figures["run"], figures["job"]
    outcome = run.outcome or {}
    validation = outcome.get("validation", {})
    accuracy = validation.get("rewards/accuracies", validation.get("ranking_accuracy"))
    movement = job.movement or {}
    settings = run.settings
    print(f"\n--- {label}: run {run.pk} ({run.status}), {run.method.upper()} "
          f"loss {settings.get('loss_type') or 'default'}, lr {settings['learning_rate']:g}, "
          f"{settings['num_train_epochs']:g} epochs, {outcome.get('steps')} steps, kept step {outcome.get('kept_step')}")
    print(f"    training rows {run.train_rows} + {run.validation_rows} validation; "
          f"lineage noise handling: {run.snapshot.lineage.get('noise_handling')}"
          + (f", estimated flip rate {run.snapshot.lineage['estimated_flip_rate']}" if "estimated_flip_rate" in run.snapshot.lineage else ""))
    if run.method == "dpo":
        print(f"    {_reached_training(run.snapshot.summary)}")
    if run.method in ("grpo", "rloo"):
        _report_watch(run, figures)
        return
    print(f"    validation {'ranking' if run.method == 'kto' else 'implicit-reward'} accuracy: "
          f"{'—' if accuracy is None else f'{accuracy:.3f}'} on {outcome.get('validation_rows')} rows; "
          f"margin {validation.get('rewards/margins', validation.get('reward_gap', float('nan'))):.3f}")
    print(f"    did it move: {movement.get('identical', '?')} of {movement.get('pairs', '?')} outputs identical to the base's, "
          f"KL {movement.get('kl_per_token', float('nan')):.4f} per token over {movement.get('tokens', '?')} tokens")
    _print_win_rate(figures)
    _print_answers(figures)
    if "battles" in figures:
        b = figures["battles"]
        lc = b.length_controlled
        print(f"    annotators' blind battles (identical pairs are not battled): {b.wins}-{b.ties}-{b.losses}, raw "
              f"{_percent(b.rate)}" + (f", paired {_percent(b.paired.rate)} ({_percent(b.paired.low)}–{_percent(b.paired.high)})" if b.paired else "")
              + (f", length-controlled {_percent(lc.rate)} ({_percent(lc.low)}–{_percent(lc.high)})" if lc else ""))
    if "thumbs" in figures:
        t = figures["thumbs"]
        print(f"    annotators' held-out thumbs: base {_percent(t.base.rate)} up ({t.base.ups}/{t.base.ups + t.base.downs}), "
              f"tuned {_percent(t.tuned.rate)} up ({t.tuned.ups}/{t.tuned.ups + t.tuned.downs})")
    for text in figures["examples"][:3]:
        print(f"    e.g. {text!r}")
    if figures.get("rewards") is not None:
        _report_rewards(figures["rewards"])


def main(argv: list[str] | None = None) -> None:  # noqa: PLR0915
    args = parse_args(argv)
    if args.quick:
        args.votes, args.heldout = min(args.votes, 16), min(args.heldout, 3)
        args.max_new_tokens = min(args.max_new_tokens or 32, 32)
        args.set = ["max_steps=4", *args.set]
    overlap = args.overlap or min(args.annotators, 3)
    if overlap > args.annotators:
        raise SystemExit(f"--overlap {overlap} needs at least that many --annotators.")
    workdir = Path(tempfile.mkdtemp(prefix="preftune-alignment-"))
    env = _environment(args, workdir)
    os.environ.update(env)
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command

    from labeling.importing import project_import
    from labeling.models import Project
    from training.models import BaseModel
    from training.review import generation as review_generation
    from training.review.versions import base_version_get_or_create
    from training.services import LaunchError

    stages = Stages()
    rule = RULES[args.rule]
    _fill_form_defaults(args)
    print(f"alignment loop: rule {rule.name} ({rule.kind}: {rule.description}); {args.method.upper()} from "
          f"{args.votes} {'thumbs' if args.method == 'kto' else 'votes'} by {args.annotators} annotator(s), overlap {overlap}, "
          f"noise {args.annotator_noise:.0%}, edit rate {args.edit_rate:.0%}; {args.candidates} candidates a prompt at "
          f"{args.max_new_tokens} tokens, temperature {args.candidate_temperature:g}, cut-off answers "
          f"{args.cut_off.replace('_', ' ')} in pairs"
          f"{' under style hints' if args.styles else ''}; folder {workdir}", flush=True)
    call_command("migrate", verbosity=0)
    call_command("prepare_base_model", verbosity=0)
    base_model = BaseModel.objects.get()
    admin = User.objects.create_superuser("admin", password="bench-only")
    rl_methods = [m for m in args.method.split("+") if m in ("grpo", "rloo")]
    if rl_methods:
        args.reward_model = True  # online RL trains against it
    mode = "rate" if args.method == "kto" else "compare"
    project = Project.objects.create(name=f"Alignment bench: {rule.name}", mode=mode, overlap=overlap,
                                     guidelines=f"Simulated: {rule.description}.")
    tasks_wanted = math.ceil(args.votes / overlap)
    per_prompt = float(args.candidates)
    if mode == "compare":
        from training.trainer.candidates import expected_pairs

        # The bundled model finished 144 of 225 candidates at 384 tokens (64%, 2026-12-06); fewer at lower limits.
        per_prompt, _ = expected_pairs(args.candidates, 0.64, args.pairing, cut_off=args.cut_off)
    # A few spare prompts: identical candidates and ties give no task.
    train_count = math.ceil(tasks_wanted / per_prompt * 1.1) + 1
    prompts = alignment_prompts(train_count + args.heldout, seed=args.seed + 1)
    lines = [{"id": f"train-{i}", "prompt": p, "split": "train"} for i, p in enumerate(prompts[:train_count])]
    lines += [{"id": f"heldout-{i}", "prompt": p, "split": "heldout"} for i, p in enumerate(prompts[train_count:])]
    report = project_import(project=project, filename="prompts.jsonl",
                            data="".join(json.dumps(line) + "\n" for line in lines).encode())
    stages.done("import prompts", str(report))

    log = workdir / "worker.log"
    worker = _start_worker(env, log)
    try:
        stages.done("start the worker")
        base_version = base_version_get_or_create(base_model=base_model)
        job = review_generation.generation_job_create(
            project=project, versions=[base_version], purpose="candidates", split="train", created_by=admin,
            settings_data={"temperature": args.candidate_temperature, "top_p": args.candidate_top_p, "max_new_tokens": args.max_new_tokens,
                           "seed": args.seed,
                           "n": args.candidates, **({"style_hints": True} if args.styles else {})},
            pairing=args.pairing, cut_off=args.cut_off,
        )
        job = _wait(job, what="candidate generation", timeout=3 * 3600, log=log)
        if job.status != "succeeded":
            raise RuntimeError(f"Candidate generation failed: {job.error}")
        stages.done("generate candidates", f"{job.completions_created} candidates for {job.prompt_count} prompts, "
                    f"{job.tasks_created} tasks; {'; '.join(job.notes) or 'nothing left out'}")

        annotators = Annotators(project=project, count=args.annotators, rule=rule, noise=args.annotator_noise, seed=args.seed,
                                edit_rate=args.edit_rate)
        cast = annotators.work(limit=args.votes)
        annotators.edit_rate = 0.0  # battles are judged, not rewritten
        stages.done("annotators vote through the JSON API", f"{sum(cast.values())} votes {cast}, {annotators.edits} with a rewrite")

        form_data = _launch_form_defaults(args.set)
        if args.reward_model:
            reward_run = _launch(project, base_model, admin, "reward", {**form_data, "beta": None}, "none",
                                 f"bench {rule.name} reward model")
            reward_run = _wait(reward_run, what="reward model training", timeout=6 * 3600, log=log)
            if reward_run.status != "succeeded":
                raise RuntimeError(f"The reward model run ended {reward_run.status}: {reward_run.error}")
            held = reward_run.outcome.get("reward_model") or {}
            stages.done("reward model: train", f"{reward_run.outcome.get('steps')} steps, {reward_run.train_rows} rows; "
                        f"held-out pairwise accuracy {_percent(held.get('accuracy'))} "
                        f"(95% CI {_percent((held.get('interval') or [None, None])[0])}–"
                        f"{_percent((held.get('interval') or [None, None])[1])}) on {held.get('pairs')} pairs")
        plans = [("plain" if args.compare_noise_handling else "run", args.noise_handling, args.method)]
        if args.compare_noise_handling:
            plans.append((f"noise-aware ({args.compare_noise_handling})", args.compare_noise_handling, args.method))
        if rl_methods:
            plans = [] if args.rl_only else [("DPO on the same votes", "none", "dpo")]
            plans += [(f"{m.upper()} against the reward model", "none", m) for m in rl_methods]
        results = []
        for label, noise, method in plans:
            data = form_data
            if method in ("grpo", "rloo"):
                data = {**form_data, "beta": form_data.get("beta", "")}
            elif rl_methods:
                # --set changes meant for the RL run (its own fields) would make the DPO run refuse them.
                data = {k: v for k, v in form_data.items() if k not in ("num_generations", "max_completion_length")}
            try:
                run = _launch(project, base_model, admin, method, data, noise, f"bench {rule.name} {label}")
            except LaunchError as refused:
                # Online RL refuses a reward model that is not clearly above chance: a figure, not a crash.
                stages.done(f"{label}: refused", refused.message)
                continue
            run = _wait(run, what="training", timeout=6 * 3600, log=log)
            if run.status != "succeeded":
                raise RuntimeError(f"The run {label} ended {run.status}: {run.error}")
            stages.done(f"{label}: train", f"{run.outcome.get('steps')} steps, {run.train_rows} rows")
            figures = _review(run, project=project, annotators=annotators, rule=rule, args=args, stages=stages,
                              log=log, admin=admin, label=label)
            results.append((label, figures))
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()

    print(f"\n=== rule {rule.name}: {rule.description} ===")
    for label, figures in results:
        _report(figures, label)
    print(f"\ntotal {time.monotonic() - stages.started:.0f}s; stages: "
          + ", ".join(f"{name} {seconds:.0f}s" for name, seconds in stages.times.items()))
    if args.keep:
        print(f"kept {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
