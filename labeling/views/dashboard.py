"""Admin screens: the project dashboard, the list of disputed pairs, and adjudicating one pair."""
from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST, require_safe

from labeling import quality, selectors
from labeling.errors import InvalidInput, LabelingError
from labeling.extensions import EXTENSIONS
from labeling.models import PairTask, PairVote
from labeling.permissions import project_for_admin
from labeling.services import adjudicate_pair

if TYPE_CHECKING:
    from django.http import HttpRequest

DISAGREEMENTS_PER_PAGE = 25
# What the adjudicate form may send; "clear" removes an earlier decision.
_ADJUDICATION_CHOICES = {"a": "a", "b": "b", "tie": "tie", "both_bad": "both_bad", "clear": ""}


@require_safe
def dashboard(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for_admin(request.user, project_id)
    polled = bool(request.headers.get("HX-Request"))
    extra = EXTENSIONS.dashboard_context(project, polled=polled) if EXTENSIONS.dashboard_context else {}
    if polled:
        # htmx polls this address for the running generation jobs alone (labeling/_generation_jobs.html).
        context = {"project": project, "generation_jobs": [], **extra, "polled": True}
        return render(request, "labeling/_generation_jobs.html", context)
    agreement = quality.project_agreement(project=project)
    waiting = selectors.prompts_waiting_for_candidates(project=project) if project.mode == project.Mode.COMPARE else 0
    context = {
        "project": project,
        "progress": quality.project_progress(project=project),
        "annotators": quality.annotator_stats(project=project),
        "agreement": agreement,
        "kappa_tables": [
            ("compare votes", agreement.pair_kappas, "pair-kappas"),
            ("ratings", agreement.rating_kappas, "rating-kappas"),
        ],
        "disagreement_count": quality.disagreement_count(project=project),
        "generation_jobs": [],
        # Generated candidates are paired as compare tasks, so the notice is for compare projects only.
        "waiting_for_candidates": waiting,
        **extra,
    }
    return render(request, "labeling/dashboard.html", context)


@require_safe
def disagreements(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for_admin(request.user, project_id)
    page = _page_number(request.GET.get("page"))
    total = quality.disagreement_count(project=project)
    last_page = max(1, -(-total // DISAGREEMENTS_PER_PAGE))
    if page > last_page:
        raise Http404("There is no such page.")
    items = quality.disagreement_list(
        project=project, limit=DISAGREEMENTS_PER_PAGE, offset=(page - 1) * DISAGREEMENTS_PER_PAGE
    )
    context = {
        "project": project,
        "items": items,
        "total": total,
        "page": page,
        "previous_page": page - 1 if page > 1 else None,
        "next_page": page + 1 if page < last_page else None,
        "choices": _choice_labels(),
    }
    return render(request, "labeling/disagreements.html", context)


@require_POST
def adjudicate(request: HttpRequest, project_id: int, task_id: int) -> HttpResponse:
    project = project_for_admin(request.user, project_id)
    task = get_object_or_404(PairTask, pk=task_id, project=project)
    raw = request.POST.get("choice", "")
    error = ""
    try:
        if raw not in _ADJUDICATION_CHOICES:
            raise InvalidInput(f"Unknown choice {raw!r}: use a, b, tie, both_bad or clear.")
        adjudicate_pair(task=task, admin=request.user, choice=_ADJUDICATION_CHOICES[raw])
    except LabelingError as exc:
        error = exc.message

    if request.headers.get("HX-Request") == "true":
        item = quality.disagreement_get(project=project, task_id=task.pk)
        if item is None:
            raise Http404("That task no longer exists.")
        context = {
            "project": project,
            "item": item,
            "choices": _choice_labels(),
            "error": error,
            "page": _page_number(request.POST.get("page")),
        }
        return render(request, "labeling/_disagreement_row.html", context, status=400 if error else 200)

    if error:
        messages.error(request, error)
    elif raw == "clear":
        messages.success(request, f"Cleared the decision on pair {task.pk}.")
    else:
        messages.success(request, f"Pair {task.pk} adjudicated: {_choice_labels()[raw]}.")
    url = reverse("labeling:disagreements", args=[project.pk])
    return redirect(f"{url}?page={_page_number(request.POST.get('page'))}#task-{task.pk}")


def _page_number(raw: str | None) -> int:
    # A bad page number is treated as the first page rather than an error: it only comes from a URL.
    try:
        return max(1, int(raw or 1))
    except ValueError:
        return 1


def _choice_labels() -> dict[str, str]:
    return {str(value): str(label) for value, label in PairVote.Choice.choices}
