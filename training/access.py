"""Who may open a run, and the one way a failure is written on a row: helpers the views and services share."""
from __future__ import annotations

import traceback
from typing import Any

from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404

from training.models import TuningRun


def run_for_admin(user: Any, run_id: int) -> TuningRun:  # noqa: ANN401
    """The run with what its pages show beside it, for staff; 403 otherwise (checked before the lookup, so run ids
    do not leak), 404 when there is no such run."""
    if not user.is_staff:
        raise PermissionDenied("Only admins can see tuning runs.")
    return get_object_or_404(TuningRun.objects.select_related("project", "base_model", "snapshot", "model_version"), pk=run_id)


def describe_failure(exc: BaseException, *, limit: int = 4000) -> str:
    """An exception as a run, job, export or playground request stores it for the page: its type and message, no
    traceback, at most ``limit`` characters."""
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()[:limit]
