"""Blind battles: review pair tasks between two model versions' outputs on the same prompts."""
from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

from django.db import transaction

from labeling.models import PairTask, Project, Prompt
from training.models import Battle, ModelVersion, TuningRun
from training.review.selectors import latest_generated_by_prompt
from training.review.versions import ReviewError

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def battles_create(
    *,
    project: Project,
    version_a: ModelVersion,
    version_b: ModelVersion,
    run: TuningRun | None = None,
    prompt_ids: Sequence[int] | None = None,
    created_by: User | None = None,
    seed: int | None = None,
) -> Battle:
    """Blind review pairs between two versions: for each prompt (the project's held-out prompts unless given)
    with a generated completion from both, one review PairTask of the newest completion of each, the sides in
    random order. Prompts that already have a battle between these two versions are skipped, so calling it
    again only adds battles for new outputs. Raises ReviewError when nothing could be paired."""
    if version_a.pk == version_b.pk:
        raise ReviewError("A battle needs two different model versions.")
    if project.mode != Project.Mode.COMPARE:
        raise ReviewError("Blind battles are voted on in the compare screen: this project is a thumbs (rate) project.")
    if prompt_ids is None:
        prompt_ids = list(
            Prompt.objects.filter(project=project, split=Prompt.Split.HELDOUT).order_by("id").values_list("pk", flat=True)
        )
    else:
        prompt_ids = list(Prompt.objects.filter(project=project, pk__in=prompt_ids).values_list("pk", flat=True))
    if not prompt_ids:
        raise ReviewError(f"{project.name!r} has no held-out prompts to battle on.")
    outputs_a = latest_generated_by_prompt(prompt_ids=prompt_ids, version=version_a)
    outputs_b = latest_generated_by_prompt(prompt_ids=prompt_ids, version=version_b)
    ready = sorted(set(outputs_a) & set(outputs_b))
    if not ready:
        raise ReviewError(
            f"No held-out prompt has outputs from both {version_a.name!r} and {version_b.name!r} yet: generate them first."
        )
    versions = {version_a.pk, version_b.pk}
    already = set(
        PairTask.objects.filter(
            project=project, purpose=PairTask.Purpose.REVIEW, prompt_id__in=ready,
            completion_a__model_version__in=versions, completion_b__model_version__in=versions,
        ).values_list("prompt_id", flat=True)
    )
    rng = random.Random(seed)
    with transaction.atomic():
        created = 0
        for prompt_id in ready:
            if prompt_id in already:
                continue
            first, second = outputs_a[prompt_id], outputs_b[prompt_id]
            # Stored order is random too, so neither "A" in the data nor the left side means "tuned".
            if rng.random() < 0.5:
                first, second = second, first
            PairTask.objects.create(
                project=project, prompt_id=prompt_id, completion_a=first, completion_b=second,
                purpose=PairTask.Purpose.REVIEW, overlap=project.overlap,
            )
            created += 1
        battle = Battle.objects.create(
            project=project, version_a=version_a, version_b=version_b, run=run, tasks_created=created,
            prompts_missing_outputs=len(prompt_ids) - len(ready), created_by=created_by,
        )
    return battle
