"""Launching a run: ``run_launch`` checks the admin's choices, freezes the dataset into a snapshot, creates the
queued run and sends its message once both rows commit."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from labeling import quality, selectors
from labeling.models import Project
from training import online_rl
from training import selectors as training_selectors
from training.models import BaseModel, DatasetSnapshot, ModelVersion, TuningRun
from training.review.rewards import reward_adapter_dir
from training.services.launch_checks import (
    LaunchError,
    check_base_model,
    check_dataset,
    check_method,
    check_start_from,
    noise_plan,
    trains_on_pairs,
)
from training.services.preview import DatasetPreview, dataset_preview
from training.services.queueing import run_enqueue_on_commit
from training.trainer.config import RL_METHODS, SettingsError, TrainSettings
from training.trainer.rows import rows_hash, split_rows

if TYPE_CHECKING:
    from django.contrib.auth.models import User


@dataclass(frozen=True)
class _LaunchPlan:
    """What the launch's choices (noise handling, reward model, version started from) add to the settings and the
    lineage, worked out before any row is read."""

    min_agreement: float
    overrides: dict[str, Any]
    lineage: dict[str, Any]
    reward_model: TuningRun | None


@dataclass(frozen=True)
class _PreparedRows:
    """The rows to freeze, checked, and the settings resolved for the size of their training split."""

    preview: DatasetPreview
    train_rows: int
    validation_rows: int
    settings: TrainSettings
    choices: dict[str, Any]


def run_launch(
    *,
    project: Project,
    base_model_id: int | None,
    method: str,
    settings_data: dict[str, Any],
    created_by: User | None,
    name: str = "",
    include_review: bool = True,
    include_heldout: bool = False,
    noise_handling: str = "none",
    start_from_version_id: int | None = None,
    keep_cut_off_chosen: bool = False,
    reward_run_id: int | None = None,
) -> TuningRun:
    """Validate, freeze the dataset, create a queued run and enqueue its training once the row is committed.

    Votes on held-out prompts stay out of the snapshot unless ``include_heldout`` (then the trained version is
    flagged as having seen them). ``noise_handling`` is a NOISE_HANDLING key. Pairs whose chosen answer was cut off
    at the token limit are left out unless ``keep_cut_off_chosen``. Settings left empty (learning rate,
    epochs) are chosen from the data here, so the run's settings say what it trains with. An online RL run (GRPO,
    RLOO) trains on the project's training prompts against ``reward_run_id`` (the newest reward model if None),
    refused when that reward model is not clearly above chance on its held-out pairs.
    Raises LaunchError with the message to show; in that case nothing was written and nothing queued.
    """
    check_method(method)
    base_model = check_base_model(base_model_id)
    start_from = check_start_from(project, base_model, start_from_version_id)
    plan = _launch_plan(
        project, method, start_from, noise_handling=noise_handling, keep_cut_off_chosen=keep_cut_off_chosen,
        reward_run_id=reward_run_id,
    )
    train_settings = _train_settings(settings_data, plan.overrides, method)
    prepared = _prepared_rows(
        project, method, train_settings, plan.min_agreement, include_review=include_review,
        include_heldout=include_heldout, keep_cut_off_chosen=keep_cut_off_chosen,
    )
    return _create_snapshot_and_run(
        project, base_model, start_from, plan, prepared, method=method, name=name, created_by=created_by,
        include_review=include_review, include_heldout=include_heldout,
    )


def _launch_plan(
    project: Project, method: str, start_from: ModelVersion | None, *, noise_handling: str,
    keep_cut_off_chosen: bool, reward_run_id: int | None,
) -> _LaunchPlan:
    """The noise handling's plan, then the reward model of an online RL run (LaunchError when it is refused), then
    the version started from."""
    min_agreement, overrides, extra_lineage = noise_plan(project, method, noise_handling)
    if trains_on_pairs(project, method):
        extra_lineage["keeps_cut_off_chosen"] = keep_cut_off_chosen
    reward_check = None
    if method in RL_METHODS:
        try:
            reward_check = online_rl.reward_model_check(project=project, reward_run_id=reward_run_id)
        except online_rl.OnlineRlRefused as exc:
            raise LaunchError(str(exc), field=exc.field) from exc
        overrides["reward_adapter"] = reward_adapter_dir(reward_check.run)
        extra_lineage["reward_model"] = reward_check.lineage()
    if start_from is not None:
        overrides["init_adapter"] = start_from.adapter_path
        extra_lineage["started_from"] = {
            "version": start_from.name, "run": start_from.run.pk, "method": start_from.run.method.upper()
        }
    return _LaunchPlan(
        min_agreement=min_agreement, overrides=overrides, lineage=extra_lineage,
        reward_model=reward_check.run if reward_check else None,
    )


def _train_settings(settings_data: dict[str, Any], overrides: dict[str, Any], method: str) -> TrainSettings:
    try:
        return TrainSettings.from_dict({**settings_data, **overrides, "method": method})
    except SettingsError as exc:
        raise LaunchError(str(exc), field=exc.field) from exc


def _prepared_rows(
    project: Project, method: str, train_settings: TrainSettings, min_agreement: float, *, include_review: bool,
    include_heldout: bool, keep_cut_off_chosen: bool,
) -> _PreparedRows:
    """The rows the run will train on, checked and split; settings left empty are chosen here from their size."""
    preview = dataset_preview(
        project=project, method=method, include_review=include_review, include_heldout=include_heldout,
        min_agreement=min_agreement, keep_cut_off_chosen=keep_cut_off_chosen,
    )
    check_dataset(preview, method, train_settings)
    train_rows, validation_rows = split_rows(
        preview.rows, validation_fraction=train_settings.validation_fraction, seed=train_settings.seed, method=method
    )
    try:
        train_settings, choices = train_settings.resolve(
            len(train_rows), device=training_selectors.training_device(train_settings.num_processes)
        )
    except SettingsError as exc:
        raise LaunchError(str(exc), field=exc.field) from exc
    return _PreparedRows(
        preview=preview, train_rows=len(train_rows), validation_rows=len(validation_rows), settings=train_settings,
        choices=choices,
    )


def _create_snapshot_and_run(
    project: Project, base_model: BaseModel, start_from: ModelVersion | None, plan: _LaunchPlan,
    prepared: _PreparedRows, *, method: str, name: str, created_by: User | None, include_review: bool,
    include_heldout: bool,
) -> TuningRun:
    """The frozen snapshot and the queued run, in one transaction; the run's message is sent once it commits."""
    preview = prepared.preview
    with transaction.atomic():
        snapshot = DatasetSnapshot.objects.create(
            project=project,
            method=method,
            rows=preview.rows,
            rows_hash=rows_hash(preview.rows),
            row_count=len(preview.rows),
            summary=preview.summary,
            lineage=_lineage(project, preview, include_review, include_heldout, plan.lineage),
            includes_heldout=include_heldout,
        )
        run = TuningRun.objects.create(
            project=project,
            name=name.strip() or _default_run_name(project, method),
            method=method,
            base_model=base_model,
            settings=prepared.settings.to_dict(),
            snapshot=snapshot,
            train_rows=prepared.train_rows,
            validation_rows=prepared.validation_rows,
            created_by=created_by,
            output_dir=new_output_dir(),
            outcome={"choices": prepared.choices} if prepared.choices else {},
            start_from=start_from,
            reward_model=plan.reward_model,
        )
        run_enqueue_on_commit(run.pk)
    return run


def _lineage(
    project: Project, preview: DatasetPreview, include_review: bool, include_heldout: bool, noise: dict[str, Any]
) -> dict[str, Any]:
    agreement = quality.project_agreement(project=project)
    return {
        "project": project.name,
        "guideline_version": project.guideline_version,
        "annotators": selectors.project_annotator_counts(project=project),
        "guideline_versions_voted": selectors.project_guideline_versions(project=project),
        "agreement_alpha_pairs": agreement.pair_alpha,
        "agreement_alpha_ratings": agreement.rating_alpha,
        "includes_review_votes": include_review,
        "review_tasks_used": selectors.project_review_tasks_used(project=project) if include_review else 0,
        "includes_heldout_votes": include_heldout,
        "heldout_tasks_left_out": preview.summary.get("heldout", 0),
        **noise,
    }


def _default_run_name(project: Project, method: str) -> str:
    """"Demo DPO run 3, 2026-12-06 14:05": numbered within the project, so two runs launched in the same minute
    do not share a name."""
    number = TuningRun.objects.filter(project=project).count() + 1
    return f"{project.name} {method.upper()} run {number}, {timezone.localtime():%Y-%m-%d %H:%M}"[:200]


def new_output_dir() -> str:
    """A fresh folder for a run's attempts, under the artifacts folder."""
    # Unique per run, not the row id: ids restart in a fresh database and a stale checkpoint would be resumed.
    return str(Path(settings.PREFTUNE_ARTIFACTS_DIR) / "runs" / uuid.uuid4().hex)
