"""Admin screens that move data in and out: importing prompts, exporting preference data for training."""
from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.http import content_disposition_header
from django.utils.text import slugify
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods, require_safe

from labeling.forms import ExportForm, ImportForm
from labeling.importing import MAX_COMPLETIONS, MAX_LINE_CHARS, MULTIPART_OVERHEAD_BYTES, ImportFailed, project_import
from labeling.models import Project
from labeling.permissions import project_for_admin
from labeling.selectors import EXPORT_FORMATS, export_jsonl, project_export

if TYPE_CHECKING:
    from django.http import HttpRequest


@csrf_exempt  # CSRF is checked in _import_form, after the size check: see import_upload's docstring
@require_http_methods(["GET", "POST"])
def import_upload(request: HttpRequest, project_id: int) -> HttpResponse:
    """Show the import form, or import the uploaded file.

    The CSRF middleware would parse the whole multipart body (writing the upload to disk) before this
    view runs; exempting the view and checking CSRF after the declared length lets an oversized upload
    be refused without reading it (Django's documented pattern for per-view upload handling).
    """
    project = project_for_admin(request.user, project_id)
    if request.method == "POST" and _content_length(request) > settings.PREFTUNE_IMPORT_MAX_BYTES + MULTIPART_OVERHEAD_BYTES:
        too_big = f"The upload is over the {settings.PREFTUNE_IMPORT_MAX_BYTES:,}-byte limit; split the file."
        return _import_page(request, project, ImportForm(), errors=[too_big], summary=too_big, status=413)
    return _import_form(request, project)


@csrf_protect
def _import_form(request: HttpRequest, project: Project) -> HttpResponse:
    if request.method == "GET":
        return _import_page(request, project, ImportForm())
    form = ImportForm(request.POST, request.FILES)
    if not form.is_valid():
        return _import_page(request, project, form, status=413 if form.has_error("file", "too_large") else 400)
    upload = form.cleaned_data["file"]
    try:
        report = project_import(project=project, filename=upload.name, data=upload.read())
    except ImportFailed as exc:
        return _import_page(request, project, form, errors=exc.errors, summary=exc.message, status=400)
    messages.success(request, f"Imported {upload.name}: {report}.")
    return redirect("labeling:dashboard", project_id=project.pk)


def _import_page(
    request: HttpRequest,
    project: Project,
    form: ImportForm,
    *,
    errors: list[str] | None = None,
    summary: str = "",
    status: int = 200,
) -> HttpResponse:
    context = {
        "project": project,
        "form": form,
        "errors": errors or [],
        "summary": summary,
        "max_bytes": settings.PREFTUNE_IMPORT_MAX_BYTES,
        "max_completions": MAX_COMPLETIONS,
        "max_line_chars": f"{MAX_LINE_CHARS:,}",
    }
    return render(request, "labeling/import.html", context, status=status)


def _content_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


@require_safe
def export_download(request: HttpRequest, project_id: int) -> HttpResponse:
    """The export page without ``?format``; with ``?format=dpo|kto`` the JSON Lines file itself."""
    project = project_for_admin(request.user, project_id)
    if "format" not in request.GET:
        choices = {name: request.GET.get(name) in ("1", "on", "true") for name in ("include_review", "keep_cut_off_chosen")}
        summaries = [(fmt, project_export(project=project, fmt=fmt, **choices)[1]) for fmt in EXPORT_FORMATS]
        context = {"project": project, "summaries": summaries, **choices}
        return render(request, "labeling/export.html", context)
    form = ExportForm(request.GET)
    if not form.is_valid():
        return HttpResponse(
            "Unknown export format: use ?format=dpo or ?format=kto.", status=400, content_type="text/plain"
        )
    fmt = form.cleaned_data["format"]
    rows, summary = project_export(
        project=project, fmt=fmt, include_review=form.cleaned_data["include_review"],
        keep_cut_off_chosen=form.cleaned_data["keep_cut_off_chosen"],
    )
    response = HttpResponse(export_jsonl(rows), content_type="application/jsonl; charset=utf-8")
    filename = f"{slugify(project.name) or 'project'}-{fmt}-{timezone.now():%Y%m%d-%H%M}.jsonl"
    response["Content-Disposition"] = content_disposition_header(as_attachment=True, filename=filename)
    response["Cache-Control"] = "no-store"
    response["X-Export-Format"] = fmt
    for name, value in summary.as_dict().items():
        response[f"X-Export-{name.replace('_', '-').title()}"] = str(value)
    return response
