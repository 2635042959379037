"""What the alignment loop bench prints: each stage's wall time as it ends, and at the end each run's figures
(held-out win rate by the rule, the annotators' battles or thumbs, the reward model's scores, the watch of an online
RL run) and the time of every stage. Printing only: the figures are gathered by bench/alignment_loop.py.
"""

from __future__ import annotations

import time
from typing import Any

from simulated_annotators import Rule


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


def percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


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
        print(f"    TUNED vs BASE BEST-OF-{bon.n} (reward model's pick): tuned scores higher on {percent(share.accuracy)} "
              f"(95% CI {percent(low)}–{percent(high)}) of {bon.prompts} held-out prompts; mean score base best-of-{bon.n} "
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
    return (f"DECIDED JUDGEMENTS THAT REACHED TRAINING: {reached} of {decided} ({percent(share)}), "
            f"{summary.get('rows', 0)} rows with {summary.get('edited', 0)} written by annotators; "
            f"no preference: {no_preference}; left out: {left_out or 'none'}")


def _print_win_rate(figures: dict[str, Any]) -> None:
    paired = figures["paired"]
    print(f"    HELD-OUT WIN RATE by the rule: {percent(paired.rate)} (95% CI {percent(paired.low)}–{percent(paired.high)}) "
          f"over {figures['pairs']} matched pairs on {paired.prompts} prompts; sign test p = {paired.sign_test_p:.2g}")


def _print_answers(figures: dict[str, Any]) -> None:
    print(f"    words base {figures['base_words']:.0f} -> tuned {figures['tuned_words']:.0f}; degenerate base "
          f"{figures['base_degenerate']} / tuned {figures['tuned_degenerate']}; cut off base {figures['base_cut_off']} / "
          f"tuned {figures['tuned_cut_off']}; has the preferred property: base {percent(figures['base_satisfies'])} / "
          f"tuned {percent(figures['tuned_satisfies'])}")


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
        print(f"    annotators' blind battles: {b.wins}-{b.ties}-{b.losses}, raw {percent(b.rate)} "
              f"({percent(b.low)}–{percent(b.high)})")
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


def report(figures: dict[str, Any], label: str) -> None:
    """One run's figures under its label: training, held-out win rate, answers, battles or thumbs, rewards."""
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
              f"{percent(b.rate)}" + (f", paired {percent(b.paired.rate)} ({percent(b.paired.low)}–{percent(b.paired.high)})" if b.paired else "")
              + (f", length-controlled {percent(lc.rate)} ({percent(lc.low)}–{percent(lc.high)})" if lc else ""))
    if "thumbs" in figures:
        t = figures["thumbs"]
        print(f"    annotators' held-out thumbs: base {percent(t.base.rate)} up ({t.base.ups}/{t.base.ups + t.base.downs}), "
              f"tuned {percent(t.tuned.rate)} up ({t.tuned.ups}/{t.tuned.ups + t.tuned.downs})")
    for text in figures["examples"][:3]:
        print(f"    e.g. {text!r}")
    if figures.get("rewards") is not None:
        _report_rewards(figures["rewards"])


def print_results(rule: Rule, results: list[tuple[str, dict[str, Any]]], stages: Stages) -> None:
    """Each run's figures under the rule's heading, then the time of every stage."""
    print(f"\n=== rule {rule.name}: {rule.description} ===")
    for label, figures in results:
        report(figures, label)
    print(f"\ntotal {time.monotonic() - stages.started:.0f}s; stages: "
          + ", ".join(f"{name} {seconds:.0f}s" for name, seconds in stages.times.items()))
