"""What a review generation job does once its outputs are stored: measure whether the tuned model moved, and
create the review tasks annotators judge (blind battles in a compare project, held-out thumbs in a rate one)."""
from __future__ import annotations

from training.models import GenerationJob, ModelVersion
from training.trainer.review import GenerationSettings


def review_outputs_finish(*, job: GenerationJob, versions: list[ModelVersion], settings: GenerationSettings) -> int:
    """Called by the worker after a review job stored its outputs; returns how many review tasks it created."""
    if not job.create_review_tasks:
        return 0
    from training.review.battles import battles_create

    battle = battles_create(
        project=job.project, version_a=versions[0], version_b=versions[1], run=job.run,
        prompt_ids=job.prompt_ids, created_by=job.created_by,
    )
    return battle.tasks_created
