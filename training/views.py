"""Admin screens for tuning: launch a run, the runs list, a run's live page, cancel and retry."""
from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from labeling.permissions import project_for_admin, staff_required
from training import exports, registry, rl_selectors, selectors, services
from training.access import run_for_admin
from training.forms import BaseModelRegisterForm, RunLaunchForm
from training.models import ModelVersion, TuningRun, VersionExport
from training.presenters.charts import run_charts
from training.presenters.headline import run_headline
from training.presenters.verdict import verdict_for_run
from training.review import movement as review_movement


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
                    reward_run_id=form.cleaned_data["reward_model"],
                )
            except services.LaunchError as error:
                form.add_error(error.field if error.field in form.fields else None, error.message)
            else:
                # Past tense: this message stays at the top of the run page while the page follows the run through
                # running to done, where "Queued …" read as its state (issue 26).
                messages.success(
                    request, f"Launched {run.name} with {run.train_rows} training rows and {run.validation_rows} for "
                    "validation; the status below follows it.",
                )
                return redirect("training:run_detail", run_id=run.pk)
        status = 400
    previews = {
        fmt: services.dataset_preview(project=project, method=fmt, **form.data_choices()) for fmt in ("dpo", "kto", "sft", "prompt")
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
        "duration": run.duration_seconds(now),
        "headline": run_headline(run=run, series=series),
        "verdict": rl_selectors.rl_verdict(run=run) or verdict_for_run(run=run, series=series),
        "charts": run_charts(run=run, series=series),
        "settings_rows": selectors.run_settings_rows(run=run),
        "dataset": selectors.dataset_use(summary=snapshot.summary, method=run.method, row_count=snapshot.row_count),
        "lineage": selectors.lineage_rows(lineage=snapshot.lineage, includes_heldout=snapshot.includes_heldout),
        "no_worker_yet": run.status == TuningRun.Status.QUEUED and not selectors.workers_taking(run.gpus),
        "exports": selectors.version_exports(version=run.model_version) if run.model_version else None,
        "movement": review_movement.run_movement(run=run) if run.model_version else None,
        "rl_watch": rl_selectors.rl_watch(run=run),
    }


@require_safe
def run_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    run = run_for_admin(request.user, run_id)
    return render(request, "training/run_detail.html", _run_context(run))


@require_safe
def run_status(request: HttpRequest, run_id: int) -> HttpResponse:
    run = run_for_admin(request.user, run_id)
    return render(request, "training/_run_status.html", _run_context(run))


@require_safe
def run_metrics(request: HttpRequest, run_id: int) -> JsonResponse:
    run = run_for_admin(request.user, run_id)
    series = selectors.run_metric_series(run=run)
    return JsonResponse({"status": run.status, "step": run.step, "total_steps": run.total_steps, "series": series})


@require_POST
def run_cancel(request: HttpRequest, run_id: int) -> HttpResponse:
    run = services.run_cancel(run=run_for_admin(request.user, run_id))
    messages.info(request, services.run_cancel_outcome(run))
    return redirect("training:run_detail", run_id=run.pk)


@require_POST
def run_retry(request: HttpRequest, run_id: int) -> HttpResponse:
    run = run_for_admin(request.user, run_id)
    try:
        services.run_retry(run=run)
    except services.LaunchError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, "Queued again; training resumes from the last checkpoint if there is one.")
    return redirect("training:run_detail", run_id=run.pk)


@staff_required
@require_http_methods(["GET", "POST"])
def base_models(request: HttpRequest) -> HttpResponse:
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


def _version_for_admin(user, version_id: int) -> ModelVersion:  # noqa: ANN001
    if not user.is_staff:
        raise PermissionDenied("Only admins can export model versions.")
    return get_object_or_404(ModelVersion.objects.select_related("base_model"), pk=version_id)


def _version_page(version: ModelVersion) -> str:
    """The page that shows the version's exports: the run that trained it, else the models page."""
    run = TuningRun.objects.filter(model_version=version).only("pk").first()
    return reverse("training:run_detail", args=[run.pk]) if run else reverse("training:base_models")


@require_safe
def version_download(request: HttpRequest, version_id: int, kind: str) -> HttpResponse:
    """Serve a finished export; never build one here (merging loads the whole base model: a worker's job)."""
    version = _version_for_admin(request.user, version_id)
    zip_path = exports.version_export_zip_path(version_id=version.pk, kind=kind)
    if not zip_path.is_file():
        try:
            exports.check_exportable(version=version)
        except exports.ExportError as error:
            message = str(error)
        else:
            message = (f"{version.name} has not been exported as {kind} yet: press Export on its page "
                       f"({_version_page(version)}), and download it there once the export is ready.")
        return HttpResponse(message, status=404, content_type="text/plain; charset=utf-8")
    filename = f"{exports.version_export_name(version, kind)}.zip"
    return FileResponse(open(zip_path, "rb"), as_attachment=True, filename=filename)  # noqa: SIM115 - the response closes it


@require_POST
def version_export_start(request: HttpRequest, version_id: int, kind: str) -> HttpResponse:
    version = _version_for_admin(request.user, version_id)
    try:
        export = exports.version_export_request(version=version, kind=kind, created_by=request.user)
    except exports.ExportError as error:
        messages.error(request, str(error))
    else:
        if export is None:
            messages.info(request, f"{version.name} is already exported as {kind}: download it below.")
        else:
            messages.success(request, f"Export of {version.name} ({kind}) queued for a worker; this page shows its progress.")
    return redirect(_version_page(version))


@require_POST
def version_export_cancel(request: HttpRequest, version_id: int, kind: str) -> HttpResponse:
    version = _version_for_admin(request.user, version_id)
    export = VersionExport.objects.filter(version=version, kind=kind).order_by("-id").first()
    if export is None or not export.is_active:
        messages.info(request, f"No {kind} export of {version.name} is queued or running.")
    else:
        export = exports.version_export_cancel(export=export)
        messages.success(request, f"Export of {version.name} ({kind}) cancelled." if export.status == "cancelled"
                         else f"Export of {version.name} ({kind}) cancelling: it stops at the next chunk of the zip.")
    return redirect(_version_page(version))


@require_safe
def version_exports(request: HttpRequest, version_id: int) -> HttpResponse:
    """The exports panel alone, which the page polls with htmx while an export is queued or running."""
    version = _version_for_admin(request.user, version_id)
    return render(request, "training/_version_exports.html", {"exports": selectors.version_exports(version=version)})
