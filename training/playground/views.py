"""The playground: ask the project's models a question and watch the answers side by side as they are written."""
from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from labeling.models import Project
from labeling.permissions import project_for_annotator, staff_required
from training.models import PlaygroundRequest
from training.playground import selectors, services
from training.playground.forms import PlaygroundForm
from training.review import versions as review_versions


def _project_for_playground(user, project_id: int) -> Project:  # noqa: ANN001
    """Admins; members too when the project lets annotators use the playground."""
    project = project_for_annotator(user, project_id)
    if not user.is_staff and not project.playground_for_annotators:
        raise PermissionDenied("This project's playground is for admins.")
    return project


def _request_for(user, request_id: int) -> PlaygroundRequest:  # noqa: ANN001
    question = get_object_or_404(PlaygroundRequest.objects.select_related("project"), pk=request_id)
    _project_for_playground(user, question.project_id)
    if question.created_by_id != user.pk and not user.is_staff:
        raise PermissionDenied("That question was asked by someone else.")
    return question


@require_http_methods(["GET", "POST"])
def playground(request: HttpRequest, project_id: int) -> HttpResponse:
    project = _project_for_playground(request.user, project_id)
    form = PlaygroundForm(request.POST or None, choices=selectors.playground_version_choices(project=project))
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                columns = selectors.playground_columns(form.cleaned_data["versions"])
                question = services.playground_request_create(
                    project=project, user=request.user, prompt=form.cleaned_data["prompt"],
                    system=form.cleaned_data["system"], settings_data=form.settings_data(),
                    versions=review_versions.versions_from_choices([value for value, _ in columns]),
                    best_of=[count for _, count in columns],
                )
            except (services.PlaygroundError, review_versions.ReviewError) as error:
                form.add_error(None, error.message)
            else:
                return redirect("training:playground_request", request_id=question.pk)
        status = 400
    context = {
        "project": project, "form": form, "busy": selectors.gpu_worker_busy(),
        "recent": selectors.playground_requests(project=project, user=request.user),
    }
    return render(request, "training/playground.html", context, status=status)


@require_safe
def playground_request(request: HttpRequest, request_id: int) -> HttpResponse:
    """One question and its answers; htmx polls the same address for the answers alone while they are written."""
    question = _request_for(request.user, request_id)
    context = {"question": question, "project": question.project, "answers": list(question.answers.select_related("model_version")),
               "busy": selectors.gpu_worker_busy() if question.status == PlaygroundRequest.Status.QUEUED else None}
    if request.headers.get("HX-Request"):
        return render(request, "training/_playground_answers.html", context)
    form = PlaygroundForm(
        initial={"prompt": question.prompt_text, "system": question.system_text, **question.settings,
                 "versions": [_choice_of(a) for a in context["answers"]]},
        choices=selectors.playground_version_choices(project=question.project),
    )
    return render(request, "training/playground_request.html", {**context, "form": form})


def _choice_of(answer) -> str:  # noqa: ANN001
    """The picker value that asks for this column again."""
    version = answer.model_version
    value = f"version:{version.pk}" if version.adapter_path else f"base:{version.base_model_id}"
    return f"best{answer.best_of}:{value}" if answer.best_of > 1 else value


@require_POST
def playground_cancel(request: HttpRequest, request_id: int) -> HttpResponse:
    question = _request_for(request.user, request_id)
    if services.playground_request_cancel(request=question):
        messages.info(request, "Stopped: the worker ends the answer it is writing at the next token.")
    return redirect("training:playground_request", request_id=question.pk)


@staff_required
@require_POST
def playground_keep(request: HttpRequest, request_id: int) -> HttpResponse:
    question = _request_for(request.user, request_id)
    try:
        prompt = services.playground_prompt_keep(request=question, split=request.POST.get("split", ""))
    except services.PlaygroundError as error:
        messages.error(request, error.message)
    else:
        where = "for the next review" if prompt.split == "heldout" else "for the next candidates"
        messages.success(request, f"Kept as a {prompt.get_split_display().lower()} prompt of {question.project.name} ({where}).")
    return redirect("training:playground_request", request_id=question.pk)


@staff_required
@require_POST
def playground_battle(request: HttpRequest, request_id: int) -> HttpResponse:
    question = _request_for(request.user, request_id)
    try:
        battle = services.playground_battle_create(request=question, user=request.user)
    except services.PlaygroundError as error:
        messages.error(request, error.message)
    else:
        if battle.tasks_created:
            messages.success(request, "Sent to a blind battle: annotators will see the two answers in the compare screen, unnamed.")
        elif battle.identical_skipped:
            messages.info(request, "Both versions wrote the same text: there is nothing to battle.")
        else:
            messages.info(request, "This pair is already in a battle.")
    return redirect("training:playground_request", request_id=question.pk)
