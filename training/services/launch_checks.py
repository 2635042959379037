"""Why a run cannot be launched: each ``check_*`` raises LaunchError with the words to show the admin, in the order
``run_launch`` calls them, before anything is written or queued."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from labeling import quality
from labeling.models import Project
from training import online_rl
from training.models import BaseModel, ModelVersion, TuningRun
from training.services.preview import DatasetPreview
from training.trainer.config import TrainSettings
from training.trainer.rows import RowsError, rows_format, split_rows, validate_rows


class LaunchError(Exception):
    """Why a run cannot be launched, in words for the admin; nothing was written or queued."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


# Below this many rows a run learns nothing worth the GPU time; the message says how many are missing.
MIN_DPO_ROWS = 4
MIN_KTO_ROWS = 4
MIN_SFT_ROWS = 4

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


def check_method(method: str) -> None:
    if method not in TuningRun.Method.values:
        raise LaunchError(
            f"Unknown method {method!r}: choose DPO, KTO, SimPO, CPO, ORPO, SFT, GRPO, RLOO or a reward model.",
            field="method",
        )


def check_base_model(base_model_id: int | None) -> BaseModel:
    """The chosen base model, registered, ready and on this server."""
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
    return base_model


def _model_path_usable(path: str) -> bool:
    """A local folder with a config, or something shaped like a hub id (for GPU hosts with a model cache)."""
    candidate = Path(path)
    if candidate.is_absolute() or path.startswith("."):
        return (candidate / "config.json").is_file()
    return path.count("/") == 1 and all(part.strip() for part in path.split("/"))


def check_start_from(project: Project, base_model: BaseModel, version_id: int | None) -> ModelVersion | None:
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


def noise_plan(project: Project, method: str, handling: str) -> tuple[float, dict[str, Any], dict[str, Any]]:
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


def trains_on_pairs(project: Project, method: str) -> bool:
    """Whether the run's rows come from decided pairs (where the cut-off rule applies), not from thumbs."""
    fmt = rows_format(method)
    return fmt == "dpo" or (fmt == "sft" and project.mode != Project.Mode.RATE)


def _cut_off_hint(preview: DatasetPreview) -> str:
    cut_off = preview.summary.get("cut_off_chosen", 0)
    if not cut_off:
        return ""
    return (
        f" {cut_off} more decided pair(s) were left out because the chosen answer was cut off at the token limit; "
        "'Keep pairs whose chosen answer was cut off' (under Advanced; --keep-cut-off-chosen for launch_run) "
        "trains on them."
    )


def check_dataset(preview: DatasetPreview, method: str, train_settings: TrainSettings) -> None:
    """Enough rows of the kind ``method`` trains on, valid ones, and (KTO) at least one full batch of them."""
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
