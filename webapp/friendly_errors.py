"""Pages a user meets instead of Django's bare or debugging ones: a "not found" page also under `make run`
(DEBUG on, where Django shows its yellow page listing every URL), and a "wrong method" page instead of an empty
405 (a GET on a vote or launch address, which Chromium shows as "HTTP ERROR 405").

Django's debug pages for exceptions stay as they are (they are what a developer needs); its 404 debug page comes
back with PREFTUNE_DEBUG_404=1. The API answers JSON, never a page.
"""
from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string

# Only Django's technical 404 page carries this; a view's own 404 (an htmx card saying the pair is gone) does not.
_DEBUG_404_MARK = b"DEBUG = True</code>"


class FriendlyErrorPagesMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.streaming:
            return response
        if response.status_code == 405 and not response.content:
            allowed = response.get("Allow", "")
            if request.path.startswith("/api/"):
                return JsonResponse({"error": f"{request.method} is not allowed here; use {allowed}."}, status=405,
                                    headers={"Allow": allowed})
            page = render_to_string("405.html", {"method": request.method, "allowed": allowed}, request=request)
            return HttpResponse(page, status=405, headers={"Allow": allowed})
        if (
            response.status_code == 404 and settings.DEBUG and not settings.PREFTUNE_DEBUG_404
            and _DEBUG_404_MARK in response.content
        ):
            return HttpResponse(render_to_string("404.html", request=request), status=404)
        return response
