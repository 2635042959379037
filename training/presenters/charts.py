"""Which charts a run page draws: each chart's metric keys and splits, and which of them a run's method fills."""
from __future__ import annotations

from dataclasses import dataclass

from training.models import TuningRun
from training.presenters.headline import Series

# ---------------------------------------------------------------- charts


@dataclass(frozen=True)
class Chart:
    title: str
    keys: tuple[str, ...]
    splits: tuple[str, ...] = ("train", "eval")
    note: str = ""
    share: bool = False  # accuracies: drawn on a fixed 0–1 axis, so 0.52 does not look like progress


CHARTS = (
    Chart(
        "Validation accuracy",
        ("rewards/accuracies", "ranking_accuracy"),
        ("eval",),
        "Share of held-out pairs the tuned model orders correctly; 0.5 is a coin flip.",
        share=True,
    ),
    Chart("Loss", ("loss",)),
    Chart(
        "Reward accuracy: training batches and validation",
        ("rewards/accuracies",),
        note="A training batch is a few pairs: noisy.",
        share=True,
    ),
    Chart("Rewards (chosen, rejected, margins)", ("rewards/chosen", "rewards/rejected", "rewards/margins")),
    Chart("Log-probabilities (chosen, rejected)", ("logps/chosen", "logps/rejected")),
    Chart("KL to the base model", ("kl",)),
    Chart("NLL of the chosen answers (CPO, ORPO)", ("nll_loss",), note="Lower: the chosen answers are more likely."),
    Chart("Log odds ratio (ORPO)", ("log_odds_ratio", "log_odds_chosen")),
    Chart(
        "Reward-model score: the mean (and spread) of each step's answers, and on the validation prompts",
        ("reward", "reward_std"),
        note="Rising reward alone is not progress: read it beside length and degeneration below.",
    ),
    Chart("Answer length in tokens (training answers)", ("completions/mean_length",), splits=("train",)),
    Chart("Validation answers: words per answer", ("mean_words",), splits=("eval",),
          note="Ballooning length while the reward rises is the commonest reward hack."),
    Chart("Share of answers cut off at the length limit", ("completions/clipped_ratio", "cut_off_share"), share=True),
    Chart("Degenerate and repeating validation answers", ("degenerate_share", "repetition"), splits=("eval",), share=True),
    Chart(
        "Reward model: pair accuracy, training batches and validation", ("accuracy",), share=True,
        note="A training batch is a few pairs: noisy.",
    ),
    Chart(
        "Reward model scores (lowest, mean, highest) and the chosen-minus-rejected margin",
        ("min_reward", "mean_reward", "max_reward", "margin"),
    ),
)

# What each method's trainer logs (TRL 1.x, plus the trainer's own ranking accuracy for KTO), so a running
# run only keeps a hidden place for charts that can fill.
METHOD_KEYS = {
    "dpo": frozenset({"loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
                      "logps/chosen", "logps/rejected"}),
    "kto": frozenset({"loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen",
                      "logps/rejected", "kl", "ranking_accuracy"}),
}
# TRL's CPO trainer (SimPO, CPO) and ORPO trainer log the pair metrics too, plus their NLL term.
METHOD_KEYS["simpo"] = METHOD_KEYS["cpo"] = METHOD_KEYS["dpo"] | {"nll_loss"}
METHOD_KEYS["orpo"] = METHOD_KEYS["dpo"] | {"nll_loss", "log_odds_ratio", "log_odds_chosen"}
METHOD_KEYS["reward"] = frozenset({"loss", "accuracy", "margin", "min_reward", "mean_reward", "max_reward"})
# TRL's GRPO and RLOO trainers, plus the reward-hacking watch's evaluations (training.trainer.rl_watch).
METHOD_KEYS["grpo"] = METHOD_KEYS["rloo"] = frozenset({
    "reward", "reward_std", "kl", "completions/mean_length", "completions/clipped_ratio", "mean_words",
    "degenerate_share", "repetition", "cut_off_share",
})


@dataclass(frozen=True)
class ChartView:
    chart: Chart
    has_data: bool

    @property
    def keys(self) -> str:
        return ",".join(self.chart.keys)

    @property
    def splits(self) -> str:
        return ",".join(self.chart.splits)


def run_charts(*, run: TuningRun, series: Series) -> list[ChartView]:
    """The charts worth drawing: those with data in one of their splits.

    While a run is queued or running, a chart that its method will fill gets a hidden place too (run_charts.js
    shows it when the first point arrives); once the run has ended, a chart without data is left out.
    """
    views = []
    for chart in CHARTS:
        has_data = any(series.get(split, {}).get(key) for split in chart.splits for key in chart.keys)
        expected = (
            run.is_active
            and bool(METHOD_KEYS.get(run.method, frozenset()) & set(chart.keys))
            and (run.validation_rows > 0 or chart.splits != ("eval",))
        )
        if has_data or expected:
            views.append(ChartView(chart, has_data))
    return views


