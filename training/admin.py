"""Django admin for tuning: base models and versions to register, and read-mostly views of what the app records.

Runs, generation jobs, exports, battles, snapshots and metrics are written by the services and workers; the admin shows
them for inspection and never edits them (a run's name is the one exception). A snapshot's rows and hash are
what a run trained on, so they can never change.
"""
from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from training.models import (
    BaseModel,
    Battle,
    DatasetSnapshot,
    GenerationJob,
    ModelVersion,
    RunMetric,
    TuningRun,
    VersionExport,
)
from webapp.untrusted_text import isolated


@admin.register(BaseModel)
class BaseModelAdmin(admin.ModelAdmin):
    list_display = ("name", "path", "created_at")


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("name", "base_model", "adapter_path", "created_at")


class _ReadOnlyAdmin(admin.ModelAdmin):
    """Listed and viewed, never added, changed or deleted here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(TuningRun)
class TuningRunAdmin(admin.ModelAdmin):
    list_display = (
        "id", "name", "project", "method", "status", "base_model", "step", "total_steps", "train_rows",
        "created_at", "finished_at",
    )
    list_filter = ("status", "method", "project", "base_model")
    list_select_related = ("project", "base_model")
    search_fields = ("name", "error", "worker")
    date_hierarchy = "created_at"

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # Status, progress and settings belong to the services and the worker; a name is only a label.
        return [field.name for field in TuningRun._meta.fields if field.name != "name"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(GenerationJob)
class GenerationJobAdmin(_ReadOnlyAdmin):
    list_display = (
        "id", "project", "purpose", "status", "prompt_count", "completions_created", "completions_total",
        "tasks_created", "run", "created_at",
    )
    list_filter = ("status", "purpose", "project")
    list_select_related = ("project", "run")
    search_fields = ("error", "worker", "run__name")


@admin.register(VersionExport)
class VersionExportAdmin(_ReadOnlyAdmin):
    list_display = ("id", "version", "kind", "status", "worker", "created_at", "finished_at")
    list_filter = ("status", "kind")
    list_select_related = ("version",)
    search_fields = ("version__name", "error", "worker")


@admin.register(Battle)
class BattleAdmin(_ReadOnlyAdmin):
    list_display = ("id", "project", "version_a", "version_b", "run", "tasks_created", "identical_skipped", "created_at")
    list_filter = ("project",)
    list_select_related = ("project", "version_a", "version_b", "run")
    search_fields = ("version_a__name", "version_b__name", "run__name")


@admin.register(DatasetSnapshot)
class DatasetSnapshotAdmin(_ReadOnlyAdmin):
    list_display = ("id", "project", "method", "row_count", "short_hash", "includes_heldout", "created_at")
    list_filter = ("method", "includes_heldout", "project")
    list_select_related = ("project",)
    search_fields = ("rows_hash",)
    # The rows themselves can be megabytes: the page shows the first few.
    exclude = ("rows",)
    readonly_fields = ("first_rows",)

    @admin.display(description="Rows hash")
    def short_hash(self, snapshot: DatasetSnapshot) -> str:
        return snapshot.rows_hash[:12]

    @admin.display(description="First rows")
    def first_rows(self, snapshot: DatasetSnapshot) -> SafeString:
        shown = json.dumps(snapshot.rows[:3], ensure_ascii=False, indent=1)
        more = f"\n… and {snapshot.row_count - 3} more" if snapshot.row_count > 3 else ""
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', isolated(shown + more))


@admin.register(RunMetric)
class RunMetricAdmin(_ReadOnlyAdmin):
    list_display = ("run", "step", "split", "loss", "created_at")
    list_filter = ("split",)
    list_select_related = ("run",)
    search_fields = ("run__name",)

    @admin.display(description="Loss")
    def loss(self, metric: RunMetric) -> Any:
        return metric.values.get("loss", "–") if isinstance(metric.values, dict) else "–"
