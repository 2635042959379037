"""Admin screens for review: a run's outputs side by side, generating them, blind battles and their results,
and the project's leaderboard. Annotators vote on battles in the ordinary compare screen."""
from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from labeling.permissions import project_for_admin
from training import selectors
from training.models import GenerationJob, ModelVersion, TuningRun
from training.review import battles as review_battles
from training.review import generation as review_generation
from training.review import selectors as review_selectors
from training.review import versions as review_versions
from training.review.forms import CandidatesForm, GenerationForm, SideBySideFilter, VersionPairForm

ROWS_PER_PAGE = 20


def _run_for_admin(user, run_id: int) -> TuningRun:  # noqa: ANN001
    if not user.is_staff:
        raise PermissionDenied("Only admins can review tuning runs.")
    return get_object_or_404(TuningRun.objects.select_related("project", "base_model", "model_version"), pk=run_id)


def _versions_or_none(run: TuningRun) -> tuple[ModelVersion, ModelVersion] | None:
    try:
        return review_versions.run_review_versions(run=run)
    except review_versions.ReviewError:
        return None


@require_safe
def run_review(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _run_for_admin(request.user, run_id)
    context: dict = {"run": run, "project": run.project, "form": GenerationForm()}
    versions = _versions_or_none(run)
    if versions is not None:
        base, tuned = versions
        filters = SideBySideFilter(request.GET or None)
        search, differ = ("", False)
        if filters.is_valid():
            search, differ = filters.cleaned_data["q"], filters.cleaned_data["differ"]
        rows = review_selectors.side_by_side(project=run.project, base=base, tuned=tuned, search=search, only_different=differ)
        page = Paginator(rows, ROWS_PER_PAGE).get_page(request.GET.get("page"))
        query = request.GET.copy()
        query.pop("page", None)
        context.update(
            base=base, tuned=tuned, filters=filters, page=page, query=query.urlencode(),
            lengths=review_selectors.output_lengths(rows),
            results=review_selectors.battle_results(project=run.project, tuned=tuned, base=base),
        )
    latest = selectors.run_latest_metrics(run=run)
    context["key_metrics"] = [(k, latest[k]) for k in review_selectors.KEY_METRICS if k in latest]
    context["jobs"] = review_selectors.generation_jobs(project=run.project, run_id=run.pk)
    return render(request, "training/review.html", context)


@require_POST
def run_review_generate(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _run_for_admin(request.user, run_id)
    form = GenerationForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Generation settings: " + "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items()))
        return redirect("training:run_review", run_id=run.pk)
    try:
        base, tuned = review_versions.run_review_versions(run=run)
        job = review_generation.generation_job_create(
            project=run.project, versions=[base, tuned], settings_data=form.settings_data(),
            purpose=GenerationJob.Purpose.REVIEW, run=run, create_review_tasks=form.cleaned_data["create_review_tasks"],
            created_by=request.user,
        )
    except review_versions.ReviewError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"Queued generation for {job.prompt_count} held-out prompts from base and tuned.")
    return redirect("training:run_review", run_id=run.pk)


@require_POST
def run_battles_create(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _run_for_admin(request.user, run_id)
    try:
        base, tuned = review_versions.run_review_versions(run=run)
        battle = review_battles.battles_create(project=run.project, version_a=tuned, version_b=base, run=run, created_by=request.user)
    except review_versions.ReviewError as error:
        messages.error(request, error.message)
        return redirect("training:run_review", run_id=run.pk)
    messages.success(request, f"Created {battle.tasks_created} blind battles; annotators see them in the compare screen.")
    return redirect("training:run_battles", run_id=run.pk)


@require_safe
def run_battles(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _run_for_admin(request.user, run_id)
    context: dict = {"run": run, "project": run.project}
    versions = _versions_or_none(run)
    if versions is not None:
        base, tuned = versions
        context.update(base=base, tuned=tuned, results=review_selectors.battle_results(project=run.project, tuned=tuned, base=base))
    return render(request, "training/battles.html", context)


@require_safe
def leaderboard(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for_admin(request.user, project_id)
    versions = review_selectors.project_versions_with_outputs(project=project)
    context = {
        "project": project,
        "rows": review_selectors.leaderboard(project=project),
        "pair_form": VersionPairForm(versions=versions),
        "can_pair": len(versions) >= 2,
    }
    return render(request, "training/leaderboard.html", context)


@require_POST
def project_battles_create(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for_admin(request.user, project_id)
    form = VersionPairForm(request.POST, versions=review_selectors.project_versions_with_outputs(project=project))
    if not form.is_valid():
        messages.error(request, " ".join(e for errors in form.errors.values() for e in errors))
        return redirect("training:leaderboard", project_id=project.pk)
    version_a = ModelVersion.objects.get(pk=form.cleaned_data["version_a"])
    version_b = ModelVersion.objects.get(pk=form.cleaned_data["version_b"])
    try:
        battle = review_battles.battles_create(project=project, version_a=version_a, version_b=version_b, created_by=request.user)
    except review_versions.ReviewError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"Created {battle.tasks_created} blind battles between {version_a.name} and {version_b.name}.")
    return redirect("training:leaderboard", project_id=project.pk)


@require_http_methods(["GET", "POST"])
def project_candidates(request: HttpRequest, project_id: int) -> HttpResponse:
    """Ask models for candidate completions of the project's prompts; the worker pairs them for annotators."""
    project = project_for_admin(request.user, project_id)
    form = CandidatesForm(request.POST or None, choices=review_versions.version_choices())
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                job = review_generation.generation_job_create(
                    project=project,
                    versions=review_versions.versions_from_choices(form.cleaned_data["versions"]),
                    settings_data=form.settings_data(),
                    purpose=GenerationJob.Purpose.CANDIDATES,
                    split=form.cleaned_data["split"],
                    created_by=request.user,
                )
            except review_versions.ReviewError as error:
                form.add_error(None, error.message)
            else:
                messages.success(
                    request, f"Queued candidates for {job.prompt_count} prompts; pairs appear in the queue as they are made."
                )
                return redirect("training:project_candidates", project_id=project.pk)
        status = 400
    jobs = review_selectors.generation_jobs(project=project)
    return render(request, "training/candidates.html", {"project": project, "form": form, "jobs": jobs}, status=status)
