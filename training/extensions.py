"""What training hands labeling's queue and pages (labeling/extensions.py), so that labeling never imports training."""
from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from labeling.models import Project
from training.models import BaseModel, ModelVersion
from training.review import rewards as review_rewards
from training.review import selectors as review_selectors
from training.review.versions import base_version_get_or_create
from training.selectors import LoopWalkthrough, loop_walkthrough


def pair_order(project: Project, candidates: QuerySet) -> QuerySet | None:
    return review_rewards.pairs_uncertain_first(project, candidates)


def dashboard_context(project: Project, *, polled: bool = False) -> dict[str, Any]:
    """The running generation jobs; on the full page also the note on the label order."""
    context: dict[str, Any] = {"generation_jobs": review_selectors.active_generation_jobs(project=project)}
    if not polled:
        context["label_order_note"] = review_rewards.label_order_note(project=project)
    return context


def home_walkthrough(projects: QuerySet, chosen_id: int | None) -> LoopWalkthrough | None:
    return loop_walkthrough(projects=projects, chosen_id=chosen_id)


def demo_base_version() -> ModelVersion | None:
    """The bundled base model's version, when `prepare_base_model` has registered it (`make run` does first)."""
    base = BaseModel.objects.order_by("id").first()
    return base_version_get_or_create(base_model=base) if base is not None else None
