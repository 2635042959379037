from django.urls import path, register_converter

from training import views
from training.models import VersionExport
from training.playground import views as playground_views
from training.review import views as review_views


class ExportKindConverter:
    """The export kinds and nothing else: any other word in their place is a 404, never some default export."""

    regex = "|".join(VersionExport.Kind.values)

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(ExportKindConverter, "export_kind")

app_name = "training"

urlpatterns = [
    path("models/", views.base_models, name="base_models"),
    path("versions/<int:version_id>/<export_kind:kind>.zip", views.version_download, name="version_download"),
    path("versions/<int:version_id>/<export_kind:kind>/export/", views.version_export_start, name="version_export_start"),
    path("versions/<int:version_id>/<export_kind:kind>/export/cancel/", views.version_export_cancel,
         name="version_export_cancel"),
    path("versions/<int:version_id>/exports/", views.version_exports, name="version_exports"),
    path("projects/<int:project_id>/runs/", views.runs, name="runs"),
    path("projects/<int:project_id>/runs/new/", views.run_new, name="run_new"),
    path("runs/<int:run_id>/", views.run_detail, name="run_detail"),
    path("runs/<int:run_id>/status/", views.run_status, name="run_status"),
    path("runs/<int:run_id>/metrics.json", views.run_metrics, name="run_metrics"),
    path("runs/<int:run_id>/cancel/", views.run_cancel, name="run_cancel"),
    path("runs/<int:run_id>/retry/", views.run_retry, name="run_retry"),
    # Review: base and tuned side by side, blind battles, the leaderboard.
    path("runs/<int:run_id>/review/", review_views.run_review, name="run_review"),
    path("runs/<int:run_id>/review/generate/", review_views.run_review_generate, name="run_review_generate"),
    path("runs/<int:run_id>/battles/", review_views.run_battles, name="run_battles"),
    path("runs/<int:run_id>/battles/create/", review_views.run_battles_create, name="run_battles_create"),
    path("projects/<int:project_id>/leaderboard/", review_views.leaderboard, name="leaderboard"),
    path("projects/<int:project_id>/battles/create/", review_views.project_battles_create, name="project_battles_create"),
    path("projects/<int:project_id>/rewards/score/", review_views.project_rewards_score, name="project_rewards_score"),
    path("projects/<int:project_id>/candidates/", review_views.project_candidates, name="project_candidates"),
    path("generation-jobs/<int:job_id>/cancel/", review_views.generation_job_cancel, name="generation_job_cancel"),
    path("projects/<int:project_id>/playground/", playground_views.playground, name="playground"),
    path("playground/<int:request_id>/", playground_views.playground_request, name="playground_request"),
    path("playground/<int:request_id>/cancel/", playground_views.playground_cancel, name="playground_cancel"),
    path("playground/<int:request_id>/keep/", playground_views.playground_keep, name="playground_keep"),
    path("playground/<int:request_id>/battle/", playground_views.playground_battle, name="playground_battle"),
]
