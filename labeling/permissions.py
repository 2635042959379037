"""Who may see what: the one place that holds the project-access rule for views and the API."""
from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from labeling.models import Project

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse


def visible_projects(user: Any) -> QuerySet[Project]:
    """The projects ``user`` may see: every one for staff, their own for an annotator."""
    return Project.objects.all() if user.is_staff else user.labeling_projects.all()


def project_for_annotator(user: Any, project_id: int) -> Project:
    """The project if ``user`` may annotate it (a member, or staff); 404 if it does not exist, else 403."""
    project = get_object_or_404(Project, pk=project_id)
    if user.is_staff or project.is_member(user):
        return project
    raise PermissionDenied("You are not a member of this project.")


def project_for_admin(user: Any, project_id: int) -> Project:
    """The project if ``user`` is staff; 403 otherwise (checked before the lookup, so ids do not leak)."""
    if not user.is_staff:
        raise PermissionDenied("Only admins can do this.")
    return get_object_or_404(Project, pk=project_id)


def staff_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """403 for signed-in users who are not staff (anonymous users never get here: login is required globally)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_staff:
            raise PermissionDenied("Only admins can do this.")
        return view(request, *args, **kwargs)

    return wrapper
