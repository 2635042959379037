from django.urls import path

from labeling import api

app_name = "api"

urlpatterns = [
    path("projects/", api.projects, name="projects"),
    path("projects/<int:project_id>/import", api.project_import, name="import"),
    path("projects/<int:project_id>/export", api.project_export, name="export"),
    path("projects/<int:project_id>/next", api.task_next, name="next"),
    path("tasks/<str:kind>/<int:task_id>/vote", api.task_vote, name="vote"),
]
