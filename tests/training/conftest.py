"""Shared set-ups for the tuning tests: projects with finished votes, and model folders on disk."""
from __future__ import annotations

import os

import pytest

from tests.factories import (
    PASSWORD,
    AdminFactory,
    ProjectFactory,
    UserFactory,
    make_pair_task,
    make_pair_vote,
    make_rate_task,
    make_rating,
)
from training.models import BaseModel

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")


# A run on the tiny model long enough to be caught mid-training by a fault test, which always stops it first: at
# about 0.15 s a CPU step, 4,000 steps are ten minutes, longer than any test waits (a watchdog test keeps it
# training past a 25 s stale limit).
LONG_RUN = {
    "max_steps": 4000,
    "per_device_batch_size": 2,
    "max_length": 64,
    "validation_fraction": 0.0,
    "learning_rate": 1e-3,
    "save_steps": 2,
    "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
}


@pytest.fixture
def admin(client):
    """A staff user, logged in on ``client``."""
    user = AdminFactory()
    assert client.login(username=user.username, password=PASSWORD)
    return user


# A valid launch form for /projects/<id>/runs/new/: tiny settings that train in seconds on a CPU.
LAUNCH_FORM = {
    "method": "dpo",
    "loss_type": "",
    "beta": "0.1",
    "learning_rate": "0.0001",
    "num_train_epochs": "1",
    "max_steps": "2",
    "per_device_batch_size": "2",
    "gradient_accumulation_steps": "1",
    "max_length": "128",
    "validation_fraction": "0.0",
    "seed": "1",
    "lora_r": "4",
    "lora_alpha": "8",
    "lora_dropout": "0.0",
    "lora_target_modules": "q_proj,v_proj",
    "include_review": "on",
    "noise_handling": "none",
}


@pytest.fixture
def tiny_base(db, tiny_model_dir) -> BaseModel:
    return BaseModel.objects.create(name="tiny-random", path=str(tiny_model_dir))


def voted_compare_project(pairs: int, *, name: str = "Tuning data"):
    """A compare project whose first ``pairs`` tasks each have one vote with a clear winner."""
    project = ProjectFactory(name=name, overlap=1)
    annotator = UserFactory()
    project.members.add(annotator)
    for n in range(pairs):
        task = make_pair_task(project, n)
        make_pair_vote(task, annotator, "a" if n % 3 else "b", a_side="left" if n % 2 else "right")
    return project


def rated_project(up: int, down: int, *, name: str = "Thumbs data"):
    project = ProjectFactory(name=name, mode="rate", overlap=1)
    annotator = UserFactory()
    project.members.add(annotator)
    for n in range(up + down):
        make_rating(make_rate_task(project, n), annotator, "up" if n < up else "down")
    return project
