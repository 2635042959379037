"""Settings read from the environment fail loudly on values they cannot use, naming the variable."""
from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from webapp.settings import GENERATION_BACKENDS, env_choice


def test_it_reads_a_generation_backend_and_defaults_to_auto(monkeypatch):
    monkeypatch.delenv("PREFTUNE_GENERATION_BACKEND", raising=False)
    assert env_choice("PREFTUNE_GENERATION_BACKEND", "auto", GENERATION_BACKENDS) == "auto"

    monkeypatch.setenv("PREFTUNE_GENERATION_BACKEND", " vLLM ")
    assert env_choice("PREFTUNE_GENERATION_BACKEND", "auto", GENERATION_BACKENDS) == "vllm"

    monkeypatch.setenv("PREFTUNE_GENERATION_BACKEND", "")
    assert env_choice("PREFTUNE_GENERATION_BACKEND", "auto", GENERATION_BACKENDS) == "auto"


def test_it_refuses_a_backend_it_does_not_know(monkeypatch):
    monkeypatch.setenv("PREFTUNE_GENERATION_BACKEND", "fast")

    with pytest.raises(ImproperlyConfigured, match="PREFTUNE_GENERATION_BACKEND='fast' is not one of auto, transformers, vllm"):
        env_choice("PREFTUNE_GENERATION_BACKEND", "auto", GENERATION_BACKENDS)
