"""What the review commands share: a run given by id, with the two versions its review compares."""
from __future__ import annotations

from django.core.management.base import CommandError

from training.models import ModelVersion, TuningRun
from training.review import versions as review_versions


def run_with_review_versions(run_id: int) -> tuple[TuningRun, ModelVersion, ModelVersion]:
    """(run, base, tuned); CommandError when there is no such run or it has no tuned adapter yet."""
    run = TuningRun.objects.select_related("project", "base_model", "model_version").filter(pk=run_id).first()
    if run is None:
        raise CommandError(f"No run with id {run_id}.")
    try:
        base, tuned = review_versions.run_review_versions(run=run)
    except review_versions.ReviewError as error:
        raise CommandError(error.message) from error
    return run, base, tuned
