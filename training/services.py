"""Writes for tuning runs, and the only bridge between the database and the Django-free training core.

A run's life: ``run_launch`` freezes the dataset and queues it (enqueued on commit) → the gpu worker
claims it with a conditional update (queued → running) and calls ``run_execute`` → succeeded, failed
or cancelled. A worker that dies leaves a stale heartbeat; ``runs_reap_stale`` (periodic, and at worker
start-up) fails such runs with a reason, and ``run_retry`` queues them again, resuming from the last
checkpoint.
"""
from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from labeling import quality, selectors
from labeling.models import Project
from training import online_rl
from training import selectors as training_selectors
from training.access import describe_failure
from training.heartbeat import Heartbeat, stale_condition
from training.models import BaseModel, DatasetSnapshot, ModelVersion, RunMetric, TuningRun, Worker
from training.review.rewards import reward_adapter_dir
from training.trainer.config import RL_METHODS, SettingsError, TrainSettings
from training.trainer.rows import (
    RowsError,
    count_kto_labels,
    rows_format,
    rows_hash,
    sft_rows_from,
    split_rows,
    validate_rows,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from training.trainer.core import ProgressEvent

logger = logging.getLogger(__name__)
Status = TuningRun.Status

# Below this many rows a run learns nothing worth the GPU time; the message says how many are missing.
MIN_DPO_ROWS = 4
MIN_KTO_ROWS = 4
MIN_SFT_ROWS = 4


OUTSIDE_STOP = (
    "The training process was stopped by a SIGTERM from outside preftune (a container stop, an orchestrator or a "
    "kill), not by an admin. Retry resumes from the last checkpoint, if one was saved."
)


class LaunchError(Exception):
    """Why a run cannot be launched, in words for the admin; nothing was written or queued."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class DatasetPreview:
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    desirable: int = 0
    undesirable: int = 0


# How a launch can deal with noisy annotators (issue: noise-aware training). "drop_split" keeps only pairs whose
# votes were unanimous; "robust" trains with TRL's robust DPO loss, its label smoothing set to the flip rate
# estimated from how often annotators agree; "both" does both.
NOISE_HANDLING = {
    "none": "Use every pair with a clear majority",
    "drop_split": "Drop pairs whose annotators disagreed (keep unanimous ones)",
    "robust": "Robust DPO loss, correcting for the flip rate estimated from agreement",
    "both": "Drop split pairs and use the robust loss",
}
# The estimated flip rate is clamped to this range before it becomes label smoothing: at 0 the robust loss is
# plain DPO, and near 0.5 it divides by almost nothing.
FLIP_RATE_RANGE = (0.01, 0.4)


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


def _cut_off_hint(preview: DatasetPreview) -> str:
    cut_off = preview.summary.get("cut_off_chosen", 0)
    if not cut_off:
        return ""
    return (
        f" {cut_off} more decided pair(s) were left out because the chosen answer was cut off at the token limit; "
        "'Keep pairs whose chosen answer was cut off' (under Advanced; --keep-cut-off-chosen for launch_run) "
        "trains on them."
    )


def _trains_on_pairs(project: Project, method: str) -> bool:
    """Whether the run's rows come from decided pairs (where the cut-off rule applies), not from thumbs."""
    fmt = rows_format(method)
    return fmt == "dpo" or (fmt == "sft" and project.mode != Project.Mode.RATE)


def _check_dataset(preview: DatasetPreview, method: str, train_settings: TrainSettings) -> None:
    rows = preview.rows
    if rows_format(method) == "prompt" and len(rows) < online_rl.MIN_RL_PROMPTS:
        raise LaunchError(
            f"Too few prompts: {len(rows)} training prompt(s), and an online RL run needs at least "
            f"{online_rl.MIN_RL_PROMPTS} to write answers to (held-out prompts are kept for the review)."
        )
    if rows_format(method) == "dpo" and len(rows) < MIN_DPO_ROWS:
        raise LaunchError(
            f"Too little data: {len(rows)} preference pair(s) are ready, and a {method.upper()} run needs at least "
            f"{MIN_DPO_ROWS}. "
            "Pairs count once they have all their votes and a clear winner (ties, both-bad and disagreements are "
            "left out)." + _cut_off_hint(preview)
        )
    if method == "sft" and len(rows) < MIN_SFT_ROWS:
        raise LaunchError(
            f"Too little data: {len(rows)} answer(s) to imitate are ready (chosen answers of decided pairs, or "
            f"thumbs-up answers), and an SFT run needs at least {MIN_SFT_ROWS}." + _cut_off_hint(preview)
        )
    if method == "kto":
        if len(rows) < MIN_KTO_ROWS:
            raise LaunchError(
                f"Too little data: {len(rows)} labelled completion(s) are ready, and a KTO run needs at least "
                f"{MIN_KTO_ROWS}."
            )
        if preview.desirable == 0 or preview.undesirable == 0:
            raise LaunchError(
                f"KTO needs both good and bad examples: this project has {preview.desirable} thumbs-up and "
                f"{preview.undesirable} thumbs-down completion(s) ready."
            )
    try:
        validate_rows(rows, method)
        train_rows, _ = split_rows(
            rows, validation_fraction=train_settings.validation_fraction, seed=train_settings.seed, method=method
        )
    except RowsError as exc:
        raise LaunchError(str(exc)) from exc
    if method == "kto" and train_settings.resolved_loss_type == "kto" and len(train_rows) < train_settings.per_device_batch_size:
        raise LaunchError(
            f"KTO needs at least one full batch: {len(train_rows)} training rows is fewer than the batch size of "
            f"{train_settings.per_device_batch_size}. Lower the batch size or label more.",
            field="per_device_batch_size",
        )


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


def _noise_plan(project: Project, method: str, handling: str) -> tuple[float, dict[str, Any], dict[str, Any]]:
    """(min_agreement, settings overrides, lineage entries) for a noise-handling choice; LaunchError if impossible."""
    if handling not in NOISE_HANDLING:
        raise LaunchError(f"Unknown noise handling {handling!r}; choose one of {', '.join(NOISE_HANDLING)}.", field="noise_handling")
    if handling == "none":
        return 0.0, {}, {"noise_handling": "none"}
    if rows_format(method) != "dpo":
        raise LaunchError(
            "Noise handling applies to DPO runs and the other pair methods (compare votes), not to KTO or SFT.",
            field="noise_handling",
        )
    if method != "dpo" and handling in ("robust", "both"):
        raise LaunchError(
            f"The robust loss is a DPO loss; for {method.upper()} drop the split pairs instead.", field="noise_handling"
        )
    lineage: dict[str, Any] = {"noise_handling": handling}
    overrides: dict[str, Any] = {}
    min_agreement = 1.0 if handling in ("drop_split", "both") else 0.0
    if handling in ("robust", "both"):
        estimate = quality.project_flip_rate(project=project)
        if estimate is None:
            raise LaunchError(
                "The robust loss needs an estimate of how often votes are flipped, which comes from tasks voted on by "
                f"two or more annotators; {project.name!r} has fewer than {quality.MIN_FLIP_RATE_PAIRS} such pairs of "
                "votes. Raise the project's overlap, or set the loss to robust with a label smoothing of your own.",
                field="noise_handling",
            )
        low, high = FLIP_RATE_RANGE
        flip_rate = min(high, max(low, estimate.rate))
        # Smooth by how often the aggregated labels are wrong, not by the per-vote flip rate: two agreeing votes
        # are wrong far less often than one (5.9% against 20% at a flip rate of 0.2).
        noise = quality.project_label_noise(project=project, flip_rate=flip_rate, unanimous_only=min_agreement >= 1.0)
        smoothing = round(max(low, noise.rate if noise is not None else flip_rate), 3)
        overrides = {"loss_type": "robust", "label_smoothing": smoothing}
        lineage.update(
            estimated_flip_rate=round(estimate.rate, 4),
            flip_rate_basis=f"{estimate.agreeing_pairs} of {estimate.annotator_pairs} annotator pairs agreed on {estimate.tasks} tasks",
            label_noise_splits=noise.splits if noise is not None else {},
            label_smoothing=smoothing,
        )
    return min_agreement, overrides, lineage


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
    if method not in TuningRun.Method.values:
        raise LaunchError(
            f"Unknown method {method!r}: choose DPO, KTO, SimPO, CPO, ORPO, SFT, GRPO, RLOO or a reward model.",
            field="method",
        )
    base_model = BaseModel.objects.filter(pk=base_model_id).first() if base_model_id else None
    if base_model is None:
        raise LaunchError("Choose a base model from the registry (unknown base model).", field="base_model")
    if base_model.status != BaseModel.Status.READY:
        state = "is still downloading" if base_model.status == BaseModel.Status.DOWNLOADING else "failed its checks"
        raise LaunchError(f"The base model {base_model.name!r} {state}; see the models page.", field="base_model")
    if not _model_path_usable(base_model.path):
        raise LaunchError(
            f"The base model {base_model.name!r} points at {base_model.path!r}, which is not a model folder on this "
            "server. Run `python manage.py prepare_base_model`, or fix the path.",
            field="base_model",
        )
    start_from = _start_from(project, base_model, start_from_version_id)
    min_agreement, overrides, extra_lineage = _noise_plan(project, method, noise_handling)
    if _trains_on_pairs(project, method):
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
    try:
        train_settings = TrainSettings.from_dict({**settings_data, **overrides, "method": method})
    except SettingsError as exc:
        raise LaunchError(str(exc), field=exc.field) from exc
    preview = dataset_preview(
        project=project, method=method, include_review=include_review, include_heldout=include_heldout,
        min_agreement=min_agreement, keep_cut_off_chosen=keep_cut_off_chosen,
    )
    _check_dataset(preview, method, train_settings)
    train_rows, validation_rows = split_rows(
        preview.rows, validation_fraction=train_settings.validation_fraction, seed=train_settings.seed, method=method
    )
    try:
        train_settings, choices = train_settings.resolve(
            len(train_rows), device=training_selectors.training_device(train_settings.num_processes)
        )
    except SettingsError as exc:
        raise LaunchError(str(exc), field=exc.field) from exc
    with transaction.atomic():
        snapshot = DatasetSnapshot.objects.create(
            project=project,
            method=method,
            rows=preview.rows,
            rows_hash=rows_hash(preview.rows),
            row_count=len(preview.rows),
            summary=preview.summary,
            lineage=_lineage(project, preview, include_review, include_heldout, extra_lineage),
            includes_heldout=include_heldout,
        )
        run = TuningRun.objects.create(
            project=project,
            name=name.strip() or _default_run_name(project, method),
            method=method,
            base_model=base_model,
            settings=train_settings.to_dict(),
            snapshot=snapshot,
            train_rows=len(train_rows),
            validation_rows=len(validation_rows),
            created_by=created_by,
            output_dir=_new_output_dir(),
            outcome={"choices": choices} if choices else {},
            start_from=start_from,
            reward_model=reward_check.run if reward_check else None,
        )
        _enqueue_on_commit(run.pk)
    return run


def _default_run_name(project: Project, method: str) -> str:
    """"Demo DPO run 3, 2026-12-06 14:05": numbered within the project, so two runs launched in the same minute
    do not share a name."""
    number = TuningRun.objects.filter(project=project).count() + 1
    return f"{project.name} {method.upper()} run {number}, {timezone.localtime():%Y-%m-%d %H:%M}"[:200]


def _start_from(project: Project, base_model: BaseModel, version_id: int | None) -> ModelVersion | None:
    """The trained version a run continues from (SFT, then DPO), checked; None to start from the base model."""
    if not version_id:
        return None
    version = ModelVersion.objects.select_related("run").filter(pk=version_id, run__project=project).first()
    if version is None or not version.adapter_path:
        raise LaunchError("Start from a version trained in this project (or from the base model).", field="start_from")
    if version.base_model_id != base_model.pk:
        raise LaunchError(
            f"{version.name} was trained on {version.base_model.name}, not {base_model.name}: a run continues from a "
            "version of its own base model.",
            field="start_from",
        )
    if not Path(version.adapter_path, "adapter_config.json").is_file():
        raise LaunchError(f"The adapter of {version.name} is not on this server any more.", field="start_from")
    return version


def _model_path_usable(path: str) -> bool:
    """A local folder with a config, or something shaped like a hub id (for GPU hosts with a model cache)."""
    candidate = Path(path)
    if candidate.is_absolute() or path.startswith("."):
        return (candidate / "config.json").is_file()
    return path.count("/") == 1 and all(part.strip() for part in path.split("/"))


def _enqueue_on_commit(run_id: int) -> None:
    # run_send never raises: with the broker down the run stays queued and runs_requeue_lost sends it later.
    from training.requeue import run_send

    transaction.on_commit(lambda: run_send(run_id=run_id))


def worker_announce(*, hostname: str, queues: list[str], gpus: int) -> Worker:
    """Record a worker that has just started: which queues it takes and how many GPUs it sees."""
    now = timezone.now()
    worker, _ = Worker.objects.update_or_create(
        hostname=hostname, defaults={"queues": sorted(queues), "gpus": gpus, "started_at": now, "seen_at": now}
    )
    return worker


def run_claim(*, run_id: int, worker: str) -> bool:
    """Move a queued run to running for ``worker``; False if another worker got there first or it was cancelled."""
    now = timezone.now()
    claimed = TuningRun.objects.filter(pk=run_id, status=Status.QUEUED, cancel_requested=False).update(
        status=Status.RUNNING, worker=worker, started_at=now, heartbeat_at=now, attempt=F("attempt") + 1
    )
    if claimed == 1:
        Worker.objects.filter(hostname=worker).update(seen_at=now)
        return True
    # A cancel that arrived while queued ends here, without ever loading a model.
    TuningRun.objects.filter(pk=run_id, status=Status.QUEUED, cancel_requested=True).update(
        status=Status.CANCELLED, finished_at=now
    )
    return False


def _new_output_dir() -> str:
    # Unique per run, not the row id: ids restart in a fresh database and a stale checkpoint would be resumed.
    return str(Path(settings.PREFTUNE_ARTIFACTS_DIR) / "runs" / uuid.uuid4().hex)


def _ours(run_id: int, attempt: int) -> QuerySet[TuningRun]:
    """The run's row while ``attempt`` still owns it: running, and not claimed again since (the fencing token)."""
    return TuningRun.objects.filter(pk=run_id, status=Status.RUNNING, attempt=attempt)


def _record_progress(run_id: int, attempt: int, event: ProgressEvent) -> None:
    # The row first: a superseded attempt's events (a frozen worker that woke up) write nothing. Not in one
    # transaction with the metric: a worker frozen between the two would hold the row's lock, and the watchdog's
    # update of that very row would wait on it for as long as the worker stays frozen.
    if not _ours(run_id, attempt).update(step=event.step, total_steps=event.total_steps, heartbeat_at=timezone.now()):
        return
    values = {k: float(v) for k, v in event.metrics.items() if isinstance(v, int | float)}
    if event.kind in ("train", "eval") and values:
        RunMetric.objects.update_or_create(run_id=run_id, split=event.kind, step=event.step, defaults={"values": values})
    if event.details and "watch_point" in event.details:
        _record_watch_point(run_id, attempt, event.details)


def _record_watch_point(run_id: int, attempt: int, details: dict[str, Any]) -> None:
    """An online RL run's evaluation, answers and all, into its live watch (``outcome["watch"]``) for the run page;
    the finished run's outcome replaces it with the whole watch and its warnings."""
    with transaction.atomic():
        run = _ours(run_id, attempt).select_for_update().only("outcome").first()
        if run is None:
            return
        watch = dict((run.outcome or {}).get("watch") or {})
        point = details["watch_point"]
        if details.get("reference"):
            watch = {"base": point, "points": []}
        else:
            watch["points"] = [p for p in watch.get("points", []) if p.get("step") != point.get("step")] + [point]
        _ours(run_id, attempt).update(outcome={**(run.outcome or {}), "watch": watch})


def _cancel_requested(run_id: int) -> bool:
    return TuningRun.objects.filter(pk=run_id, cancel_requested=True).exists()


def run_execute(*, run_id: int, worker_stopping: Callable[[], bool] | None = None) -> TuningRun:
    """Train a run this worker has claimed (status running) in a child process and record the outcome; never
    raises for a training failure: the reason is stored on the run and shown on its page.

    ``worker_stopping()`` True (the worker is shutting down) hands the run back: the child saves a checkpoint
    and stops, and the run is queued again to resume from it on the next worker."""
    from training.trainer.child import ROWS_FILENAME, RunSpec, announce_attempt
    from training.trainer.process import run_supervised

    run = TuningRun.objects.select_related("base_model", "snapshot", "start_from").get(pk=run_id)
    attempt = run.attempt
    if not run.output_dir:
        run.output_dir = _new_output_dir()
    output_dir = run.attempt_dir(attempt)
    # exist_ok=False: attempt numbers come from the claim's atomic increment, so a folder already there means
    # something else is writing it, and this attempt must not.
    output_dir.mkdir(parents=True, exist_ok=False)
    checkpoint = _resume_checkpoint(Path(run.output_dir), attempt)
    if not _ours(run_id, attempt).update(output_dir=run.output_dir, resumed_from=checkpoint or ""):
        return TuningRun.objects.get(pk=run_id)
    announce_attempt(run.output_dir, attempt)  # an older attempt's trainer still alive stops on reading this
    rows_path = output_dir / ROWS_FILENAME
    rows_path.write_text(json.dumps(run.snapshot.rows, ensure_ascii=False))
    num_processes = int(run.settings.get("num_processes") or 1)
    spec = RunSpec(
        model_path=run.base_model.path, rows_path=str(rows_path), rows_hash=run.snapshot.rows_hash,
        settings=run.settings, output_dir=str(output_dir), events_path=str(output_dir / "events.jsonl"),
        resume_from_checkpoint=checkpoint, num_processes=num_processes,
        sharding=str(run.settings.get("sharding") or "none"), run_dir=run.output_dir, attempt=attempt,
    )
    try:
        with Heartbeat(TuningRun, run_id, Status.RUNNING, attempt=attempt):
            ended = run_supervised(
                spec,
                on_progress=lambda event: _record_progress(run_id, attempt, _progress_event(event)),
                should_cancel=lambda: _cancel_requested(run_id),
                still_ours=lambda: _ours(run_id, attempt).exists(),
                cuda=num_processes > 1 and _cuda_available(),
                should_yield=worker_stopping,
            )
    except Exception as exc:  # noqa: BLE001 - any failure ends the run with its reason recorded
        logger.exception("Run %s failed", run_id)
        _finish(run_id, attempt, Status.FAILED, error=describe_failure(exc))
        return TuningRun.objects.get(pk=run_id)
    if ended.yielded and not _cancel_requested(run_id):
        _hand_back(run_id, attempt)
        return TuningRun.objects.get(pk=run_id)
    if ended.stopped:
        if _cancel_requested(run_id):
            _finish(run_id, attempt, Status.CANCELLED, error="Cancelled by an admin.")
        # Otherwise the run is no longer ours (the reaper failed it, or a newer attempt claimed it): leave the row.
        return TuningRun.objects.get(pk=run_id)
    if ended.result is None:
        logger.error("Run %s failed: %s", run_id, ended.error)
        _finish(run_id, attempt, Status.FAILED, error=ended.error[:4000])
        return TuningRun.objects.get(pk=run_id)
    result = ended.result
    if result["cancelled"] and _cancel_requested(run_id):
        _finish(run_id, attempt, Status.CANCELLED, error="Cancelled by an admin.")
        return TuningRun.objects.get(pk=run_id)
    if result["cancelled"]:
        # The child stopped on a SIGTERM that this worker did not send: a container stop, an orchestrator, a kill.
        _finish(run_id, attempt, Status.FAILED, error=OUTSIDE_STOP)
        return TuningRun.objects.get(pk=run_id)
    if run.method == TuningRun.Method.REWARD:
        return _reward_model_finish(run, attempt, result)
    with transaction.atomic():
        version = ModelVersion.objects.create(
            name=f"{run.name} (run {run.pk})"[:200], base_model=run.base_model, adapter_path=str(result["adapter_dir"]),
            saw_heldout=run.snapshot.includes_heldout or bool(run.start_from and run.start_from.saw_heldout),
            parent=run.start_from,
        )
        if _mark_succeeded(run, attempt, result, model_version=version) != 1:
            # Reaped or changed underneath us: keep what the database says, drop the orphan version.
            version.delete()
    return TuningRun.objects.get(pk=run_id)


def _mark_succeeded(run: TuningRun, attempt: int, result: dict[str, Any], **fields: Any) -> int:
    """Record a finished run's outcome if ``attempt`` still owns it; the number of rows updated, 0 or 1."""
    return _ours(run.pk, attempt).update(
        status=Status.SUCCEEDED,
        outcome={**run.outcome, **result["outcome"]},
        step=result["steps"],
        total_steps=result["total_steps"] or result["steps"],
        finished_at=timezone.now(),
        heartbeat_at=timezone.now(),
        **fields,
    )


def _reward_model_finish(run: TuningRun, attempt: int, result: dict[str, Any]) -> TuningRun:
    """A reward model writes nothing, so it makes no model version: it becomes the project's scorer, and a job
    scores the project's answers with it (review outputs for their reward spread, open pairs for labeling order)."""
    from training.review.rewards import reward_scoring_job_create

    with transaction.atomic():
        if _mark_succeeded(run, attempt, result) == 1:
            reward_scoring_job_create(project=run.project, reward_run=TuningRun.objects.get(pk=run.pk))
    return TuningRun.objects.get(pk=run.pk)


def _hand_back(run_id: int, attempt: int) -> None:
    # Queued again, its message sent once this commits: another worker (or this one, restarted) resumes it.
    with transaction.atomic():
        if _ours(run_id, attempt).update(
            status=Status.QUEUED, worker="", error="", heartbeat_at=None
        ):
            logger.info("Run %s handed back: its worker is shutting down; it resumes from its last checkpoint.", run_id)
            _enqueue_on_commit(run_id)


def _progress_event(event: dict[str, Any]) -> ProgressEvent:
    from training.trainer.core import ProgressEvent

    return ProgressEvent(
        step=event["step"], total_steps=event["total_steps"], metrics=event.get("metrics") or {},
        kind=event.get("kind", "train"), epoch=event.get("epoch"), details=event.get("details"),
    )


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _finish(run_id: int, attempt: int, status: str, *, error: str = "") -> None:
    _ours(run_id, attempt).update(status=status, error=error, finished_at=timezone.now())


def _resume_checkpoint(run_dir: Path, attempt: int) -> str | None:
    """The newest complete checkpoint that an earlier attempt of the run left (runs trained before attempts had
    folders of their own kept theirs in the run folder itself)."""
    from training.trainer.core import latest_checkpoint

    found = [latest_checkpoint(folder) for folder in [run_dir, *(run_dir / f"attempt-{n}" for n in range(1, attempt))]]
    return max(filter(None, found), key=lambda path: int(Path(path).name.rsplit("-", 1)[1]), default=None)


def run_cancel(*, run: TuningRun) -> TuningRun:
    """Ask a run to stop: a queued run is cancelled at once, a running one after its current step."""
    now = timezone.now()
    with transaction.atomic():
        TuningRun.objects.filter(pk=run.pk, status=Status.QUEUED).update(
            status=Status.CANCELLED, cancel_requested=True, finished_at=now, error="Cancelled before it started."
        )
        TuningRun.objects.filter(pk=run.pk, status=Status.RUNNING).update(cancel_requested=True)
    run.refresh_from_db()
    return run


def run_cancel_outcome(run: TuningRun) -> str:
    """What a cancel did to ``run`` (as ``run_cancel`` returned it), in a sentence for the page or the shell."""
    if run.status == Status.RUNNING:
        return f"Run {run.pk} cancelling: training stops after the current step."
    if run.status == Status.CANCELLED and run.cancel_requested:
        return f"Run {run.pk} cancelled."
    return f"Nothing to cancel: run {run.pk} has already ended ({run.get_status_display().lower()})."


def run_retry(*, run: TuningRun) -> TuningRun:
    """Queue a failed or cancelled run again; training resumes from its last checkpoint when one exists."""
    with transaction.atomic():
        updated = TuningRun.objects.filter(pk=run.pk, status__in=[Status.FAILED, Status.CANCELLED]).update(
            status=Status.QUEUED, cancel_requested=False, error="", finished_at=None, worker=""
        )
        if updated != 1:
            raise LaunchError("Only a failed or cancelled run can be retried.")
        _enqueue_on_commit(run.pk)
    run.refresh_from_db()
    return run


def runs_reap_stale(*, older_than: timedelta | None = None, worker_name: str | None = None) -> list[int]:
    """Fail running runs whose worker is gone: heartbeat older than ``older_than``, or (at a worker's start)
    any run that worker was training. Returns the ids of the runs it failed."""
    condition = stale_condition(worker_name=worker_name, older_than=older_than, what="runs")
    stale = list(TuningRun.objects.filter(condition, status=Status.RUNNING).values_list("pk", flat=True))
    reason = (
        "The worker training this run stopped (it was killed or lost its connection) and the run cannot finish. "
        "Retry it to resume from the last checkpoint."
    )
    reaped = []
    for run_id in stale:
        if TuningRun.objects.filter(pk=run_id, status=Status.RUNNING).update(
            status=Status.FAILED, error=reason, finished_at=timezone.now()
        ):
            reaped.append(run_id)
    return reaped
