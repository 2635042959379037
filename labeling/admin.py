from django.contrib import admin

from labeling.models import (
    ApiToken,
    Completion,
    PairTask,
    PairVote,
    Project,
    Prompt,
    RateTask,
    Rating,
    TaskLease,
    TaskSkip,
)


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("name", "mode", "overlap", "guideline_version", "created_at")
    filter_horizontal = ("members",)
    search_fields = ("name",)


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "external_id", "split", "created_at")
    list_filter = ("project", "split")
    search_fields = ("external_id",)


@admin.register(Completion)
class CompletionAdmin(admin.ModelAdmin):
    list_display = ("id", "prompt", "source", "model_name", "model_version")
    list_filter = ("source",)
    raw_id_fields = ("prompt",)


@admin.register(PairTask)
class PairTaskAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "purpose", "status", "vote_count", "overlap", "adjudicated_choice")
    list_filter = ("project", "purpose", "status")
    raw_id_fields = ("prompt", "completion_a", "completion_b")


@admin.register(RateTask)
class RateTaskAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "status", "vote_count", "overlap")
    list_filter = ("project", "status")
    raw_id_fields = ("completion",)


@admin.register(PairVote)
class PairVoteAdmin(admin.ModelAdmin):
    list_display = ("id", "task", "annotator", "choice", "a_side", "strength", "time_spent_ms", "created_at")
    list_filter = ("choice", "a_side")
    raw_id_fields = ("task",)


@admin.register(Rating)
class RatingAdmin(admin.ModelAdmin):
    list_display = ("id", "completion", "annotator", "value", "created_at")
    list_filter = ("value",)
    raw_id_fields = ("task", "completion")


@admin.register(TaskLease)
class TaskLeaseAdmin(admin.ModelAdmin):
    list_display = ("kind", "task_id", "annotator", "leased_at", "expires_at")


@admin.register(TaskSkip)
class TaskSkipAdmin(admin.ModelAdmin):
    list_display = ("kind", "task_id", "annotator", "created_at")


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("user", "name", "created_at", "last_used_at")
    readonly_fields = ("digest",)
