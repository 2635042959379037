"""Errors a labeling service raises for the caller to show: each carries the message a person reads."""
from __future__ import annotations


class LabelingError(Exception):
    """A rule said no. ``status_code`` is the HTTP status a view or the API should answer with."""

    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(LabelingError):
    status_code = 400


class NotFound(LabelingError):
    status_code = 404


class Conflict(LabelingError):
    """The request was well formed but the state has moved on: the vote is refused and nothing is written."""

    status_code = 409
