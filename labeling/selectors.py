"""Reads for labeling: queries that gather what views, the API and commands show or export."""
from __future__ import annotations

import json

from django.db.models import Prefetch

from labeling.exporting import ExportSummary, PairData, RateData, VoteData, dpo_rows, kto_rows
from labeling.models import PairTask, PairVote, Project, RateTask, Rating, TaskStatus

# ---------------------------------------------------------------- export (preference data for training)

EXPORT_FORMATS = ("dpo", "kto")


def project_export(
    *, project: Project, fmt: str, purpose: str | None = PairTask.Purpose.LABEL, include_review: bool = False
) -> tuple[list[dict], ExportSummary]:
    """The training rows of ``project`` in TRL's conversational ``fmt`` ("dpo" or "kto"), and what was left out.

    ``purpose`` picks the pair tasks used ("label", "review", or None for both); ``include_review``
    adds the review battles to the labeling pairs. KTO also uses the project's thumbs ratings.
    Four queries, whatever the size of the project.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"Unknown export format {fmt!r}: use 'dpo' or 'kto'.")
    purposes = {purpose} if purpose else {PairTask.Purpose.LABEL, PairTask.Purpose.REVIEW}
    if include_review:
        purposes.add(PairTask.Purpose.REVIEW)
    pairs = _pair_data(project, purposes)
    if fmt == "dpo":
        return dpo_rows(pairs)
    return kto_rows(pairs, _rate_data(project))


def export_jsonl(rows: list[dict]) -> bytes:
    """JSON Lines, UTF-8, one row per line: what ``datasets.load_dataset("json", ...)`` reads."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")


def _pair_data(project: Project, purposes: set[str]) -> list[PairData]:
    tasks = (
        PairTask.objects.filter(project=project, purpose__in=purposes)
        .select_related("prompt", "completion_a", "completion_b")
        .prefetch_related(
            Prefetch("votes", queryset=PairVote.objects.only("task", "choice", "edited_text").order_by("created_at", "id"))
        )
        .order_by("id")
    )
    return [
        PairData(
            task_id=task.pk,
            prompt_id=task.prompt_id,
            messages=task.prompt.messages,
            text_a=task.completion_a.text,
            text_b=task.completion_b.text,
            votes=[VoteData(choice=vote.choice, edited_text=vote.edited_text) for vote in task.votes.all()],
            adjudicated=task.adjudicated_choice,
            complete=task.status == TaskStatus.COMPLETE,
        )
        for task in tasks
    ]


def _rate_data(project: Project) -> list[RateData]:
    tasks = (
        RateTask.objects.filter(project=project)
        .select_related("completion__prompt")
        .prefetch_related(Prefetch("ratings", queryset=Rating.objects.only("task", "value").order_by("created_at", "id")))
        .order_by("id")
    )
    return [
        RateData(
            task_id=task.pk,
            prompt_id=task.completion.prompt_id,
            messages=task.completion.prompt.messages,
            text=task.completion.text,
            ratings=[rating.value for rating in task.ratings.all()],
            complete=task.status == TaskStatus.COMPLETE,
        )
        for task in tasks
    ]


# ---------------------------------------------------------------- end of export
