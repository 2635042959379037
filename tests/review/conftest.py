"""Review set-ups: a compare project with held-out prompts, a base and a tuned version, and their outputs."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from labeling.models import Completion, Project, Prompt
from tests.factories import ProjectFactory, UserFactory, make_run
from training.models import BaseModel, ModelVersion, TuningRun
from training.review.versions import base_version_get_or_create

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(scope="session")
def tiny_adapter_dir(tiny_model_dir, tmp_path_factory) -> Path:
    from training.base_models import random_lora_adapter

    return random_lora_adapter(tiny_model_dir, tmp_path_factory.mktemp("adapters") / "tiny-adapter", seed=5, scale=20.0)


# The settings the set-up's outputs are made with (one sample per prompt), and the comparison they name.
SETTINGS = {"temperature": 0.0, "top_p": 0.9, "max_new_tokens": 16, "seed": 0, "sample": 0}
MATCHED = {key: value for key, value in SETTINGS.items() if key != "sample"}


def add_output(prompt: Prompt, version: ModelVersion, text: str, settings: dict, *, finish_reason: str = "") -> Completion:
    """A generated output of ``version`` stored with ``settings`` (GenerationSettings.for_sample's shape)."""
    return Completion.objects.create(
        prompt=prompt, text=text, source="generated", model_version=version, model_name=version.name,
        generation_settings=settings, finish_reason=finish_reason,
    )


@dataclass
class ReviewSetup:
    project: Project
    run: TuningRun
    base: ModelVersion
    tuned: ModelVersion
    heldout: list[Prompt]


def review_setup(*, prompts: int = 4, base_path: str = "/nonexistent", adapter_path: str = "/nonexistent/adapter",
                 with_outputs: bool = True, name: str = "Review project", mode: str = "compare") -> ReviewSetup:
    """A succeeded run with a tuned version; ``prompts`` held-out prompts (plus one train prompt) and, if asked,
    one generated output per held-out prompt from each version, made with SETTINGS: the tuned one 16 characters
    longer."""
    project = ProjectFactory(name=name, overlap=1, mode=mode)
    run = make_run(project, status="succeeded", base_path=base_path)
    base_model = run.base_model
    if base_model.path != base_path:
        BaseModel.objects.filter(pk=base_model.pk).update(path=base_path)
        base_model.refresh_from_db()
    tuned = ModelVersion.objects.create(name=f"secret-tuned-{project.pk}", base_model=base_model, adapter_path=adapter_path)
    TuningRun.objects.filter(pk=run.pk).update(model_version=tuned)
    run.refresh_from_db()
    base = base_version_get_or_create(base_model=base_model)
    Prompt.objects.create(project=project, messages=[{"role": "user", "content": "A training prompt"}], split="train")
    heldout = [
        Prompt.objects.create(project=project, messages=[{"role": "user", "content": f"Held-out question {n}?"}], split="heldout")
        for n in range(prompts)
    ]
    if with_outputs:
        for n, prompt in enumerate(heldout):
            add_output(prompt, base, f"Base answer {n}.", SETTINGS)
            add_output(prompt, tuned, f"Tuned answer {n}, in more words.", SETTINGS)
    return ReviewSetup(project=project, run=run, base=base, tuned=tuned, heldout=heldout)


@pytest.fixture
def setup(db) -> ReviewSetup:
    return review_setup()


@pytest.fixture
def voter(db, setup):
    user = UserFactory(username="battle-voter")
    setup.project.members.add(user)
    return user
