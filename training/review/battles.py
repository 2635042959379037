"""Blind battles: review pair tasks between two model versions' MATCHED outputs (same prompt, same generation
settings, same sample index), never between outputs made differently."""
from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.db import transaction

from labeling.models import PairTask, Project, Prompt
from training.models import Battle, ModelVersion, TuningRun
from training.review import matched_outputs as review_matched_outputs
from training.review.comparisons import describe_settings, matched_settings_of
from training.review.versions import ReviewError

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def battles_create(
    *,
    project: Project,
    version_a: ModelVersion,
    version_b: ModelVersion,
    settings: dict[str, Any] | None = None,
    run: TuningRun | None = None,
    prompt_ids: Sequence[int] | None = None,
    created_by: User | None = None,
    seed: int | None = None,
    mixed_engines: bool = False,
) -> Battle:
    """Blind review pairs in one comparison: for each prompt (the project's held-out prompts unless given) and
    each sample that both versions have an output for, made with ``settings`` (sample index aside; default: the
    newest comparison the two versions share), one review PairTask of those two outputs, sides in random order,
    ``matched_settings`` set. A pair of identical texts is never battled: it is counted in
    ``Battle.identical_skipped``. Pairs battled before are skipped, so calling it again only adds new ones.

    Outputs are matched within one engine and precision; ``mixed_engines`` (an admin's explicit choice) also pairs
    across engines where a prompt and sample has no pair within one, and the battle records how many it did.

    Raises ReviewError when the two versions have no matched outputs at all."""
    if version_a.pk == version_b.pk:
        raise ReviewError("A battle needs two different model versions.")
    if project.mode != Project.Mode.COMPARE:
        raise ReviewError("Blind battles are voted on in the compare screen: this project is a thumbs (rate) project.")
    ids = _battle_prompt_ids(project, prompt_ids)
    if settings is None:
        settings = _newest_shared_settings(project, version_a, version_b, ids, run)
    settings = matched_settings_of(settings)
    pairs = review_matched_outputs.matched_pairs(
        project=project, first=version_a, second=version_b, settings=settings, prompt_ids=ids, mixed_engines=mixed_engines
    )
    if not pairs:
        raise ReviewError(
            f"No held-out prompt has outputs from both {version_a.name!r} and {version_b.name!r} made with "
            f"{describe_settings(settings) or 'recorded settings'} by one engine in one precision yet: generate them "
            "first (or, in the review form, reuse answers another engine wrote)."
        )
    existing, legacy = _existing_review_pairs(project, [pair for pair in pairs if not pair.identical])
    rng = random.Random(seed)
    created = identical = 0
    with transaction.atomic():
        # A pair stored before review pairs were stamped with their settings is matched all the same (both
        # outputs were made with ``settings``): stamp it, so its votes start counting, rather than battle it twice.
        PairTask.objects.filter(pk__in=legacy).update(matched_settings=settings)
        for pair in pairs:
            if pair.identical:
                identical += 1
                continue
            if frozenset((pair.first.pk, pair.second.pk)) in existing:
                continue
            first, second = pair.first, pair.second
            # Stored order is random too, so neither "A" in the data nor the left side means "tuned".
            if rng.random() < 0.5:
                first, second = second, first
            PairTask.objects.create(
                project=project, prompt_id=pair.prompt_id, completion_a=first, completion_b=second,
                purpose=PairTask.Purpose.REVIEW, overlap=project.overlap, matched_settings=settings,
            )
            created += 1
        battle = Battle.objects.create(
            project=project, version_a=version_a, version_b=version_b, run=run, tasks_created=created,
            prompts_missing_outputs=len(ids) - len({p.prompt_id for p in pairs}), settings=settings,
            identical_skipped=identical, created_by=created_by, engines=review_matched_outputs.engines_of_pairs(pairs)[:200],
            mixed_engines=sum(1 for pair in pairs if pair.engines_differ),
        )
    return battle


def _battle_prompt_ids(project: Project, prompt_ids: Sequence[int] | None) -> list[int]:
    """The prompts to battle on, in id order: ``prompt_ids`` of the project, else its held-out prompts; ReviewError
    when there are none."""
    prompts = Prompt.objects.filter(project=project)
    if prompt_ids is None:
        prompts = prompts.filter(split=Prompt.Split.HELDOUT)
    else:
        prompts = prompts.filter(pk__in=prompt_ids)
    ids = list(prompts.order_by("id").values_list("pk", flat=True))
    if not ids:
        raise ReviewError(f"{project.name!r} has no held-out prompts to battle on.")
    return ids


def _newest_shared_settings(
    project: Project, version_a: ModelVersion, version_b: ModelVersion, ids: list[int], run: TuningRun | None
) -> dict[str, Any]:
    """The settings of the comparison a battle defaults to (``comparison_choose`` on these prompts); ReviewError
    when the two versions have no matched outputs in any."""
    chosen = review_matched_outputs.comparison_choose(
        review_matched_outputs.comparisons(project=project, first=version_a, second=version_b, prompt_ids=ids), run=run
    )
    if chosen is None or not chosen.pairs:
        raise ReviewError(
            f"No held-out prompt has outputs from both {version_a.name!r} and {version_b.name!r} made with the "
            "same settings yet: generate them first."
        )
    return chosen.settings


def _existing_review_pairs(
    project: Project, pairs: Sequence[review_matched_outputs.MatchedPair]
) -> tuple[set[frozenset[int]], list[int]]:
    """The review pairs already made of these outputs ({a, b} either way round), and which of them carry no
    settings yet (legacy)."""
    wanted = {frozenset((p.first.pk, p.second.pk)) for p in pairs}
    ids = [pk for pair in wanted for pk in pair]
    existing: set[frozenset[int]] = set()
    legacy: list[int] = []
    rows = PairTask.objects.filter(project=project, purpose=PairTask.Purpose.REVIEW, completion_a_id__in=ids).values_list(
        "pk", "completion_a_id", "completion_b_id", "matched_settings"
    )
    for pk, a, b, matched in rows:
        key = frozenset((a, b))
        if key in wanted:
            existing.add(key)
            if not matched:
                legacy.append(pk)
    return existing, legacy
