"""What an online RL run (GRPO, RLOO) trains on and against: the project's training prompts, and a reward model
that is clearly better than chance on pairs it never saw. Reads and checks only; `services.run_launch` writes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labeling.models import Project, Prompt
from training.models import TuningRun

# Fewer prompts than this give the policy too little to write about, and the watch too few to judge it on.
MIN_RL_PROMPTS = 4


class OnlineRlRefused(ValueError):
    """Why an online RL run cannot start, for the admin; ``field`` is the launch form's field it is about."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def prompt_rows(*, project: Project, include_heldout: bool = False) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One row per training prompt ({"prompt": messages}), prompts without candidates or votes included, and a
    summary of what was counted and left out. Held-out prompts stay out unless ``include_heldout``: the review's
    win rate on them is the figure the run is judged by."""
    rows, heldout, not_user = [], 0, 0
    for prompt in Prompt.objects.filter(project=project).order_by("id"):
        if prompt.split == Prompt.Split.HELDOUT and not include_heldout:
            heldout += 1
            continue
        messages = prompt.messages
        if not messages or messages[-1].get("role") != "user":
            not_user += 1
            continue
        rows.append({"prompt": messages})
    return rows, {"rows": len(rows), "held_out_prompts_kept_for_the_review": heldout,
                  "prompts_not_ending_with_a_user_turn": not_user}


@dataclass(frozen=True)
class RewardModelCheck:
    run: TuningRun
    accuracy: float
    interval: tuple[float, float]
    pairs: int

    def lineage(self) -> dict[str, Any]:
        return {"run": self.run.pk, "name": self.run.name, "accuracy": self.accuracy,
                "interval": list(self.interval), "pairs": self.pairs}


def succeeded_reward_models(*, project: Project) -> list[TuningRun]:
    """The project's reward models that finished, newest first: what the launch form offers."""
    return list(
        TuningRun.objects.filter(project=project, method=TuningRun.Method.REWARD, status=TuningRun.Status.SUCCEEDED)
        .order_by("-finished_at", "-id")
    )


def reward_model_check(*, project: Project, reward_run_id: int | None = None) -> RewardModelCheck:
    """The reward model an RL run trains against (the one picked, or the project's newest), once it is clearly
    above chance: the lower end of its held-out pairwise accuracy's 95% interval above 50%. A reward model at chance
    rewards noise, and the policy would learn whatever the noise happens to favour."""
    found = succeeded_reward_models(project=project)
    if reward_run_id is not None:
        found = [run for run in found if run.pk == reward_run_id]
        if not found:
            raise OnlineRlRefused(
                f"Run {reward_run_id} is not a finished reward model of {project.name!r}; pick one from the list.",
                field="reward_model",
            )
    if not found:
        raise OnlineRlRefused(
            f"{project.name!r} has no reward model yet. Online RL raises a reward model's score, so train one on the "
            "votes first (method: Reward model), then launch this run.",
            field="method",
        )
    run = found[0]
    held = (run.outcome or {}).get("reward_model") or {}
    accuracy, interval, pairs = held.get("accuracy"), held.get("interval"), held.get("pairs") or 0
    if accuracy is None or not interval:
        raise OnlineRlRefused(
            f"The reward model {run.name!r} has no held-out accuracy (it was trained without validation pairs), so "
            "nothing shows it is better than chance. Train one with a validation fraction above 0.",
            field="reward_model",
        )
    if interval[0] <= 0.5:
        raise OnlineRlRefused(
            f"The reward model {run.name!r} ranks {accuracy:.0%} of {pairs} held-out pairs right (95% interval "
            f"{interval[0]:.0%}–{interval[1]:.0%}), not clearly better than a coin flip: the policy would learn "
            "whatever its noise favours. Label more pairs and train a new reward model.",
            field="reward_model",
        )
    return RewardModelCheck(run=run, accuracy=float(accuracy), interval=(float(interval[0]), float(interval[1])),
                            pairs=int(pairs))
