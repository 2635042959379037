"""Admin screens for tuning: launch a run, the runs list, a run's live page, cancel and retry."""
from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from labeling.permissions import project_for_admin
from training import registry, selectors, services
from training.forms import BaseModelRegisterForm, RunLaunchForm
from training.models import ModelVersion, TuningRun


def _run_for_admin(user, run_id: int) -> TuningRun:  # noqa: ANN001
    if not user.is_staff:
        raise PermissionDenied("Only admins can see tuning runs.")
    return get_object_or_404(TuningRun.objects.select_related("project", "base_model", "snapshot", "model_version"), pk=run_id)


@require_safe
def runs(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for_admin(request.user, project_id)
    context = {"project": project, "runs": selectors.runs_table(project=project, now=timezone.now())}
    # The project dashboard pulls the table in with htmx; the full page is the same table with a heading.
    template = "training/_runs_table.html" if request.headers.get("HX-Request") else "training/runs.html"
    return render(request, template, context)


@require_http_methods(["GET", "POST"])
def run_new(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for_admin(request.user, project_id)
    initial = {"method": "kto" if project.mode == "rate" else "dpo"}
    form = RunLaunchForm(request.POST or None, initial=initial, project=project)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                run = services.run_launch(
                    project=project,
                    base_model_id=form.cleaned_data["base_model"],
                    method=form.cleaned_data["method"],
                    settings_data=form.settings_data(),
                    created_by=request.user,
                    name=form.cleaned_data["name"],
                    include_review=form.cleaned_data["include_review"],
                    include_heldout=form.cleaned_data["include_heldout"],
                    noise_handling=form.cleaned_data["noise_handling"],
                    start_from_version_id=form.cleaned_data["start_from"],
                    keep_cut_off_chosen=form.cleaned_data["keep_cut_off_chosen"],
                )
            except services.LaunchError as error:
                form.add_error(error.field if error.field in form.fields else None, error.message)
            else:
                messages.success(request, f"Queued {run.name}: {run.train_rows} training rows, {run.validation_rows} for validation.")
                return redirect("training:run_detail", run_id=run.pk)
        status = 400
    previews = {
        fmt: services.dataset_preview(project=project, method=fmt, **form.data_choices()) for fmt in ("dpo", "kto", "sft")
    }
    estimate = form.step_estimate(previews)
    workers = selectors.workers_summary()
    time_estimate = estimate and estimate.steps and selectors.run_time_estimate(
        base_model_id=form.base_model_value(), method=estimate.method, steps=estimate.steps
    )
    data_ready = [
        (method, preview, selectors.dataset_use(summary=preview.summary, method=method, row_count=len(preview.rows)))
        for method, preview in previews.items()
    ]
    context = {
        "project": project, "form": form, "data_ready": data_ready, "estimate": estimate, "time_estimate": time_estimate,
        "workers": workers,
    }
    return render(request, "training/run_new.html", context, status=status)


def _run_context(run: TuningRun) -> dict:
    now = timezone.now()
    series = selectors.run_metric_series(run=run)
    snapshot = run.snapshot
    return {
        "run": run,
        "project": run.project,
        "eta": run.eta_seconds(now),
        "duration": run.duration_seconds(now),
        "headline": selectors.run_headline(run=run, series=series),
        "verdict": selectors.verdict_for_run(run=run, series=series),
        "charts": selectors.run_charts(run=run, series=series),
        "settings_rows": selectors.run_settings_rows(run=run),
        "dataset": selectors.dataset_use(summary=snapshot.summary, method=run.method, row_count=snapshot.row_count),
        "lineage": selectors.lineage_rows(lineage=snapshot.lineage, includes_heldout=snapshot.includes_heldout),
        "no_worker_yet": run.status == TuningRun.Status.QUEUED and not selectors.workers_taking(run.gpus),
    }


@require_safe
def run_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _run_for_admin(request.user, run_id)
    return render(request, "training/run_detail.html", _run_context(run))


@require_safe
def run_status(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _run_for_admin(request.user, run_id)
    return render(request, "training/_run_status.html", _run_context(run))


@require_safe
def run_metrics(request: HttpRequest, run_id: int) -> JsonResponse:
    run = _run_for_admin(request.user, run_id)
    series = selectors.run_metric_series(run=run)
    return JsonResponse({"status": run.status, "step": run.step, "total_steps": run.total_steps, "series": series})


@require_POST
def run_cancel(request: HttpRequest, run_id: int) -> HttpResponse:
    run = services.run_cancel(run=_run_for_admin(request.user, run_id))
    messages.info(request, services.run_cancel_outcome(run))
    return redirect("training:run_detail", run_id=run.pk)


@require_POST
def run_retry(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _run_for_admin(request.user, run_id)
    try:
        services.run_retry(run=run)
    except services.LaunchError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, "Queued again; training resumes from the last checkpoint if there is one.")
    return redirect("training:run_detail", run_id=run.pk)


@require_http_methods(["GET", "POST"])
def base_models(request: HttpRequest) -> HttpResponse:
    if not request.user.is_staff:
        raise PermissionDenied("Only admins can register base models.")
    form = BaseModelRegisterForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                model = registry.base_model_register(name=form.cleaned_data["name"], source=form.cleaned_data["source"])
            except registry.RegistryError as error:
                form.add_error(error.field, error.message)
            else:
                done = "a worker is downloading it" if model.status == "downloading" else "checked and ready to tune"
                messages.success(request, f"Registered {model.name}: {done}.")
                return redirect("training:base_models")
        status = 400
    return render(request, "training/base_models.html", {"form": form, "models": selectors.base_models_table()}, status=status)


@require_safe
def version_download(request: HttpRequest, version_id: int, kind: str) -> HttpResponse:
    if not request.user.is_staff:
        raise PermissionDenied("Only admins can export model versions.")
    version = get_object_or_404(ModelVersion.objects.select_related("base_model"), pk=version_id)
    try:
        zip_path = services.version_export(version=version, merged=kind == "merged")
    except services.ExportError as error:
        return HttpResponse(error.args[0], status=404, content_type="text/plain; charset=utf-8")
    return FileResponse(open(zip_path, "rb"), as_attachment=True, filename=f"{services.version_export_name(version, kind)}.zip")
