"""The rows a run launched now would train on, read without writing anything: the launch page shows them, and
``run_launch`` freezes them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labeling import selectors
from labeling.models import Project
from training import online_rl
from training.trainer.rows import count_kto_labels, rows_format, sft_rows_from


@dataclass(frozen=True)
class DatasetPreview:
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    desirable: int = 0
    undesirable: int = 0


def dataset_preview(
    *, project: Project, method: str, include_review: bool = True, include_heldout: bool = False,
    min_agreement: float = 0.0, keep_cut_off_chosen: bool = False,
) -> DatasetPreview:
    """The rows a run of ``method`` launched now would train on (pairs, or thumbs for KTO), with the export summary
    (what was left out and why). ``keep_cut_off_chosen`` keeps pairs whose chosen answer hit the token limit."""
    fmt = "prompt" if method == "prompt" else rows_format(method)
    if fmt == "prompt":
        rows, summary = online_rl.prompt_rows(project=project, include_heldout=include_heldout)
        return DatasetPreview(rows=rows, summary=summary)
    if fmt == "sft":
        # What annotators preferred, to imitate: chosen answers of a compare project, thumbs-up answers of a rate one.
        source = "kto" if project.mode == Project.Mode.RATE else "dpo"
        rows, summary = selectors.project_export(
            project=project, fmt=source, include_review=include_review, include_heldout=include_heldout,
            min_agreement=min_agreement, keep_cut_off_chosen=keep_cut_off_chosen,
        )
        return DatasetPreview(rows=sft_rows_from(rows), summary=summary.as_dict())
    rows, summary = selectors.project_export(
        project=project, fmt=fmt, include_review=include_review, include_heldout=include_heldout,
        min_agreement=min_agreement, keep_cut_off_chosen=keep_cut_off_chosen,
    )
    desirable, undesirable = count_kto_labels(rows) if fmt == "kto" else (0, 0)
    return DatasetPreview(rows=rows, summary=summary.as_dict(), desirable=desirable, undesirable=undesirable)
