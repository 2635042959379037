"""Logging filters for django.request."""
from __future__ import annotations

import logging


class ClientErrorsWithoutTraceback(logging.Filter):
    """Drops the traceback from django.request's records of 4xx answers, keeping the one-line message.

    Django logs a 403 or 404 with the exception that caused it as ``exc_info``, so every refused request printed
    the traceback of a deliberate ``raise PermissionDenied``. A 5xx keeps its traceback: that one is a bug.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "status_code", 500) < 500:
            record.exc_info = None
            record.exc_text = None
        return True
