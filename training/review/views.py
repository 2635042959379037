"""Admin screens for review: a run's outputs side by side, generating them, blind battles and their results,
and the project's leaderboard. Annotators vote on battles in the ordinary compare screen."""
from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from labeling.models import Project
from labeling.permissions import project_for_admin
from training.access import run_for_admin
from training.models import Battle, GenerationJob, ModelVersion, TuningRun
from training.presenters.validation import run_validation
from training.review import battles as review_battles
from training.review import drift as review_drift
from training.review import figures
from training.review import generation as review_generation
from training.review import leaderboard as review_leaderboard
from training.review import results as review_results
from training.review import rewards as review_rewards
from training.review import selectors as review_selectors
from training.review import versions as review_versions
from training.review.candidate_expectation import CandidateExpectation, candidate_expectation
from training.review.comparisons import comparison_key, describe_settings
from training.review.drift_chart import drift_chart
from training.review.forms import CandidatesForm, GenerationForm, SideBySideFilter, VersionPairForm
from training.review.matched_outputs import comparison_choose, comparisons
from training.review.side_by_side import output_lengths, side_by_side

ROWS_PER_PAGE = 20


def _versions_or_none(run: TuningRun) -> tuple[ModelVersion, ModelVersion] | None:
    try:
        return review_versions.run_review_versions(run=run)
    except review_versions.ReviewError:
        return None


def _labels(base: ModelVersion, tuned: ModelVersion) -> dict[str, str]:
    return {
        "base_label": figures.version_label(base.name, role="base"),
        "tuned_label": figures.version_label(tuned.name, role="tuned"),
    }


def _battles_message(battle: Battle) -> str:
    text = (
        f"Created {battle.tasks_created} blind battles ({describe_settings(battle.settings)}); annotators see them "
        "in the compare screen."
    )
    if battle.identical_skipped:
        text += (
            f" {battle.identical_skipped} matched pair{'s were' if battle.identical_skipped != 1 else ' was'} left out: "
            "both versions wrote the same text."
        )
    return text


@require_safe
def run_review(request: HttpRequest, run_id: int) -> HttpResponse:
    """The side by side, the figures and the review jobs; htmx polls the same address for the jobs table alone
    while a job is queued or running."""
    run = run_for_admin(request.user, run_id)
    project = run.project
    if request.headers.get("HX-Request"):
        return render(request, "training/_review_jobs.html", _review_jobs_context(run))
    form = GenerationForm(
        heldout_prompts=review_selectors.heldout_prompt_count(project=project), rate_project=project.mode == Project.Mode.RATE
    )
    context: dict = {
        "form": form, "validation": run_validation(run=run), **_review_jobs_context(run),
    }
    versions = _versions_or_none(run)
    if versions is not None:
        base, tuned = versions
        filters = SideBySideFilter(request.GET or None)
        search, differ, key = "", False, None
        if filters.is_valid():
            search, differ, key = filters.cleaned_data["q"], filters.cleaned_data["differ"], filters.cleaned_data["settings"]
        view = review_selectors.comparison_view(project=project, run=run, base=base, tuned=tuned, key=key)
        rows = side_by_side(
            project=project, base=base, tuned=tuned, settings=view.settings, search=search, only_different=differ
        )
        query = request.GET.copy()
        query.pop("page", None)
        every_row = rows if not (search or differ) else side_by_side(
            project=project, base=base, tuned=tuned, settings=view.settings
        )
        rewards = review_rewards.reward_comparison(project=project, rows=every_row, base=base, tuned=tuned)
        if rewards is not None:
            context.update(rewards=rewards, reward_sides=[("base", rewards.base), ("tuned", rewards.tuned)])
        context.update(
            base=base, tuned=tuned, filters=filters, view=view, results=view.results, thumbs=view.thumbs,
            page=Paginator(rows, ROWS_PER_PAGE).get_page(request.GET.get("page")), query=query.urlencode(),
            lengths=output_lengths(rows), **_labels(base, tuned),
        )
    return render(request, "training/review.html", context)


@require_POST
def project_rewards_score(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for_admin(request.user, project_id)
    job = review_rewards.reward_scoring_job_create(project=project, created_by=request.user)
    if job is None:
        messages.info(request, "Nothing to score: the project has no reward model, or it has scored every answer.")
    else:
        messages.success(
            request, f"Scoring {job.completions_total} answer{'s' if job.completions_total != 1 else ''} with the "
            f"reward model {job.run.name!r} (job {job.pk}); this page shows the scores once it is done.",
        )
    target = request.POST.get("next", "")
    safe = target.startswith("/") and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()})
    return redirect(target if safe else reverse("labeling:dashboard", args=[project.pk]))


def _review_jobs_context(run: TuningRun) -> dict:
    jobs = review_selectors.review_jobs(project=run.project, run_id=run.pk)
    return {"run": run, "project": run.project, "jobs": jobs, "any_active": any(row.job.is_active for row in jobs)}


@require_POST
def run_review_generate(request: HttpRequest, run_id: int) -> HttpResponse:
    run = run_for_admin(request.user, run_id)
    running = review_selectors.active_generation_job(project=run.project, purpose=GenerationJob.Purpose.REVIEW, run=run)
    if running is not None:
        # A second job would write the same outputs (its skip list is read before the first stores them).
        done = running.completions_created + running.completions_skipped
        progress = f"{done} of {running.completions_total} outputs" if running.completions_total else "not started yet"
        messages.warning(
            request,
            f"Review job {running.pk} is still {running.get_status_display().lower()} for this run ({progress}): "
            "nothing new was queued. Wait for it (the jobs table below follows it), or cancel it there and generate again.",
        )
        return redirect("training:run_review", run_id=run.pk)
    form = GenerationForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Generation settings: " + "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items()))
        return redirect("training:run_review", run_id=run.pk)
    try:
        base, tuned = review_versions.run_review_versions(run=run)
        job = review_generation.generation_job_create(
            project=run.project, versions=[base, tuned], settings_data=form.settings_data(),
            purpose=GenerationJob.Purpose.REVIEW, run=run, create_review_tasks=form.cleaned_data["create_review_tasks"],
            reuse_other_engines=form.cleaned_data["reuse_other_engines"], created_by=request.user,
        )
    except review_versions.ReviewError as error:
        messages.error(request, error.message)
    else:
        n = form.cleaned_data["n"]
        messages.success(
            request,
            f"Queued generation for {job.prompt_count} held-out prompts × {n} sample{'s' if n != 1 else ''} from base and tuned.",
        )
    return redirect("training:run_review", run_id=run.pk)


@require_POST
def run_battles_create(request: HttpRequest, run_id: int) -> HttpResponse:
    run = run_for_admin(request.user, run_id)
    filters = SideBySideFilter(request.POST)
    key = filters.cleaned_data["settings"] if filters.is_valid() else None
    try:
        base, tuned = review_versions.run_review_versions(run=run)
        options = comparisons(project=run.project, first=base, second=tuned)
        chosen = comparison_choose(options, key=key, run=run)
        battle = review_battles.battles_create(
            project=run.project, version_a=tuned, version_b=base, run=run, created_by=request.user,
            settings=chosen.settings if chosen is not None and chosen.pairs else None,
        )
    except review_versions.ReviewError as error:
        messages.error(request, error.message)
        return redirect("training:run_review", run_id=run.pk)
    messages.success(request, _battles_message(battle))
    url = reverse("training:run_battles", kwargs={"run_id": run.pk})
    return redirect(f"{url}?{urlencode({'settings': comparison_key(battle.settings)})}")


@require_safe
def run_battles(request: HttpRequest, run_id: int) -> HttpResponse:
    run = run_for_admin(request.user, run_id)
    context: dict = {"run": run, "project": run.project, "validation": run_validation(run=run)}
    versions = _versions_or_none(run)
    if versions is not None:
        base, tuned = versions
        filters = SideBySideFilter(request.GET or None)
        key = filters.cleaned_data["settings"] if filters.is_valid() else None
        view = review_selectors.comparison_view(project=run.project, run=run, base=base, tuned=tuned, key=key)
        context.update(base=base, tuned=tuned, view=view, results=view.results, thumbs=view.thumbs, **_labels(base, tuned))
    return render(request, "training/battles.html", context)


@require_safe
def leaderboard(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for_admin(request.user, project_id)
    versions = review_selectors.project_versions_with_outputs(project=project)
    context = {
        "project": project,
        "rows": review_leaderboard.leaderboard(project=project),
        "pair_form": VersionPairForm(versions=versions),
        "can_pair": len(versions) >= 2,
        "contaminated": review_results.CONTAMINATED,
        "chart": drift_chart(review_drift.quality_against_drift(project=project)),
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
        messages.success(request, f"{version_a.name} against {version_b.name}: {_battles_message(battle)}")
    return redirect("training:leaderboard", project_id=project.pk)


@require_http_methods(["GET", "POST"])
def project_candidates(request: HttpRequest, project_id: int) -> HttpResponse:
    """Ask models for candidate completions of the project's prompts; the worker pairs them for annotators.

    htmx polls the same address for the jobs table alone while a job is queued or running."""
    project = project_for_admin(request.user, project_id)
    if request.method == "GET" and request.headers.get("HX-Request"):
        return render(request, "training/_candidate_jobs.html", _candidate_jobs_context(project))
    form = CandidatesForm(request.POST or None, choices=review_versions.version_choices())
    status = 200
    running = review_selectors.active_generation_job(project=project, purpose=GenerationJob.Purpose.CANDIDATES)
    if request.method == "POST":
        if running is not None:
            # A second job would write the same answers again: its skip list is read before the first stores them.
            done = running.completions_created + running.completions_skipped
            form.add_error(None, (
                f"Candidate job {running.pk} is still {running.get_status_display().lower()} ({done} of "
                f"{running.completions_total} answers): nothing new was queued. Wait for it (the jobs table follows it), "
                "or cancel it there and generate again."
            ))
        elif form.is_valid():
            try:
                job = review_generation.generation_job_create(
                    project=project,
                    versions=review_versions.versions_from_choices(form.cleaned_data["versions"]),
                    settings_data=form.settings_data(),
                    purpose=GenerationJob.Purpose.CANDIDATES,
                    split=form.cleaned_data["split"],
                    pairing=form.cleaned_data["pairing"],
                    cut_off=form.cleaned_data["cut_off"],
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
    context = {
        "project": project, "form": form, "expectation": _candidate_expectation(project, form),
        **_candidate_jobs_context(project),
    }
    return render(request, "training/candidates.html", context, status=status)


def _candidate_expectation(project: Project, form: CandidatesForm) -> CandidateExpectation | None:
    values = form.expectation_values()
    if values is None:
        return None
    choices = values.pop("choices")
    return candidate_expectation(
        project=project, base_model_id=review_versions.base_model_of_choice(choices[0]), versions=len(choices), **values
    )


@require_POST
def generation_job_cancel(request: HttpRequest, job_id: int) -> HttpResponse:
    """Cancel a generation job from the jobs table; back to the project's candidates page."""
    if not request.user.is_staff:  # before the lookup, so job ids do not leak
        raise PermissionDenied("Only admins can cancel generation jobs.")
    job = get_object_or_404(GenerationJob, pk=job_id)
    project = project_for_admin(request.user, job.project_id)
    messages.info(request, review_generation.generation_job_cancel(job=job))
    target = request.POST.get("next", "")
    if target.startswith("/") and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return redirect(target)
    return redirect("training:project_candidates", project_id=project.pk)


def _candidate_jobs_context(project: Project) -> dict:
    jobs = review_selectors.generation_jobs(project=project)
    return {
        "project": project, "jobs": jobs, "any_active": any(job.is_active for job in jobs),
        "pairing_choices": review_generation.PAIRING_CHOICES,
    }
