"""What labeling's queue and pages ask of the app built on it, without importing it: labeling is the lower layer and
knows nothing of training. The training app fills these in at start-up (training/apps.py); with none filled in,
labeling works alone: the oldest open pair first, no walkthrough, no generation jobs on the dashboard."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet


@dataclass
class Extensions:
    # (project, open pair tasks) → the same tasks in the order annotators get them, or None for the oldest first.
    pair_order: Callable[[Any, QuerySet], QuerySet | None] | None = None
    # project → more context for the dashboard (and its htmx-polled generation block, when ``polled``).
    dashboard_context: Callable[..., dict[str, Any]] | None = None
    # (projects, chosen project id or None) → the home page's walkthrough of the loop, or None.
    home_walkthrough: Callable[[QuerySet, int | None], Any] | None = None
    # () → the model version the demo's held-out base answers belong to, or None before a base model is registered.
    demo_base_version: Callable[[], Any] | None = None


EXTENSIONS = Extensions()
