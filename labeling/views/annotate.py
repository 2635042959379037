"""The annotator's screens: the compare / rate queue, voting, skipping. Plain forms, made fast with htmx."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from labeling import selectors, services
from labeling.errors import Conflict, InvalidInput, LabelingError
from labeling.models import PairTask, Project, RateTask
from labeling.permissions import project_for_annotator

# A refused plain-form vote is answered with a redirect; what the annotator typed waits in the session for the
# page it lands on, so a rationale that was one character too long is not lost.
_DRAFT_SESSION_KEY = "refused_vote_draft"
_DRAFT_FIELDS = ("rationale", "edited_text", "strength")


def _card_context(
    project: Project, user, task: PairTask | RateTask | None, error: str = "", draft: dict[str, str] | None = None  # noqa: ANN001
) -> dict:
    context = {
        "project": project, "task": task, "error": error, "draft": draft or {},
        "progress": selectors.annotator_progress(project=project, annotator=user),
    }
    if task is None:
        return context
    context["client_key"] = services.client_key_new()
    if isinstance(task, PairTask):
        a_side = task.a_side_for(user.pk)
        left, right = (task.completion_a, task.completion_b) if a_side == "left" else (task.completion_b, task.completion_a)
        context.update(kind="pair", left=left, right=right, messages_=task.prompt.messages)
    else:
        context.update(kind="rate", completion=task.completion, messages_=task.completion.prompt.messages)
    return context


def _card_template(project: Project) -> str:
    return "labeling/_pair_card.html" if project.mode == Project.Mode.COMPARE else "labeling/_rate_card.html"


def _next_card(request: HttpRequest, project: Project, error: str = "", status: int = 200) -> HttpResponse:
    """Answer a vote or skip: htmx gets the next card (and a fresh progress bar), a plain form a redirect."""
    if not request.headers.get("HX-Request"):
        if error:
            messages.error(request, error)
        return redirect("labeling:annotate", project_id=project.pk)
    task = services.task_lease_next(project=project, annotator=request.user)
    return render(request, _card_template(project), _card_context(project, request.user, task, error), status=status)


@require_GET
def annotate(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for_annotator(request.user, project_id)
    task = services.task_lease_next(project=project, annotator=request.user)
    context = _card_context(project, request.user, task, draft=_saved_draft(request, task))
    context["card_template"] = _card_template(project)
    return render(request, "labeling/annotate.html", context)


@require_GET
def card(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for_annotator(request.user, project_id)
    task = services.task_lease_next(project=project, annotator=request.user)
    return render(request, _card_template(project), _card_context(project, request.user, task))


def _optional_int(raw: str | None, field: str) -> int | None:
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise InvalidInput(f"{field} must be a whole number.") from exc


def _refused(request: HttpRequest, project: Project, task: PairTask | RateTask, error: LabelingError) -> HttpResponse:
    """A vote the service refused: a conflict moves on to the next task, bad input shows the same task again."""
    if isinstance(error, Conflict):
        return _next_card(request, project, error=error.message, status=409)
    draft = {name: request.POST.get(name, "") for name in _DRAFT_FIELDS}
    if not request.headers.get("HX-Request"):
        messages.error(request, error.message)
        request.session[_DRAFT_SESSION_KEY] = {"kind": type(task).__name__, "task": task.pk, **draft}
        return redirect("labeling:annotate", project_id=project.pk)
    context = _card_context(project, request.user, task, error=error.message, draft=draft)
    return render(request, _card_template(project), context, status=error.status_code)


def _saved_draft(request: HttpRequest, task: PairTask | RateTask | None) -> dict[str, str] | None:
    """The text of a refused plain-form vote on ``task``, once; None for any other task."""
    saved = request.session.pop(_DRAFT_SESSION_KEY, None)
    if not saved or task is None or (saved.get("kind"), saved.get("task")) != (type(task).__name__, task.pk):
        return None
    return {name: str(saved.get(name, "")) for name in _DRAFT_FIELDS}


def _pair_vote_fields(post: QueryDict) -> dict[str, Any]:
    return {
        "pick": post.get("pick", ""),
        "strength": _optional_int(post.get("strength"), "Strength"),
        "rationale": post.get("rationale", ""),
        "edited_text": post.get("edited_text", ""),
        "time_spent_ms": _optional_int(post.get("time_spent_ms"), "Time spent"),
    }


def _rate_vote_fields(post: QueryDict) -> dict[str, Any]:
    return {
        "value": post.get("value", ""),
        "rationale": post.get("rationale", ""),
        "time_spent_ms": _optional_int(post.get("time_spent_ms"), "Time spent"),
    }


def _vote(
    request: HttpRequest,
    project_id: int,
    task_id: int,
    *,
    model: type[PairTask] | type[RateTask],
    missing: str,
    fields: Callable[[QueryDict], dict[str, Any]],
    record: Callable[..., object],
) -> HttpResponse:
    """One plain-form vote on a task of ``model`` in the project: the service ``record`` with the posted ``fields``,
    then the next card; ``missing`` (404) when the task is not in the project, the refusal when the service says no."""
    project = project_for_annotator(request.user, project_id)
    task = model.objects.filter(pk=task_id, project=project).first()
    if task is None:
        return _next_card(request, project, error=missing, status=404)
    try:
        # The fields are read inside the try: a malformed number is refused like any other bad input.
        record(
            task_id=task.pk, annotator=request.user, client_key=request.POST.get("client_key", ""), project=project,
            **fields(request.POST),
        )
    except LabelingError as error:
        return _refused(request, project, task, error)
    return _next_card(request, project)


@require_POST
def pair_vote(request: HttpRequest, project_id: int, task_id: int) -> HttpResponse:
    return _vote(
        request, project_id, task_id, model=PairTask, missing="That pair is not in this project.",
        fields=_pair_vote_fields, record=services.pair_vote_record,
    )


@require_POST
def rate_vote(request: HttpRequest, project_id: int, task_id: int) -> HttpResponse:
    return _vote(
        request, project_id, task_id, model=RateTask, missing="That item is not in this project.",
        fields=_rate_vote_fields, record=services.rating_record,
    )


@require_POST
def skip(request: HttpRequest, project_id: int, kind: str, task_id: int) -> HttpResponse:
    project = project_for_annotator(request.user, project_id)
    try:
        services.task_skip(project=project, annotator=request.user, kind=kind, task_id=task_id)
    except LabelingError as error:
        return _next_card(request, project, error=error.message, status=error.status_code)
    return _next_card(request, project)
