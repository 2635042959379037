"""Reads for review: base and tuned outputs side by side, a run's blind-battle results, and the leaderboard."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import mean

from django.db.models import CharField, F, Q, QuerySet
from django.db.models.functions import Cast

from labeling.models import Completion, PairTask, PairVote, Project, Prompt, TaskStatus
from training.models import Battle, GenerationJob, ModelVersion
from training.trainer.review import LOSS, TIE, WIN, bradley_terry_bootstrap, win_rate

# The Bradley–Terry fit adds this many virtual tied games to each pair of versions that met, so a version that
# has won every battle so far gets a large, finite rating rather than an infinite one.
LEADERBOARD_PRIOR = 0.5
LEADERBOARD_ROUNDS = 100
# Keys of a run's metrics shown above its review, in this order when present.
KEY_METRICS = ("loss", "rewards/accuracies", "rewards/margins", "logps/chosen", "kl")
_OUTCOME = {PairVote.Choice.A: WIN, PairVote.Choice.B: LOSS, PairVote.Choice.TIE: TIE, PairVote.Choice.BOTH_BAD: TIE}


@dataclass(frozen=True)
class SideBySideRow:
    prompt: Prompt
    base: Completion | None
    tuned: Completion | None

    @property
    def differ(self) -> bool:
        return self.base is not None and self.tuned is not None and self.base.text.strip() != self.tuned.text.strip()

    @property
    def length_change(self) -> int | None:
        if self.base is None or self.tuned is None:
            return None
        return len(self.tuned.text) - len(self.base.text)


def latest_generated_by_prompt(*, prompt_ids: Sequence[int], version: ModelVersion) -> dict[int, Completion]:
    """Prompt id → the newest completion ``version`` generated for it."""
    latest: dict[int, Completion] = {}
    for completion in Completion.objects.filter(
        prompt_id__in=prompt_ids, model_version=version, source=Completion.Source.GENERATED
    ).order_by("id"):
        latest[completion.prompt_id] = completion
    return latest


def side_by_side(
    *, project: Project, base: ModelVersion, tuned: ModelVersion, search: str = "", only_different: bool = False
) -> list[SideBySideRow]:
    """Held-out prompts with the newest generated output of each version (None where there is none yet).

    ``search`` matches the prompt's messages or either output, case-insensitively; ``only_different`` keeps
    prompts where both outputs exist and differ."""
    prompts = Prompt.objects.filter(project=project, split=Prompt.Split.HELDOUT)
    search = search.strip()
    if search:
        versions = [base.pk, tuned.pk]
        matching_outputs = Completion.objects.filter(model_version__in=versions, text__icontains=search).values("prompt_id")
        prompts = prompts.annotate(messages_text=Cast("messages", CharField())).filter(
            Q(messages_text__icontains=search) | Q(pk__in=matching_outputs)
        )
    prompts_list = list(prompts.order_by("id"))
    ids = [p.pk for p in prompts_list]
    base_outputs = latest_generated_by_prompt(prompt_ids=ids, version=base)
    tuned_outputs = latest_generated_by_prompt(prompt_ids=ids, version=tuned)
    rows = [SideBySideRow(prompt=p, base=base_outputs.get(p.pk), tuned=tuned_outputs.get(p.pk)) for p in prompts_list]
    if only_different:
        rows = [row for row in rows if row.differ]
    return rows


def output_lengths(rows: list[SideBySideRow]) -> dict[str, float | int | None]:
    """Mean characters of each side over prompts where both exist, and how many prompts that is."""
    both = [row for row in rows if row.base is not None and row.tuned is not None]
    return {
        "pairs": len(both),
        "differ": sum(1 for row in both if row.differ),
        "base_mean": mean(len(row.base.text) for row in both) if both else None,
        "tuned_mean": mean(len(row.tuned.text) for row in both) if both else None,
    }


@dataclass
class BattleResults:
    """A run's blind battles from the tuned version's point of view; one vote is one battle."""

    wins: int = 0
    ties: int = 0
    losses: int = 0
    both_bad: int = 0
    tasks: int = 0
    tasks_complete: int = 0
    rate: float | None = None
    low: float | None = None
    high: float | None = None
    mean_length_change: float | None = None
    base_mean_length: float | None = None
    tuned_mean_length: float | None = None
    tuned_longer_win_rate: float | None = None
    battles: list[Battle] = field(default_factory=list)

    @property
    def votes(self) -> int:
        return self.wins + self.ties + self.losses

    @property
    def rate_percent(self) -> str:
        return "" if self.rate is None else f"{100 * self.rate:.1f}%"

    @property
    def tuned_longer_percent(self) -> str:
        return "" if self.tuned_longer_win_rate is None else f"{100 * self.tuned_longer_win_rate:.1f}%"


def _review_tasks_between(project: Project, first: ModelVersion, second: ModelVersion) -> QuerySet[PairTask]:
    versions = [first.pk, second.pk]
    return PairTask.objects.filter(
        project=project,
        purpose=PairTask.Purpose.REVIEW,
        completion_a__model_version__in=versions,
        completion_b__model_version__in=versions,
    ).exclude(completion_a__model_version=F("completion_b__model_version"))


def battle_results(*, project: Project, tuned: ModelVersion, base: ModelVersion) -> BattleResults:
    """Win / tie / loss of ``tuned`` against ``base`` over all votes on review pairs between them, the win rate
    (ties half) with a 95% Wilson interval, and the length bias: the mean characters the tuned output adds."""
    tasks = list(_review_tasks_between(project, tuned, base).select_related("completion_a", "completion_b"))
    result = BattleResults(
        tasks=len(tasks),
        tasks_complete=sum(1 for t in tasks if t.status == TaskStatus.COMPLETE),
        battles=list(Battle.objects.filter(project=project, version_a__in=[tuned, base], version_b__in=[tuned, base])),
    )
    if not tasks:
        return result
    by_task = {t.pk: t for t in tasks}
    longer_points: list[float] = []
    for task_id, choice in PairVote.objects.filter(task_id__in=by_task).values_list("task_id", "choice"):
        task = by_task[task_id]
        tuned_is_a = task.completion_a.model_version_id == tuned.pk
        if choice in (PairVote.Choice.TIE, PairVote.Choice.BOTH_BAD):
            result.ties += 1
            result.both_bad += choice == PairVote.Choice.BOTH_BAD
            point = 0.5
        elif (choice == PairVote.Choice.A) == tuned_is_a:
            result.wins += 1
            point = 1.0
        else:
            result.losses += 1
            point = 0.0
        tuned_text, base_text = (task.completion_a.text, task.completion_b.text) if tuned_is_a else (task.completion_b.text, task.completion_a.text)
        if len(tuned_text) > len(base_text):
            longer_points.append(point)
    if result.votes:
        result.rate, result.low, result.high = win_rate(result.wins, result.ties, result.losses)
    if longer_points:
        result.tuned_longer_win_rate = mean(longer_points)
    tuned_lengths, base_lengths = [], []
    for task in tasks:
        a, b = len(task.completion_a.text), len(task.completion_b.text)
        tuned_len, base_len = (a, b) if task.completion_a.model_version_id == tuned.pk else (b, a)
        tuned_lengths.append(tuned_len)
        base_lengths.append(base_len)
    result.tuned_mean_length = mean(tuned_lengths)
    result.base_mean_length = mean(base_lengths)
    result.mean_length_change = result.tuned_mean_length - result.base_mean_length
    return result


@dataclass(frozen=True)
class LeaderboardRow:
    version: ModelVersion
    rating: float
    low: float
    high: float
    battles: int
    wins: int
    ties: int
    losses: int


def review_battles(*, project: Project) -> list[tuple[int, int, float]]:
    """Every vote on a review pair between two model versions: (version of A, version of B, outcome for A)."""
    rows = PairVote.objects.filter(
        task__project=project,
        task__purpose=PairTask.Purpose.REVIEW,
        task__completion_a__model_version__isnull=False,
        task__completion_b__model_version__isnull=False,
    ).values_list("task__completion_a__model_version_id", "task__completion_b__model_version_id", "choice")
    return [(a, b, _OUTCOME[choice]) for a, b, choice in rows if a != b]


def leaderboard(*, project: Project, rounds: int = LEADERBOARD_ROUNDS, seed: int = 0) -> list[LeaderboardRow]:
    """The project's model versions ranked by a Bradley–Terry fit of all review votes, best first, with 95%
    bootstrap intervals (``rounds`` resamples, seeded so a reload shows the same figures)."""
    battles = review_battles(project=project)
    fitted = bradley_terry_bootstrap(
        [(str(a), str(b), o) for a, b, o in battles], rounds=rounds, seed=seed, prior=LEADERBOARD_PRIOR
    )
    counts: dict[int, list[int]] = {}
    for a, b, outcome in battles:
        for version, score in ((a, outcome), (b, 1.0 - outcome)):
            tally = counts.setdefault(version, [0, 0, 0])
            tally[0 if score == WIN else 1 if score == TIE else 2] += 1
    versions = ModelVersion.objects.in_bulk([int(k) for k in fitted])
    rows = [
        LeaderboardRow(
            version=versions[int(key)], rating=rating, low=low, high=high,
            battles=sum(counts[int(key)]), wins=counts[int(key)][0], ties=counts[int(key)][1], losses=counts[int(key)][2],
        )
        for key, (rating, low, high) in fitted.items()
    ]
    return sorted(rows, key=lambda row: (-row.rating, row.version.name))


def generation_jobs(*, project: Project, run_id: int | None = None, limit: int = 10) -> list[GenerationJob]:
    jobs = GenerationJob.objects.filter(project=project).prefetch_related("model_versions")
    if run_id is not None:
        jobs = jobs.filter(run_id=run_id)
    return list(jobs.order_by("-id")[:limit])


def project_versions_with_outputs(*, project: Project) -> list[ModelVersion]:
    """Model versions that have generated completions for this project's prompts."""
    ids = Completion.objects.filter(prompt__project=project, model_version__isnull=False).values("model_version_id")
    return list(ModelVersion.objects.filter(pk__in=ids).select_related("base_model").order_by("name"))
