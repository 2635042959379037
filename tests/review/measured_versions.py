"""Rows that make a trained version measured, as the worker and annotators leave them: a review job's stored
movement (its KL from the base), blind battles against the base and their votes, and more versions in one project."""
from __future__ import annotations

from labeling.models import PairTask
from tests.factories import UserFactory, make_pair_vote, make_run
from tests.review.conftest import MATCHED, SETTINGS, ReviewSetup, add_output
from training.models import GenerationJob, ModelVersion, TuningRun
from training.review import battles as review_battles


def review_job_with_movement(setup: ReviewSetup, run: TuningRun, *, kl: float | None, tokens: int = 120) -> GenerationJob:
    """A finished review job of ``run`` on the held-out prompts that stored what it measured, as the worker does."""
    return GenerationJob.objects.create(
        project=setup.project, run=run, prompt_ids=[p.pk for p in setup.heldout], settings={**MATCHED, "n": 1},
        purpose="review", status="succeeded",
        movement={"pairs": len(setup.heldout), "identical": 0, "identical_share": 0.0, "kl_per_token": kl, "tokens": tokens},
    )


def battles_voted(setup: ReviewSetup, tuned: ModelVersion, outcomes: list[str]) -> None:
    """Blind battles of ``tuned`` against the base, one vote each in prompt order: "tuned", "base" or "tie" won."""
    review_battles.battles_create(project=setup.project, version_a=tuned, version_b=setup.base, seed=3)
    versions = {tuned.pk, setup.base.pk}
    tasks = sorted(
        (t for t in PairTask.objects.filter(purpose="review").select_related("completion_a", "completion_b")
         if {t.completion_a.model_version_id, t.completion_b.model_version_id} == versions),
        key=lambda t: t.prompt_id,
    )
    annotator = UserFactory()
    for task, outcome in zip(tasks, outcomes, strict=True):
        tuned_is_a = task.completion_a.model_version_id == tuned.pk
        choice = {"tuned": "a" if tuned_is_a else "b", "base": "b" if tuned_is_a else "a"}.get(outcome, outcome)
        make_pair_vote(task, annotator, choice)


def another_version(setup: ReviewSetup, *, method: str, name: str, outputs: bool) -> TuningRun:
    """A further succeeded run of ``method`` in the project with its own version and, if asked, one held-out output
    per prompt made with the set-up's settings."""
    run = make_run(setup.project, status="succeeded", method=method)
    version = ModelVersion.objects.create(name=name, base_model=setup.base.base_model, adapter_path=f"/nonexistent/{name}")
    TuningRun.objects.filter(pk=run.pk).update(model_version=version, name=f"{name} run")
    if outputs:
        for n, prompt in enumerate(setup.heldout):
            add_output(prompt, version, f"{name} says {n}, differently.", SETTINGS)
    run.refresh_from_db()
    return run
