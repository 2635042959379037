"""Turn a lost database connection into a 503 the client can retry, instead of a 500.

A PostgreSQL restart, a failover or a killed backend surfaces in a view as OperationalError or
InterfaceError. The transaction it was in has been rolled back, so nothing was written: the request
can be retried as it is (a vote resent with the same client_key is still counted once). The response
is built without templates: rendering a page may itself need the database.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 2
MESSAGE = (
    "The database is temporarily unavailable, so nothing was saved. "
    "Retry in a moment: a vote sent again with the same client_key is counted once."
)
_PAGE = (
    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Temporarily unavailable · preftune</title>"
    "</head><body><h1>Temporarily unavailable</h1><p>The database could not be reached, so nothing was saved. "
    "Go back and submit again in a moment.</p></body></html>"
)


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        logger.warning("Database unavailable during %s %s: %s", request.method, request.path, exception)
        if request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", ""):
            response: HttpResponse = JsonResponse({"error": MESSAGE, "retry": True}, status=503)
        else:
            response = HttpResponse(_PAGE, status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        response["Cache-Control"] = "no-store"
        return response
