"""Shared set-ups for the hostile-input tests: table row counts, to prove a refused request wrote nothing."""
from __future__ import annotations

import pytest
from django.apps import apps


def row_counts() -> dict[str, int]:
    """Rows in every table of the app's models (and users): a refused request leaves every count as it was."""
    return {
        model._meta.label: model._default_manager.count()
        for model in apps.get_models()
        if model._meta.app_label in ("labeling", "training", "auth")
    }


class RowCounter:
    def __init__(self) -> None:
        self.before: dict[str, int] | None = None

    def snapshot(self) -> None:
        self.before = row_counts()

    def assert_unchanged(self, *, ignore: tuple[str, ...] = ()) -> None:
        assert self.before is not None, "take a snapshot first"
        after = row_counts()
        changed = {
            label: (count, after[label]) for label, count in self.before.items() if count != after[label] and label not in ignore
        }
        assert changed == {}, f"rows changed (before, after): {changed}"


@pytest.fixture
def rows() -> RowCounter:
    """``rows.snapshot()`` just before the hostile request, ``rows.assert_unchanged()`` after it."""
    return RowCounter()
