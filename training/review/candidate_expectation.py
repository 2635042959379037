"""What a candidates job will make, before it runs: answers, the share expected to finish inside the token limit,
the pairs that leaves and the time it takes, from what this installation measured of the same base model."""
from __future__ import annotations

from dataclasses import dataclass

from labeling.models import Completion, Project, Prompt
from training.models import GenerationJob
from training.templatetags.numbers import format_rough_duration
from training.trainer.candidates import DEFAULT_MAX_PAIRS, expected_pairs

# Fewer earlier answers than this at the same token limit give no finished share: too few to say.
MIN_ANSWERS_FOR_SHARE = 20


@dataclass(frozen=True)
class CandidateExpectation:
    """What a candidate job with some settings should make, from what this installation measured: answers, the
    share that finish inside the token limit (from this base model's earlier answers at that limit), the pairs
    that leaves, and the time (at the pace of the newest finished job on this base model). ``None`` where nothing
    was measured yet."""

    prompts: int
    answers: int
    token_limit: int
    complete_share: float | None
    share_basis: str
    pairs: float | None
    prompts_with_pair: float | None
    max_pairs: int
    seconds: float | None
    time_basis: str

    @property
    def pairs_text(self) -> str:
        if self.pairs is None:
            return f"up to {self.max_pairs} pairs if every answer finishes"
        return f"about {round(self.pairs)} pairs, {round(100 * self.prompts_with_pair)}% of the prompts with at least one"


def _base_version_answers(base_model_id: int, token_limit: int) -> tuple[int, int]:
    """(finished, all) answers the bare base model wrote at ``token_limit``, of those whose ending is known."""
    answers = Completion.objects.filter(
        source=Completion.Source.GENERATED, model_version__base_model_id=base_model_id, model_version__adapter_path="",
        generation_settings__max_new_tokens=token_limit, finish_reason__in=["stop", "length"],
    )
    return answers.filter(finish_reason="stop").count(), answers.count()


def _pace(base_model_id: int) -> tuple[float, GenerationJob] | None:
    """Seconds per answer of the newest finished generation job on this base model, and that job."""
    jobs = GenerationJob.objects.filter(
        model_versions__base_model_id=base_model_id, status__in=[GenerationJob.Status.SUCCEEDED, GenerationJob.Status.CANCELLED],
        started_at__isnull=False, finished_at__isnull=False, completions_created__gte=4,
    ).order_by("-finished_at")
    job = jobs.first()
    if job is None:
        return None
    return (job.finished_at - job.started_at).total_seconds() / job.completions_created, job


def candidate_expectation(
    *, project: Project, base_model_id: int | None, versions: int, split: str, n: int, token_limit: int,
    pairing: str, cut_off: str,
) -> CandidateExpectation:
    """What a candidates job over ``project``'s ``split`` prompts with these settings should make (``versions``
    versions of the base model ``base_model_id``, ``n`` answers each per prompt, paired by ``pairing``)."""
    prompts = Prompt.objects.filter(project=project, split=split).count()
    per_prompt = n * max(versions, 1)
    all_pairs, _ = expected_pairs(per_prompt, 1.0, pairing, cut_off=cut_off, max_pairs=DEFAULT_MAX_PAIRS)
    share = pairs = with_pair = seconds = None
    share_basis = time_basis = ""
    if base_model_id is not None:
        finished, total = _base_version_answers(base_model_id, token_limit)
        if total >= MIN_ANSWERS_FOR_SHARE:
            share = finished / total
            share_basis = f"{finished} of {total} earlier answers of this base model at {token_limit} tokens finished"
        else:
            share_basis = (
                f"how many answers finish inside {token_limit} tokens is known once this base model has written "
                f"{MIN_ANSWERS_FOR_SHARE} at that limit"
            )
        pace = _pace(base_model_id)
        if pace is not None:
            per_answer, job = pace
            job_limit = job.settings.get("max_new_tokens") or token_limit
            # A batch runs as long as its longest answer, and looping answers run to the limit: time goes with it.
            seconds = per_answer * (token_limit / job_limit) * prompts * per_prompt
            time_basis = (
                f"at the pace of job {job.pk}: {job.completions_created} answers of up to {job_limit} tokens in "
                f"{format_rough_duration((job.finished_at - job.started_at).total_seconds())}"
            )
        else:
            time_basis = "the time is known after this base model's first generation job; the jobs table then shows an ETA"
    if share is not None:
        expected, chance = expected_pairs(per_prompt, share, pairing, cut_off=cut_off)
        pairs, with_pair = expected * prompts, chance
    return CandidateExpectation(
        prompts=prompts, answers=prompts * per_prompt, token_limit=token_limit, complete_share=share,
        share_basis=share_basis, pairs=pairs, prompts_with_pair=with_pair, max_pairs=round(all_pairs * prompts),
        seconds=seconds, time_basis=time_basis,
    )
