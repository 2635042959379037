"""The project's leaderboard: its model versions ranked by a Bradley–Terry fit of the votes on MATCHED review pairs
on held-out prompts, with bootstrap intervals."""
from __future__ import annotations

from dataclasses import dataclass

from labeling.models import PairTask, PairVote, Project, Prompt
from training.models import ModelVersion
from training.review import figures
from training.review.results import _OUTCOME
from training.trainer.ratings import TIE, WIN, bradley_terry_bootstrap

# The Bradley–Terry fit adds this many virtual tied games to each pair of versions that met, so a version that
# has won every battle so far gets a large, finite rating rather than an infinite one.
LEADERBOARD_PRIOR = 0.5
LEADERBOARD_ROUNDS = 100


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

    @property
    def contaminated(self) -> bool:
        return self.version.saw_heldout

    @property
    def label(self) -> str:
        """The version's name, saying "(base)" once for a base model alone."""
        return self.version.name if self.version.adapter_path else figures.version_label(self.version.name, role="base")


def review_battles(*, project: Project) -> list[tuple[int, int, float, int]]:
    """Every vote on a MATCHED review pair between two model versions on a held-out prompt: (version of A,
    version of B, outcome for A, prompt). Legacy unmatched pairs are left out, and so are battles on train
    prompts: those are the next round's preference data, not an evaluation."""
    rows = (
        PairVote.objects.filter(
            task__project=project,
            task__purpose=PairTask.Purpose.REVIEW,
            task__prompt__split=Prompt.Split.HELDOUT,
            task__completion_a__model_version__isnull=False,
            task__completion_b__model_version__isnull=False,
        )
        .exclude(task__matched_settings={})
        .values_list("task__completion_a__model_version_id", "task__completion_b__model_version_id", "choice",
                     "task__prompt_id")
    )
    return [(a, b, _OUTCOME[choice], prompt) for a, b, choice, prompt in rows if a != b]


def leaderboard(*, project: Project, rounds: int = LEADERBOARD_ROUNDS, seed: int = 0) -> list[LeaderboardRow]:
    """The project's model versions ranked by a Bradley–Terry fit of the matched review votes on held-out prompts,
    best first, with 95% bootstrap intervals that resample prompts (``rounds`` resamples, seeded so a reload
    shows the same figures)."""
    battles = review_battles(project=project)
    fitted = bradley_terry_bootstrap(
        [(str(a), str(b), o) for a, b, o, _ in battles], rounds=rounds, seed=seed, prior=LEADERBOARD_PRIOR,
        groups=[prompt for *_, prompt in battles],
    )
    counts: dict[int, list[int]] = {}
    for a, b, outcome, _ in battles:
        for version, score in ((a, outcome), (b, 1.0 - outcome)):
            tally = counts.setdefault(version, [0, 0, 0])
            tally[0 if score == WIN else 1 if score == TIE else 2] += 1
    versions = ModelVersion.objects.select_related("parent").in_bulk([int(k) for k in fitted])
    rows = [
        LeaderboardRow(
            version=versions[int(key)], rating=rating, low=low, high=high,
            battles=sum(counts[int(key)]), wins=counts[int(key)][0], ties=counts[int(key)][1], losses=counts[int(key)][2],
        )
        for key, (rating, low, high) in fitted.items()
    ]
    return sorted(rows, key=lambda row: (-row.rating, row.version.name))
