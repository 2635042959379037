"""The JSON API for scripts: token auth (``Authorization: Token <key>``), the same rules as the pages.

Token-authenticated requests carry no session cookie, so they are exempt from CSRF; a request with a
session but no token is refused (401) rather than silently accepted without CSRF.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from labeling import importing, selectors, services
from labeling.errors import InvalidInput, LabelingError
from labeling.models import PairTask, Project, RateTask
from labeling.permissions import project_for_admin, project_for_annotator, visible_projects


def _error(message: str, status: int, **extra: Any) -> JsonResponse:
    return JsonResponse({"error": message, **extra}, status=status)


def api_endpoint(methods: tuple[str, ...]) -> Callable:
    """Authenticate by token, allow only ``methods``, and turn rule errors into JSON with their status."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @login_not_required
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
            user = services.api_token_user(raw=raw.strip()) if scheme in ("Token", "Bearer") and raw.strip() else None
            if user is None:
                response = _error("Authentication required: send 'Authorization: Token <your token>'.", 401)
                response["WWW-Authenticate"] = "Token"
                return response
            request.user = user
            if request.method not in methods:
                response = _error(f"Method {request.method} not allowed here; use {', '.join(methods)}.", 405)
                response["Allow"] = ", ".join(methods)
                return response
            try:
                return view(request, *args, **kwargs)
            except LabelingError as error:
                return _error(error.message, error.status_code)
            except importing.ImportFailed as failure:
                return _error(str(failure), 400, errors=failure.errors)
            except PermissionDenied as denied:
                return _error(str(denied) or "Not allowed.", 403)
            except Http404:
                return _error("Not found.", 404)
            except RequestDataTooBig:
                return _error("The request body is too large.", 413)

        return wrapper

    return decorate


def _json_body(request: HttpRequest) -> dict[str, Any]:
    try:
        payload = json.loads(request.body or b"null")
    except (ValueError, RecursionError) as exc:
        raise InvalidInput("The request body is not valid JSON.") from exc
    if not isinstance(payload, dict):
        raise InvalidInput("The request body must be a JSON object.")
    return payload


def _field(payload: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    value = payload.get(name, default)
    if value is None or value is default:
        return value
    # bool is an int in Python; a JSON true is never a valid number here.
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise InvalidInput(f"'{name}' has the wrong type.")
    if not isinstance(value, kind):
        raise InvalidInput(f"'{name}' has the wrong type.")
    return value


def _project_json(project: Project) -> dict[str, Any]:
    return {"id": project.pk, "name": project.name, "mode": project.mode, "overlap": project.overlap}


@api_endpoint(("GET",))
def projects(request: HttpRequest) -> HttpResponse:
    visible = visible_projects(request.user)
    return JsonResponse({"projects": [_project_json(p) for p in visible]})


@api_endpoint(("POST",))
def project_import(request: HttpRequest, project_id: int) -> HttpResponse:
    """Import a multipart field ``file``, or the raw body with ``?filename=NAME.jsonl|.csv``.

    Both are held to PREFTUNE_IMPORT_MAX_BYTES, not to DATA_UPLOAD_MAX_MEMORY_SIZE (the cap on form bodies
    every other request keeps): a body over the import limit is refused (413) from its declared length,
    before it is read.
    """
    project = project_for_admin(request.user, project_id)
    max_bytes = settings.PREFTUNE_IMPORT_MAX_BYTES
    if request.content_type == "multipart/form-data":
        if _declared_length(request) > max_bytes + importing.MULTIPART_OVERHEAD_BYTES:
            return _too_large("The upload", _declared_length(request), max_bytes)
        upload = request.FILES.get("file")
        if upload is None:
            raise InvalidInput("Send the file as multipart field 'file', or the raw body with ?filename=NAME.jsonl|.csv.")
        if upload.size > max_bytes:
            return _too_large("The file", upload.size, max_bytes)
        filename, data = upload.name, upload.read()
    else:
        filename = request.GET.get("filename", "")
        if not filename:
            raise InvalidInput("Send the file as multipart field 'file', or the raw body with ?filename=NAME.jsonl|.csv.")
        if _declared_length(request) > max_bytes:
            return _too_large("The body", _declared_length(request), max_bytes)
        # Read from the stream, never request.POST or request.body: those hold the body to
        # DATA_UPLOAD_MAX_MEMORY_SIZE, and would parse a curl --data-binary upload (sent as a form) as form fields.
        # The stream ends at the declared length; one byte more than the limit tells an over-long body (ASGI
        # spools a chunked body of any length) from one that fits.
        data = request.read(max_bytes + 1)
        if len(data) > max_bytes:
            return _too_large("The body", len(data), max_bytes)
    report = importing.project_import(project=project, filename=filename, data=data)
    return JsonResponse(
        {
            "prompts": report.prompts,
            "completions": report.completions,
            "tasks": report.tasks,
            "heldout": report.heldout,
            "awaiting_candidates": report.awaiting_candidates,
            "next_step": report.next_step,
        },
        status=201,
    )


def _declared_length(request: HttpRequest) -> int:
    try:
        return max(int(request.META.get("CONTENT_LENGTH") or 0), 0)
    except ValueError:
        return 0


def _too_large(what: str, size: int, max_bytes: int) -> JsonResponse:
    return _error(
        f"{what} is {size:,} bytes, over the {max_bytes:,}-byte import limit; split it into smaller files. "
        "Nothing was imported.",
        413,
    )


@api_endpoint(("GET",))
def project_export(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for_admin(request.user, project_id)
    fmt = request.GET.get("format", "dpo")
    if fmt not in ("dpo", "kto"):
        raise InvalidInput("format must be dpo or kto.")
    keep_cut_off_chosen = request.GET.get("keep_cut_off_chosen") in ("1", "true")
    rows, summary = selectors.project_export(project=project, fmt=fmt, keep_cut_off_chosen=keep_cut_off_chosen)
    response = HttpResponse(selectors.export_jsonl(rows), content_type="application/x-ndjson")
    for name, value in summary.as_dict().items():
        response[f"X-Export-{name.replace('_', '-').title()}"] = str(value)
    return response


@api_endpoint(("GET",))
def task_next(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for_annotator(request.user, project_id)
    task = services.task_lease_next(project=project, annotator=request.user)
    if task is None:
        return JsonResponse({"task": None, "project": _project_json(project)})
    body: dict[str, Any] = {"project": _project_json(project), "client_key": services.client_key_new()}
    if isinstance(task, PairTask):
        a_side = task.a_side_for(request.user.pk)
        left, right = (task.completion_a, task.completion_b) if a_side == "left" else (task.completion_b, task.completion_a)
        body["task"] = {
            "kind": "pair",
            "id": task.pk,
            "prompt": task.prompt.messages,
            # cut_off: the answer hit the token limit (the compare screen marks it too).
            "left": {"text": left.text, "cut_off": left.is_truncated},
            "right": {"text": right.text, "cut_off": right.is_truncated},
            "vote_url": f"/api/tasks/pair/{task.pk}/vote",
        }
    else:
        body["task"] = {
            "kind": "rate",
            "id": task.pk,
            "prompt": task.completion.prompt.messages,
            "completion": {"text": task.completion.text, "cut_off": task.completion.is_truncated},
            "vote_url": f"/api/tasks/rate/{task.pk}/vote",
        }
    return JsonResponse(body)


@api_endpoint(("POST",))
def task_vote(request: HttpRequest, kind: str, task_id: int) -> HttpResponse:
    payload = _json_body(request)
    common = {
        "client_key": _field(payload, "client_key", str, ""),
        "rationale": _field(payload, "rationale", str, ""),
        "time_spent_ms": _field(payload, "time_spent_ms", int),
    }
    if kind == "pair":
        task = PairTask.objects.filter(pk=task_id).select_related("project").first()
        if task is None:
            raise Http404
        project = project_for_annotator(request.user, task.project_id)
        vote, created = services.pair_vote_record(
            task_id=task.pk,
            annotator=request.user,
            pick=_field(payload, "pick", str, ""),
            strength=_field(payload, "strength", int),
            edited_text=_field(payload, "edited_text", str, ""),
            project=project,
            **common,
        )
        result = {"id": vote.pk, "choice": vote.choice, "a_side": vote.a_side, "created": created}
    elif kind == "rate":
        task = RateTask.objects.filter(pk=task_id).first()
        if task is None:
            raise Http404
        project = project_for_annotator(request.user, task.project_id)
        rating, created = services.rating_record(
            task_id=task.pk, annotator=request.user, value=_field(payload, "value", str, ""), project=project, **common
        )
        result = {"id": rating.pk, "value": rating.value, "created": created}
    else:
        raise InvalidInput("Task kind must be 'pair' or 'rate'.")
    return JsonResponse(result, status=201 if created else 200)
