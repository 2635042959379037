"""Reads of what people judged: blind battles of a tuned version against the base in matched comparisons (raw,
paired and length-controlled win rates), and held-out thumbs in rate projects. Only votes on MATCHED review pairs
count (``training.review.comparisons``)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import mean
from typing import Any

from django.db.models import F, QuerySet

from labeling.models import PairTask, PairVote, Project, Prompt, RateTask, Rating, TaskStatus
from training.models import Battle, ModelVersion
from training.review import figures
from training.review.comparisons import (
    describe_settings,
    matched_settings_of,
    sample_of,
    settings_key,
)
from training.trainer.ratings import LOSS, TIE, WIN, win_rate
from training.trainer.text import word_count
from training.trainer.win_rates import (
    LengthControlledWinRate,
    PairedWinRate,
    length_controlled_win_rate,
    paired_win_rate,
    thumbs_up_rate,
)

# Prompt-level bootstrap rounds for the paired and the length-controlled win rates on the pages.
PAIRED_ROUNDS = 2000
LENGTH_CONTROLLED_ROUNDS = 500
CONTAMINATED = "trained on held-out votes: its win rate is contaminated"
_OUTCOME = {PairVote.Choice.A: WIN, PairVote.Choice.B: LOSS, PairVote.Choice.TIE: TIE, PairVote.Choice.BOTH_BAD: TIE}


# Answer length for the length-controlled win rate: words, as a reader counts them.
words = word_count



# ---------------------------------------------------------------- blind battles


@dataclass(frozen=True)
class BattleRound:
    """One ``battles_create`` call: what it made, in which comparison."""

    battle: Battle

    @property
    def settings_label(self) -> str:
        return describe_settings(self.battle.settings) if self.battle.settings else ""


@dataclass
class BattleResults:
    """Blind battles of ``tuned`` against ``base`` in matched comparisons; one vote is one battle.

    ``rate`` / ``low`` / ``high`` is the raw win rate (ties half) with a Wilson interval that treats every vote
    as independent; ``paired`` clusters the votes by prompt (bootstrap over prompts, sign test over prompts);
    ``length_controlled`` is the win rate at equal answer lengths (in words)."""

    wins: int = 0
    ties: int = 0
    losses: int = 0
    both_bad: int = 0
    tasks: int = 0  # matched review pairs
    tasks_complete: int = 0
    prompts: int = 0  # prompts those pairs are on
    unmatched: int = 0  # legacy review pairs of outputs with different or unknown settings: never counted
    on_train_prompts: int = 0  # battles on train prompts: next-round preference data, never counted
    rate: float | None = None
    low: float | None = None
    high: float | None = None
    paired: PairedWinRate | None = None
    length_controlled: LengthControlledWinRate | None = None
    mean_length_change: float | None = None  # characters
    base_mean_length: float | None = None
    tuned_mean_length: float | None = None
    mean_word_change: float | None = None
    tuned_longer_win_rate: float | None = None
    contaminated: bool = False
    settings_label: str = ""
    battles: list[BattleRound] = field(default_factory=list)

    @property
    def votes(self) -> int:
        return self.wins + self.ties + self.losses

    @property
    def identical_skipped(self) -> int:
        return sum(r.battle.identical_skipped for r in self.battles)

    @property
    def rate_percent(self) -> str:
        return "" if self.rate is None else figures.percent(self.rate)

    @property
    def interval_percent(self) -> str:
        return figures.percent_interval(self.low, self.high)

    @property
    def paired_percent(self) -> str:
        return figures.percent(self.paired.rate) if self.paired else figures.DASH

    @property
    def paired_interval(self) -> str:
        return figures.percent_interval(self.paired.low, self.paired.high) if self.paired else figures.DASH

    @property
    def sign_test(self) -> str:
        return figures.p_value(self.paired.sign_test_p) if self.paired else figures.DASH

    @property
    def lc_percent(self) -> str:
        return figures.percent(self.length_controlled.rate) if self.length_controlled else figures.DASH

    @property
    def lc_interval(self) -> str:
        lc = self.length_controlled
        return figures.percent_interval(lc.low, lc.high) if lc else figures.DASH

    @property
    def length_coefficient(self) -> str:
        if self.length_controlled is None:
            return figures.DASH
        # Three decimals are all the precision a reader can use; a fit's 6e-17 is a plain 0.
        return figures.significant(round(self.length_controlled.length_coefficient, 3))

    @property
    def length_change_text(self) -> str:
        return figures.signed(self.mean_length_change, "chars")

    @property
    def word_change_text(self) -> str:
        return figures.signed(self.mean_word_change, "words")

    @property
    def tuned_longer_percent(self) -> str:
        return "" if self.tuned_longer_win_rate is None else figures.percent(self.tuned_longer_win_rate)


def _review_tasks_between(
    project: Project, first: ModelVersion, second: ModelVersion, *, split: str = Prompt.Split.HELDOUT
) -> QuerySet[PairTask]:
    """Review pairs between the two versions on ``split`` prompts: held-out ones measure the model; battles on
    train prompts are the next round's preference data and never enter a win rate."""
    versions = [first.pk, second.pk]
    return PairTask.objects.filter(
        project=project,
        purpose=PairTask.Purpose.REVIEW,
        prompt__split=split,
        completion_a__model_version__in=versions,
        completion_b__model_version__in=versions,
    ).exclude(completion_a__model_version=F("completion_b__model_version"))


def battle_results(
    *, project: Project, tuned: ModelVersion, base: ModelVersion, settings: dict[str, Any] | None = None,
    rounds: int = PAIRED_ROUNDS,
) -> BattleResults:
    """Win / tie / loss of ``tuned`` against ``base`` over the votes on MATCHED review pairs between them (one
    comparison's if ``settings`` is given, else every matched pair), with the raw, paired and length-controlled
    win rates. Unmatched legacy pairs are only counted in ``unmatched``."""
    every = _review_tasks_between(project, tuned, base)
    tasks = list(every.exclude(matched_settings={}).select_related("completion_a", "completion_b"))
    if settings is not None:
        wanted = settings_key(matched_settings_of(settings))
        tasks = [t for t in tasks if settings_key(t.matched_settings) == wanted]
    battles = list(Battle.objects.filter(project=project, version_a__in=[tuned, base], version_b__in=[tuned, base]))
    if settings is not None:
        battles = [b for b in battles if settings_key(matched_settings_of(b.settings)) == settings_key(matched_settings_of(settings))]
    result = BattleResults(
        tasks=len(tasks),
        tasks_complete=sum(1 for t in tasks if t.status == TaskStatus.COMPLETE),
        prompts=len({t.prompt_id for t in tasks}),
        unmatched=every.filter(matched_settings={}).count(),
        on_train_prompts=_review_tasks_between(project, tuned, base, split=Prompt.Split.TRAIN).count(),
        contaminated=tuned.saw_heldout or base.saw_heldout,
        settings_label=describe_settings(settings, _samples_of(tasks)) if settings is not None else "",
        battles=[BattleRound(battle=b) for b in battles],
    )
    if not tasks:
        return result
    by_task = {t.pk: t for t in tasks}
    longer_points: list[float] = []
    outcomes: list[tuple[int, float]] = []
    lengths: list[tuple[int, float, float, float]] = []
    for task_id, choice in PairVote.objects.filter(task_id__in=by_task).order_by("id").values_list("task_id", "choice"):
        task = by_task[task_id]
        tuned_is_a = task.completion_a.model_version_id == tuned.pk
        if choice in (PairVote.Choice.TIE, PairVote.Choice.BOTH_BAD):
            result.ties += 1
            result.both_bad += choice == PairVote.Choice.BOTH_BAD
            point = TIE
        elif (choice == PairVote.Choice.A) == tuned_is_a:
            result.wins += 1
            point = WIN
        else:
            result.losses += 1
            point = LOSS
        tuned_text, base_text = _sides(task, tuned_is_a)
        if len(tuned_text) > len(base_text):
            longer_points.append(point)
        outcomes.append((task.prompt_id, point))
        lengths.append((task.prompt_id, point, words(tuned_text), words(base_text)))
    if result.votes:
        result.rate, result.low, result.high = win_rate(result.wins, result.ties, result.losses)
        result.paired = paired_win_rate(outcomes, rounds=rounds)
        result.length_controlled = length_controlled_win_rate(
            lengths, rounds=min(rounds, LENGTH_CONTROLLED_ROUNDS), length_unit="words"
        )
    if longer_points:
        result.tuned_longer_win_rate = mean(longer_points)
    pairs = [_sides(task, task.completion_a.model_version_id == tuned.pk) for task in tasks]
    result.tuned_mean_length = mean(len(t) for t, _ in pairs)
    result.base_mean_length = mean(len(b) for _, b in pairs)
    result.mean_length_change = result.tuned_mean_length - result.base_mean_length
    result.mean_word_change = mean(words(t) - words(b) for t, b in pairs)
    return result


def _sides(task: PairTask, tuned_is_a: bool) -> tuple[str, str]:
    """(tuned text, base text)."""
    if tuned_is_a:
        return task.completion_a.text, task.completion_b.text
    return task.completion_b.text, task.completion_a.text


def _samples_of(tasks: Sequence[PairTask]) -> list[int]:
    return sorted({sample_of(t.completion_a.generation_settings) for t in tasks}) or [0]


# ---------------------------------------------------------------- held-out thumbs (rate projects)


@dataclass(frozen=True)
class VersionThumbs:
    version: ModelVersion
    tasks: int
    ups: int
    downs: int
    rate: float | None
    low: float | None
    high: float | None

    @property
    def contaminated(self) -> bool:
        return self.version.saw_heldout

    @property
    def rate_percent(self) -> str:
        return figures.percent(self.rate)

    @property
    def interval_percent(self) -> str:
        return figures.percent_interval(self.low, self.high)


@dataclass(frozen=True)
class ThumbsResults:
    """Held-out thumbs (RateTask purpose "review") on each version's outputs in one comparison."""

    base: VersionThumbs
    tuned: VersionThumbs

    @property
    def difference(self) -> float | None:
        if self.base.rate is None or self.tuned.rate is None:
            return None
        return self.tuned.rate - self.base.rate

    @property
    def difference_points(self) -> str:
        """The difference in percentage points, signed: "+12.5 points"."""
        if self.difference is None:
            return figures.DASH
        return f"{100 * self.difference:+.1f} points"

    @property
    def tasks(self) -> int:
        return self.base.tasks + self.tuned.tasks


def heldout_thumbs(
    *, project: Project, base: ModelVersion, tuned: ModelVersion, settings: dict[str, Any] | None = None
) -> ThumbsResults:
    """Thumbs-up rate of each version's held-out outputs with a 95% Wilson interval (each thumb counted as
    independent), restricted to one comparison when ``settings`` is given."""
    wanted = settings_key(matched_settings_of(settings)) if settings is not None else None
    tasks = RateTask.objects.filter(
        project=project, purpose=RateTask.Purpose.REVIEW, completion__model_version__in=[base, tuned]
    ).values_list("pk", "completion__model_version_id", "completion__generation_settings")
    task_version = {
        pk: version_id for pk, version_id, gs in tasks if wanted is None or settings_key(matched_settings_of(gs)) == wanted
    }
    counts = {base.pk: [0, 0, 0], tuned.pk: [0, 0, 0]}  # tasks, ups, downs
    for version_id in task_version.values():
        counts[version_id][0] += 1
    for task_id, value in Rating.objects.filter(task_id__in=list(task_version)).values_list("task_id", "value"):
        counts[task_version[task_id]][1 if value == Rating.Value.UP else 2] += 1

    def one(version: ModelVersion) -> VersionThumbs:
        n_tasks, ups, downs = counts[version.pk]
        rate = low = high = None
        if ups + downs:
            rate, low, high = thumbs_up_rate(ups, downs)
        return VersionThumbs(version=version, tasks=n_tasks, ups=ups, downs=downs, rate=rate, low=low, high=high)

    return ThumbsResults(base=one(base), tuned=one(tuned))


