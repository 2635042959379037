"""Which model versions a review compares: a base model on its own, a run's tuned adapter, and the picker's
choices. ``ReviewError`` is the one error every review action raises, in words for the admin."""
from __future__ import annotations

from collections.abc import Sequence

from training.models import BaseModel, ModelVersion, TuningRun


class ReviewError(Exception):
    """Why a review action cannot be done, in words for the admin; nothing was written or queued."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def base_version_get_or_create(*, base_model: BaseModel) -> ModelVersion:
    """The ModelVersion that stands for ``base_model`` alone (no adapter), created on first use."""
    existing = ModelVersion.objects.filter(base_model=base_model, adapter_path="").order_by("id").first()
    if existing is not None:
        return existing
    version, _ = ModelVersion.objects.get_or_create(
        name=f"{base_model.name} (base)"[:200], defaults={"base_model": base_model, "adapter_path": ""}
    )
    if version.base_model_id != base_model.pk or version.adapter_path:
        raise ReviewError(f"A model version named {version.name!r} exists but is not the base model alone; rename it.")
    return version


def run_review_versions(*, run: TuningRun) -> tuple[ModelVersion, ModelVersion]:
    """(base, tuned): the two versions a run's review compares. Raises ReviewError before the run has an adapter."""
    if run.model_version is None:
        raise ReviewError("This run has no tuned adapter yet: review it once it has succeeded.")
    return base_version_get_or_create(base_model=run.base_model), run.model_version


def version_choices() -> list[tuple[str, str]]:
    """Every model version, plus each registered base model on its own (``base:<id>``), for a picker."""
    choices = [(f"base:{base.pk}", f"{base.name} (base)") for base in BaseModel.objects.order_by("name")]
    base_names = {label for _, label in choices}
    choices += [
        (f"version:{v.pk}", v.name)
        for v in ModelVersion.objects.select_related("base_model").order_by("-id")
        if v.adapter_path or v.name not in base_names
    ]
    return choices


def base_model_of_choice(value: str) -> int | None:
    """The base model id behind a ``version_choices`` value, or None for an unknown one."""
    kind, _, raw_id = value.partition(":")
    if not raw_id.isdigit():
        return None
    if kind == "base":
        return BaseModel.objects.filter(pk=raw_id).values_list("pk", flat=True).first()
    if kind == "version":
        return ModelVersion.objects.filter(pk=raw_id).values_list("base_model_id", flat=True).first()
    return None


def versions_from_choices(values: Sequence[str]) -> list[ModelVersion]:
    """Resolve ``version_choices`` values; a bare base model gets (or gets created) its own version."""
    versions: list[ModelVersion] = []
    for value in values:
        kind, _, raw_id = value.partition(":")
        if kind == "base":
            base = BaseModel.objects.filter(pk=raw_id).first() if raw_id.isdigit() else None
            if base is None:
                raise ReviewError("That base model no longer exists.")
            versions.append(base_version_get_or_create(base_model=base))
        elif kind == "version":
            version = ModelVersion.objects.filter(pk=raw_id).first() if raw_id.isdigit() else None
            if version is None:
                raise ReviewError("That model version no longer exists.")
            versions.append(version)
        else:
            raise ReviewError(f"Unknown model choice {value!r}.")
    return versions
