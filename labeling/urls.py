from django.urls import path

from labeling.views import annotate, dashboard, projects, transfer

app_name = "labeling"

urlpatterns = [
    path("", projects.home, name="home"),
    path("projects/new/", projects.project_new, name="project_new"),
    path("projects/<int:project_id>/", annotate.annotate, name="annotate"),
    path("projects/<int:project_id>/settings/", projects.project_edit, name="project_edit"),
    path("projects/<int:project_id>/card/", annotate.card, name="card"),
    path("projects/<int:project_id>/pairs/<int:task_id>/vote/", annotate.pair_vote, name="pair_vote"),
    path("projects/<int:project_id>/rate/<int:task_id>/vote/", annotate.rate_vote, name="rate_vote"),
    path("projects/<int:project_id>/<str:kind>/<int:task_id>/skip/", annotate.skip, name="skip"),
    path("projects/<int:project_id>/dashboard/", dashboard.dashboard, name="dashboard"),
    path("projects/<int:project_id>/disagreements/", dashboard.disagreements, name="disagreements"),
    path("projects/<int:project_id>/pairs/<int:task_id>/adjudicate/", dashboard.adjudicate, name="adjudicate"),
    path("projects/<int:project_id>/import/", transfer.import_upload, name="import"),
    path("projects/<int:project_id>/export/", transfer.export_download, name="export"),
]
