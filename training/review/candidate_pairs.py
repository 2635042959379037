"""Candidates for labeling: each prompt's generated answers made into labeling pair tasks by the job's pairing
(``training.trainer.candidates``), or into thumbs tasks in a rate project, with counts of what was left out."""
from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db import transaction

from labeling.models import Completion, PairTask, Project, RateTask
from training.models import ModelVersion
from training.review.stored_outputs import sampling_settings_key
from training.review.versions import ReviewError
from training.trainer import candidates as pairing_core
from training.trainer.generation_settings import GenerationSettings

if TYPE_CHECKING:
    from training.review.rewards import RewardScorer

# Each prompt's candidates are paired all-against-all up to this many pairs (4 completions make 6).
MAX_CANDIDATE_PAIRS_PER_PROMPT = pairing_core.DEFAULT_MAX_PAIRS


@dataclass
class CandidatePairs:
    """What pairing some prompts' candidates made and left out (counts add up over calls)."""

    created: int = 0
    truncated: int = 0  # candidates cut off at the token limit, left out or not
    truncated_left_out: int = 0
    duplicates_left_out: int = 0
    prompts_without_pair: int = 0

    def add(self, other: CandidatePairs) -> None:
        self.created += other.created
        self.truncated += other.truncated
        self.truncated_left_out += other.truncated_left_out
        self.duplicates_left_out += other.duplicates_left_out
        self.prompts_without_pair += other.prompts_without_pair


def candidate_pairs_create(
    *, project: Project, prompt_ids: Sequence[int], versions: Sequence[ModelVersion], settings: GenerationSettings,
    pairing: str = pairing_core.ALL, cut_off: str = pairing_core.AGAINST_FINISHED, seed: int = 0, scorer: RewardScorer | None = None,
) -> CandidatePairs:
    """Labeling pair tasks among each prompt's generated candidates (these versions, these settings), chosen by
    ``pairing`` (``training.trainer.candidates.pair_candidates``), sides in random order. Answers cut off at the
    token limit are paired as ``cut_off`` says and identical answers are left out; pairs that exist already are
    not made again, so calling this twice for a prompt adds nothing. Returns what was made and left out.

    In a rate (thumbs) project there is nothing to pair: each distinct candidate becomes a thumbs task instead, cut-off
    ones only with ``PAIRED`` (a thumbs-up on an answer that never ends would teach it to run on)."""
    keys = {sampling_settings_key(settings.for_sample(k)): settings.temperature_for(k) for k in range(settings.n)}
    candidates: dict[int, list[pairing_core.Candidate]] = {}
    for completion in Completion.objects.filter(
        prompt_id__in=prompt_ids, model_version__in=versions, source=Completion.Source.GENERATED
    ).order_by("id"):
        key = sampling_settings_key(completion.generation_settings)
        if key in keys:
            candidates.setdefault(completion.prompt_id, []).append(pairing_core.Candidate(
                key=completion.pk, text=completion.text, truncated=completion.is_truncated, temperature=keys[key],
            ))
    if project.mode == Project.Mode.RATE:
        return _candidate_rate_tasks_create(project, candidates, skip_truncated=cut_off != pairing_core.PAIRED)
    existing = {
        frozenset(ids)
        for ids in PairTask.objects.filter(project=project, prompt_id__in=prompt_ids).values_list(
            "completion_a_id", "completion_b_id"
        )
    }
    result = CandidatePairs()
    scores: dict[int, float] = {}
    if pairing == pairing_core.REWARD_EXTREMES:
        if scorer is None:
            raise ReviewError("Best against worst needs the project's reward model to score the candidates.")
        scores = scorer.scores([c.key for found in candidates.values() for c in found])
    with transaction.atomic():
        for prompt_id in sorted(candidates):
            by_text = {c.text: scores[c.key] for c in candidates[prompt_id] if c.key in scores}
            plan = pairing_core.pair_candidates(
                candidates[prompt_id], pairing, cut_off=cut_off, max_pairs=MAX_CANDIDATE_PAIRS_PER_PROMPT,
                **({"score": by_text.__getitem__} if by_text else {}),
            )
            result.truncated += sum(1 for c in candidates[prompt_id] if c.truncated)
            result.truncated_left_out += plan.truncated_left_out
            result.duplicates_left_out += plan.duplicates_left_out
            result.prompts_without_pair += 0 if plan.pairs else 1
            # Seeded per prompt, so the sides do not depend on which other prompts are paired in the same call.
            rng = random.Random(f"{seed}:{prompt_id}")
            for a, b in plan.pairs:
                if frozenset((a.key, b.key)) in existing:
                    continue
                if rng.random() < 0.5:
                    a, b = b, a
                PairTask.objects.create(
                    project=project, prompt_id=prompt_id, completion_a_id=a.key, completion_b_id=b.key,
                    purpose=PairTask.Purpose.LABEL, overlap=project.overlap,
                )
                existing.add(frozenset((a.key, b.key)))
                result.created += 1
    return result


def _candidate_rate_tasks_create(
    project: Project, candidates: dict[int, list[pairing_core.Candidate]], *, skip_truncated: bool
) -> CandidatePairs:
    result = CandidatePairs()
    existing = set(RateTask.objects.filter(project=project).values_list("completion_id", flat=True))
    with transaction.atomic():
        for prompt_id in sorted(candidates):
            seen: set[str] = set()
            made = 0
            for candidate in candidates[prompt_id]:
                result.truncated += candidate.truncated
                if candidate.truncated and skip_truncated:
                    result.truncated_left_out += 1
                    continue
                if candidate.text.strip() in seen:
                    result.duplicates_left_out += 1
                    continue
                seen.add(candidate.text.strip())
                if candidate.key in existing:
                    continue
                RateTask.objects.create(project=project, completion_id=candidate.key, overlap=project.overlap)
                existing.add(candidate.key)
                made += 1
            result.created += made
            result.prompts_without_pair += 0 if seen else 1
    return result
