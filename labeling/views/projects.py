"""Project list (everyone) and project settings (admins)."""
from __future__ import annotations

from django.contrib import messages
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from labeling import services
from labeling.extensions import EXTENSIONS
from labeling.forms import ProjectForm
from labeling.models import TaskStatus
from labeling.permissions import project_for_admin, staff_required, visible_projects


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    projects = visible_projects(request.user)
    projects = projects.annotate(
        pair_total=Count("pair_tasks", distinct=True),
        pair_open=Count("pair_tasks", filter=Q(pair_tasks__status=TaskStatus.OPEN), distinct=True),
        rate_total=Count("rate_tasks", distinct=True),
        rate_open=Count("rate_tasks", filter=Q(rate_tasks__status=TaskStatus.OPEN), distinct=True),
    )
    walkthrough = None
    if request.user.is_staff:
        chosen = request.GET.get("loop", "")
        if EXTENSIONS.home_walkthrough is not None:
            walkthrough = EXTENSIONS.home_walkthrough(projects, int(chosen) if chosen.isdigit() else None)
    return render(request, "labeling/home.html", {"projects": projects, "walkthrough": walkthrough})


@staff_required
@require_http_methods(["GET", "POST"])
def project_new(request: HttpRequest) -> HttpResponse:
    form = ProjectForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        project = services.project_create(
            name=form.cleaned_data["name"],
            mode=form.cleaned_data["mode"],
            overlap=form.cleaned_data["overlap"],
            guidelines=form.cleaned_data["guidelines"],
            description=form.cleaned_data["description"],
            members=list(form.cleaned_data["members"]),
            label_order=form.cleaned_data["label_order"],
        )
        messages.success(request, f"Created {project.name}. Import prompts to give annotators work.")
        return redirect("labeling:import", project_id=project.pk)
    return render(request, "labeling/project_form.html", {"form": form, "project": None}, status=400 if form.errors else 200)


@require_http_methods(["GET", "POST"])
def project_edit(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for_admin(request.user, project_id)
    form = ProjectForm(request.POST or None, instance=project)
    if request.method == "POST" and form.is_valid():
        services.project_update(
            project=project,
            name=form.cleaned_data["name"],
            overlap=form.cleaned_data["overlap"],
            guidelines=form.cleaned_data["guidelines"],
            description=form.cleaned_data["description"],
            members=list(form.cleaned_data["members"]),
            label_order=form.cleaned_data["label_order"],
        )
        messages.success(request, "Saved.")
        return redirect("labeling:dashboard", project_id=project.pk)
    return render(request, "labeling/project_form.html", {"form": form, "project": project}, status=400 if form.errors else 200)
