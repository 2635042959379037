"""Reads for labeling: queries that gather what views, the API and commands show or export."""
from __future__ import annotations

import json

from django.db.models import Count, Prefetch, Q, QuerySet

from labeling.exporting import ExportSummary, PairData, RateData, VoteData, dpo_rows, kto_rows
from labeling.models import PairTask, PairVote, Project, Prompt, RateTask, Rating, TaskStatus

# ---------------------------------------------------------------- export (preference data for training)

EXPORT_FORMATS = ("dpo", "kto")
# The tasks an export uses: complete ones, and open ones an admin has already decided.
_USED = Q(status=TaskStatus.COMPLETE) | ~Q(adjudicated_choice="")


def project_export(
    *,
    project: Project,
    fmt: str,
    purpose: str | None = PairTask.Purpose.LABEL,
    include_review: bool = False,
    include_heldout: bool = False,
    min_agreement: float = 0.0,
    keep_cut_off_chosen: bool = False,
) -> tuple[list[dict], ExportSummary]:
    """The training rows of ``project`` in TRL's conversational ``fmt`` ("dpo" or "kto"), and what was left out.

    ``purpose`` picks the pair tasks used ("label", "review", or None for both); ``include_review``
    adds the review battles to the labeling pairs. KTO also uses the project's thumbs ratings.
    Votes on held-out prompts are evaluation, not training data: they are left out (and counted in
    ``summary.heldout``) unless ``include_heldout``. ``min_agreement`` (DPO) drops pairs whose winner got a
    smaller share of the votes, and pairs whose chosen answer was cut off at the token limit are left out unless
    ``keep_cut_off_chosen`` (see ``labeling.exporting``).
    At most eight queries whatever the project's size; open tasks are only counted, never loaded.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"Unknown export format {fmt!r}: use 'dpo' or 'kto'.")
    purposes = {purpose} if purpose else {PairTask.Purpose.LABEL, PairTask.Purpose.REVIEW}
    if include_review:
        purposes.add(PairTask.Purpose.REVIEW)
    pair_tasks = PairTask.objects.filter(project=project, purpose__in=purposes)
    rate_tasks = RateTask.objects.filter(project=project)
    heldout_pairs = Q(prompt__split=Prompt.Split.HELDOUT)
    heldout_rates = Q(completion__prompt__split=Prompt.Split.HELDOUT)
    # One query counts what is left out: open tasks, and (unless opted in) used tasks on held-out prompts.
    counts = pair_tasks.aggregate(
        open=Count("pk", filter=~_USED if include_heldout else ~_USED & ~heldout_pairs),
        heldout=Count("pk", filter=_USED & heldout_pairs),
    )
    open_count, heldout = counts["open"], 0 if include_heldout else counts["heldout"]
    if not include_heldout:
        pair_tasks = pair_tasks.exclude(heldout_pairs)
        rate_tasks = rate_tasks.exclude(heldout_rates) if fmt == "kto" else rate_tasks
    pairs = _pair_data(pair_tasks.filter(_USED))
    if fmt == "dpo":
        rows, summary = dpo_rows(pairs, min_agreement=min_agreement, keep_cut_off_chosen=keep_cut_off_chosen)
    else:
        rate_counts = RateTask.objects.filter(project=project).aggregate(
            open=Count("pk", filter=~Q(status=TaskStatus.COMPLETE) & (Q() if include_heldout else ~heldout_rates)),
            heldout=Count("pk", filter=Q(status=TaskStatus.COMPLETE) & heldout_rates),
        )
        open_count += rate_counts["open"]
        heldout += 0 if include_heldout else rate_counts["heldout"]
        rows, summary = kto_rows(pairs, _rate_data(rate_tasks.filter(status=TaskStatus.COMPLETE)))
    summary.incomplete += open_count
    summary.heldout = heldout
    return rows, summary


def export_jsonl(rows: list[dict]) -> bytes:
    """JSON Lines, UTF-8, one row per line: what ``datasets.load_dataset("json", ...)`` reads."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")


def _pair_data(tasks: QuerySet[PairTask]) -> list[PairData]:
    tasks = (
        tasks.select_related("prompt", "completion_a", "completion_b")
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
            cut_off_a=task.completion_a.is_truncated,
            cut_off_b=task.completion_b.is_truncated,
        )
        for task in tasks
    ]


def _rate_data(tasks: QuerySet[RateTask]) -> list[RateData]:
    tasks = (
        tasks.select_related("completion__prompt")
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


# ---------------------------------------------------------------- lineage (what a training snapshot was built from)


def project_annotator_counts(*, project: Project) -> dict[str, int]:
    """Username → number of votes and ratings they gave in ``project``."""
    counts: dict[str, int] = {}
    for model in (PairVote, Rating):
        rows = (
            model.objects.filter(task__project=project)
            .values_list("annotator__username")
            .annotate(n=Count("pk"))
            .order_by()
        )
        for username, n in rows:
            counts[username] = counts.get(username, 0) + n
    return dict(sorted(counts.items()))


def project_guideline_versions(*, project: Project) -> list[int]:
    """The guideline versions the project's votes and ratings were cast under."""
    versions = set(PairVote.objects.filter(task__project=project).values_list("guideline_version", flat=True))
    versions |= set(Rating.objects.filter(task__project=project).values_list("guideline_version", flat=True))
    return sorted(versions)


def project_review_tasks_used(*, project: Project) -> int:
    return PairTask.objects.filter(project=project, purpose=PairTask.Purpose.REVIEW).filter(_USED).count()


def annotator_progress(*, project: Project, annotator) -> dict[str, int]:  # noqa: ANN001
    """The annotator's screen header, over the tasks the queue hands out in ``project`` (every purpose, as
    ``services.task_lease_next`` serves them: pairs to label and blind review battles, or thumbs tasks on
    candidates and on held-out outputs): how many are complete, and how many this annotator has judged."""
    if project.mode == Project.Mode.COMPARE:
        tasks = PairTask.objects.filter(project=project)
        mine = PairVote.objects.filter(task__project=project, annotator=annotator).count()
    else:
        tasks = RateTask.objects.filter(project=project)
        mine = Rating.objects.filter(task__project=project, annotator=annotator).count()
    counts = tasks.aggregate(total=Count("pk"), complete=Count("pk", filter=Q(status=TaskStatus.COMPLETE)))
    total, complete = counts["total"], counts["complete"]
    return {"total": total, "complete": complete, "mine": mine, "percent": round(100 * complete / total) if total else 100}


def prompts_waiting_for_candidates(*, project: Project) -> int:
    """How many of the project's train prompts have no completion at all: nothing for annotators to judge yet."""
    return project.prompts.filter(split="train", completions__isnull=True).count()
