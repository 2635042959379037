"""Reads for the admin dashboard: progress, per-annotator figures, agreement, disputed pairs.

Each selector runs a fixed, small number of queries whatever the project's size: counts are
aggregated in the database, and where a figure needs every vote (medians, agreement) the votes
are loaded once as tuples with ``values_list`` and the arithmetic is done in
``labeling.agreement``.
"""
from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypedDict

from django.db.models import Count, Q, QuerySet, Sum

from labeling.agreement import (
    PositionBias,
    flip_rate_from_agreement,
    krippendorff_alpha_nominal,
    pairwise_kappas,
    position_bias,
)
from labeling.models import PairTask, PairVote, Project, RateTask, Rating, TaskStatus


class Progress(TypedDict):
    tasks_total: int
    tasks_complete: int
    tasks_open: int
    votes: int  # compare votes
    ratings: int  # thumbs ratings
    votes_wanted: int  # sum of every task's overlap: what "done" means
    percent_complete: float  # complete tasks / all tasks, 0–100
    percent_votes: float  # judgements collected / wanted, 0–100 (moves before tasks complete)
    rewrites: int  # compare votes whose picked answer the annotator rewrote
    written: int  # compare votes on a tie or both-bad with an answer written in place of both


def project_progress(*, project: Project) -> Progress:
    """Task and judgement counts for ``project``, over pair and rate tasks of every purpose, and how many compare
    votes came with an answer the annotator wrote (three queries)."""
    totals: Counter[str] = Counter()
    for task_model in (PairTask, RateTask):
        row = task_model.objects.filter(project=project).aggregate(
            total=Count("pk"),
            complete=Count("pk", filter=Q(status=TaskStatus.COMPLETE)),
            collected=Sum("vote_count", default=0),
            wanted=Sum("overlap", default=0),
        )
        prefix = "pair" if task_model is PairTask else "rate"
        totals["total"] += row["total"]
        totals["complete"] += row["complete"]
        totals["wanted"] += row["wanted"]
        totals[f"{prefix}_collected"] += row["collected"]
    collected = totals["pair_collected"] + totals["rate_collected"]
    edits = PairVote.objects.filter(task__project=project).exclude(edited_text="").aggregate(
        rewrites=Count("pk", filter=Q(choice__in=["a", "b"])), written=Count("pk", filter=Q(choice__in=["tie", "both_bad"]))
    )
    return Progress(
        tasks_total=totals["total"],
        tasks_complete=totals["complete"],
        tasks_open=totals["total"] - totals["complete"],
        votes=totals["pair_collected"],
        ratings=totals["rate_collected"],
        votes_wanted=totals["wanted"],
        percent_complete=_percent(totals["complete"], totals["total"]),
        percent_votes=_percent(collected, totals["wanted"]),
        rewrites=edits["rewrites"],
        written=edits["written"],
    )


def _percent(part: int, whole: int) -> float:
    return round(100 * part / whole, 1) if whole else 0.0


@dataclass
class AnnotatorStat:
    annotator_id: int
    username: str
    pair_votes: int = 0
    ratings: int = 0
    median_seconds: float | None = None  # per judgement, over those with a recorded time
    tie_rate: float | None = None  # share of compare votes that were "tie"
    both_bad_rate: float | None = None
    position: PositionBias = field(default_factory=lambda: position_bias([]))
    last_active: datetime | None = None

    @property
    def judgements(self) -> int:
        return self.pair_votes + self.ratings


def annotator_stats(*, project: Project) -> list[AnnotatorStat]:
    """One row per annotator who judged anything in ``project`` (all purposes), busiest first (two queries).

    A time of 0 ms means "not measured" (an API vote with no time and no lease), so it is left out of
    the median instead of dragging it towards zero.
    """
    choices: dict[int, list[str]] = defaultdict(list)
    picks: dict[int, list[str | None]] = defaultdict(list)
    seconds: dict[int, list[float]] = defaultdict(list)
    stats: dict[int, AnnotatorStat] = {}

    def touch(annotator_id: int, username: str, time_ms: int, created_at: datetime) -> AnnotatorStat:
        stat = stats.get(annotator_id)
        if stat is None:
            stat = stats[annotator_id] = AnnotatorStat(annotator_id=annotator_id, username=username)
        if time_ms:
            seconds[annotator_id].append(time_ms / 1000)
        if stat.last_active is None or created_at > stat.last_active:
            stat.last_active = created_at
        return stat

    pair_rows = PairVote.objects.filter(task__project=project).values_list(
        "annotator_id", "annotator__username", "choice", "a_side", "time_spent_ms", "created_at"
    )
    for annotator_id, username, choice, a_side, time_ms, created_at in pair_rows:
        touch(annotator_id, username, time_ms, created_at).pair_votes += 1
        choices[annotator_id].append(choice)
        picks[annotator_id].append(_picked_side(choice, a_side))
    rating_rows = Rating.objects.filter(task__project=project).values_list(
        "annotator_id", "annotator__username", "time_spent_ms", "created_at"
    )
    for annotator_id, username, time_ms, created_at in rating_rows:
        touch(annotator_id, username, time_ms, created_at).ratings += 1

    for annotator_id, stat in stats.items():
        if seconds[annotator_id]:
            stat.median_seconds = statistics.median(seconds[annotator_id])
        if stat.pair_votes:
            counted = Counter(choices[annotator_id])
            stat.tie_rate = counted[PairVote.Choice.TIE] / stat.pair_votes
            stat.both_bad_rate = counted[PairVote.Choice.BOTH_BAD] / stat.pair_votes
            stat.position = position_bias(picks[annotator_id])
    return sorted(stats.values(), key=lambda s: (-s.judgements, s.username))


def _picked_side(choice: str, a_side: str) -> str | None:
    # The same rule as PairVote.picked_side, on tuples so no model instances are built.
    if choice == PairVote.Choice.A:
        return a_side
    if choice == PairVote.Choice.B:
        return "right" if a_side == "left" else "left"
    return None


@dataclass(frozen=True)
class PairKappa:
    first: str  # username
    second: str
    kappa: float | None
    n_shared: int


@dataclass(frozen=True)
class AgreementSummary:
    pair_alpha: float | None  # over compare votes on label tasks (a, b, tie, both_bad as four categories)
    pair_units: int  # label tasks with at least two votes: the ones alpha can use
    rating_alpha: float | None  # over thumbs ratings (up, down)
    rating_units: int
    pair_kappas: list[PairKappa]
    rating_kappas: list[PairKappa]


def project_agreement(*, project: Project) -> AgreementSummary:
    """Krippendorff's alpha and pairwise Cohen's kappa for ``project`` (two queries).

    Only label-purpose pair tasks count: review tasks are blind battles between model versions,
    where the question is which model wins, not whether annotators are consistent. Open tasks
    count too: alpha copes with missing votes, and two votes on a task are evidence already.
    """
    pair_votes: dict[int, dict[int, str]] = defaultdict(dict)
    names: dict[int, str] = {}
    pair_rows = PairVote.objects.filter(task__project=project, task__purpose=PairTask.Purpose.LABEL).values_list(
        "task_id", "annotator_id", "annotator__username", "choice"
    )
    for task_id, annotator_id, username, choice in pair_rows:
        pair_votes[task_id][annotator_id] = choice
        names[annotator_id] = username
    ratings: dict[int, dict[int, str]] = defaultdict(dict)
    rating_rows = Rating.objects.filter(task__project=project).values_list(
        "task_id", "annotator_id", "annotator__username", "value"
    )
    for task_id, annotator_id, username, value in rating_rows:
        ratings[task_id][annotator_id] = value
        names[annotator_id] = username

    def kappas(votes: dict[int, dict[int, str]]) -> list[PairKappa]:
        return [
            PairKappa(first=names[first], second=names[second], kappa=kappa, n_shared=n)
            for (first, second), (kappa, n) in pairwise_kappas(votes).items()
        ]

    return AgreementSummary(
        pair_alpha=krippendorff_alpha_nominal({t: list(v.values()) for t, v in pair_votes.items()}),
        pair_units=sum(1 for v in pair_votes.values() if len(v) >= 2),
        rating_alpha=krippendorff_alpha_nominal({t: list(v.values()) for t, v in ratings.items()}),
        rating_units=sum(1 for v in ratings.values() if len(v) >= 2),
        pair_kappas=kappas(pair_votes),
        rating_kappas=kappas(ratings),
    )


@dataclass(frozen=True)
class Disagreement:
    """A disputed pair with everything the disagreements page shows (relations already loaded)."""

    task: PairTask  # with prompt, completion_a, completion_b and adjudicated_by loaded
    votes: list[PairVote]  # with annotator loaded, in the order they were cast
    counts: dict[str, int]  # choice → votes

    @property
    def majority(self) -> str | None:
        """The choice with more than half the votes, if one has; None is "no strict majority"."""
        for choice, count in self.counts.items():
            if 2 * count > len(self.votes):
                return choice
        return None

    @property
    def adjudicated(self) -> bool:
        return bool(self.task.adjudicated_choice)

    @property
    def count_labels(self) -> list[tuple[str, int]]:
        """(label a person reads, votes), most votes first: templates cannot index a dict by a variable."""
        return [(_CHOICE_LABELS.get(choice, choice), count) for choice, count in self.counts.items()]

    @property
    def majority_label(self) -> str | None:
        majority = self.majority
        return _CHOICE_LABELS.get(majority, majority) if majority else None

    @property
    def adjudicated_label(self) -> str | None:
        choice = self.task.adjudicated_choice
        return _CHOICE_LABELS.get(choice, choice) if choice else None


_CHOICE_LABELS: dict[str, str] = {str(value): str(label) for value, label in PairVote.Choice.choices}


def _disputed_tasks(project: Project) -> QuerySet[PairTask]:
    # Complete label tasks whose votes are not unanimous: this covers both "no strict majority" and
    # "a majority with dissent"; Disagreement.majority tells them apart. Adjudicated tasks stay in
    # the list so that an admin can see, change or clear the final word.
    return (
        PairTask.objects.filter(project=project, status=TaskStatus.COMPLETE, purpose=PairTask.Purpose.LABEL)
        .annotate(n_choices=Count("votes__choice", distinct=True))
        .filter(n_choices__gt=1)
    )


def disagreement_count(*, project: Project) -> int:
    return _disputed_tasks(project).count()


def disagreement_list(*, project: Project, limit: int = 25, offset: int = 0) -> list[Disagreement]:
    """A page of disputed pairs in ``project``, oldest task first (two queries).

    Precondition: ``limit >= 0`` and ``offset >= 0`` (a view validates the page number first).
    """
    tasks = list(
        _disputed_tasks(project)
        .select_related("prompt", "completion_a", "completion_b", "adjudicated_by")
        .order_by("id")[offset : offset + limit]
    )
    return _with_votes(tasks)


def disagreement_get(*, project: Project, task_id: int) -> Disagreement | None:
    """One pair task of ``project`` shaped like a disagreement-list row (whether disputed or not); None if absent."""
    tasks = list(
        PairTask.objects.filter(project=project, pk=task_id).select_related(
            "prompt", "completion_a", "completion_b", "adjudicated_by"
        )
    )
    found = _with_votes(tasks)
    return found[0] if found else None


def _with_votes(tasks: list[PairTask]) -> list[Disagreement]:
    if not tasks:
        return []
    votes_by_task: dict[int, list[PairVote]] = defaultdict(list)
    for vote in PairVote.objects.filter(task__in=tasks).select_related("annotator").order_by("created_at", "id"):
        votes_by_task[vote.task_id].append(vote)
    return [
        Disagreement(
            task=task,
            votes=votes_by_task[task.pk],
            counts=dict(Counter(vote.choice for vote in votes_by_task[task.pk]).most_common()),
        )
        for task in tasks
    ]


# Below this many pairs of a/b votes by two annotators on one task, a flip-rate estimate is too rough to act on.
MIN_FLIP_RATE_PAIRS = 10


@dataclass(frozen=True)
class FlipRate:
    """How noisy the project's compare votes look: the estimated share of flipped votes, and its basis."""

    rate: float
    agreeing_pairs: int
    annotator_pairs: int
    tasks: int


def project_flip_rate(*, project: Project) -> FlipRate | None:
    """The share of randomly flipped compare votes implied by how often two annotators agree (a or b) on the same
    labeling task (``labeling.agreement.flip_rate_from_agreement``); None with fewer than MIN_FLIP_RATE_PAIRS
    annotator pairs, e.g. when every task has a single vote. Ties and both-bad are left out: they are not flips."""
    choices: dict[int, list[str]] = defaultdict(list)
    for task_id, choice in PairVote.objects.filter(
        task__project=project, task__purpose=PairTask.Purpose.LABEL, choice__in=["a", "b"]
    ).values_list("task_id", "choice"):
        choices[task_id].append(choice)
    agree = pairs = tasks = 0
    for votes in choices.values():
        if len(votes) < 2:
            continue
        tasks += 1
        n_a = votes.count("a")
        n_b = len(votes) - n_a
        agree += n_a * (n_a - 1) // 2 + n_b * (n_b - 1) // 2
        pairs += len(votes) * (len(votes) - 1) // 2
    if pairs < MIN_FLIP_RATE_PAIRS:
        return None
    return FlipRate(rate=flip_rate_from_agreement(agree, pairs), agreeing_pairs=agree, annotator_pairs=pairs, tasks=tasks)


def majority_label_error(winner_votes: int, loser_votes: int, flip_rate: float) -> float:
    """The chance that a pair's majority label is wrong, given how its a/b votes split and that each vote is
    flipped with ``flip_rate``, either answer being the better one beforehand: (e^w (1-e)^l) / (that + (1-e)^w e^l).
    At e = 0.2 a 2-0 pair is wrong 5.9% of the time, 3-0 1.5%, 2-1 20% (one vote cancels one), 1-0 20%."""
    if not 0 <= flip_rate < 0.5:
        raise ValueError(f"A flip rate must be in [0, 0.5), got {flip_rate!r}")
    wrong = flip_rate**winner_votes * (1 - flip_rate) ** loser_votes
    right = (1 - flip_rate) ** winner_votes * flip_rate**loser_votes
    return wrong / (wrong + right)


@dataclass(frozen=True)
class LabelNoise:
    """How often the majority labels a run trains on are wrong, on average over its decided pairs, and the vote
    splits it comes from ("2-0": pairs won 2 votes to 0)."""

    rate: float
    pairs: int
    splits: dict[str, int]


def project_label_noise(*, project: Project, flip_rate: float, unanimous_only: bool = False) -> LabelNoise | None:
    """The mean ``majority_label_error`` over the project's decided labeling pairs on train prompts (only the
    unanimous ones with ``unanimous_only``, as when split pairs are dropped); None when there are none.

    The per-vote flip rate overstates the noise of an aggregated label: robust DPO's smoothing is the share of
    training labels that are wrong, and two agreeing votes are wrong far less often than one."""
    choices: dict[int, list[str]] = defaultdict(list)
    for task_id, choice in PairVote.objects.filter(
        task__project=project, task__purpose=PairTask.Purpose.LABEL, task__prompt__split="train", choice__in=["a", "b"]
    ).values_list("task_id", "choice"):
        choices[task_id].append(choice)
    splits: Counter[tuple[int, int]] = Counter()
    for votes in choices.values():
        winner = max(votes.count("a"), votes.count("b"))
        loser = len(votes) - winner
        if winner == loser or (unanimous_only and loser):
            continue
        splits[winner, loser] += 1
    pairs = sum(splits.values())
    if not pairs:
        return None
    rate = sum(count * majority_label_error(w, lose, flip_rate) for (w, lose), count in splits.items()) / pairs
    return LabelNoise(rate=rate, pairs=pairs, splits={f"{w}-{lose}": n for (w, lose), n in sorted(splits.items())})
