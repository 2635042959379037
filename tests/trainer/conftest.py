"""Fixtures for the Django-free trainer tests: a tiny random model and synthetic rows."""

from __future__ import annotations

import os
from typing import Any

import pytest

# Nothing here may reach a model hub; keep tqdm bars out of the test output.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")


def _msgs(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _answer(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


TOPICS = [
    "the sea",
    "a cat",
    "bread",
    "rain",
    "a bicycle",
    "the moon",
    "tea",
    "a garden",
    "snow",
    "a train",
    "music",
    "a river",
]


def make_dpo_rows(n: int) -> list[dict[str, Any]]:
    """Pairs where the chosen answer is polite and specific and the rejected one curt."""
    rows = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        rows.append(
            {
                "prompt": _msgs(f"Write one sentence about {topic}. ({i})"),
                "chosen": _answer(f"Here is a sentence: {topic} is lovely in the morning light."),
                "rejected": _answer("No."),
            }
        )
    return rows


def make_kto_rows(n: int, *, desirable_every: int = 2) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        good = i % desirable_every == 0
        text = f"Here is a sentence: {topic} is lovely in the morning light." if good else "No."
        rows.append(
            {"prompt": _msgs(f"Write one sentence about {topic}. ({i})"), "completion": _answer(text), "label": good}
        )
    return rows


@pytest.fixture()
def dpo_rows() -> list[dict[str, Any]]:
    return make_dpo_rows(8)


@pytest.fixture()
def kto_rows() -> list[dict[str, Any]]:
    return make_kto_rows(8)
