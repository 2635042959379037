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


def test_the_settings_list_of_generation_engines_is_the_one_generation_knows():
    from django.conf import settings

    from training.trainer.generation_backends import BACKENDS

    assert settings.GENERATION_BACKENDS == BACKENDS


def test_the_import_contracts_hold():
    # Labeling knows nothing of training; the settings import no app code (pyproject.toml, [tool.importlinter]).
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([str(Path(sys.executable).with_name("lint-imports"))], cwd=root, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Contracts: 2 kept, 0 broken." in result.stdout
