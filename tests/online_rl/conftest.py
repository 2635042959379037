"""A project with prompts and a finished reward-model run whose adapter is real (trained on the tiny model in about
a second), for online RL's launch, worker and page tests."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.factories import PASSWORD, AdminFactory, ProjectFactory, PromptFactory, make_run
from training.models import BaseModel, TuningRun

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

CLEARLY_ABOVE_CHANCE = {"correct": 18, "pairs": 20, "ties": 0, "accuracy": 0.9, "interval": [0.7, 0.97]}
AT_CHANCE = {"correct": 10, "pairs": 20, "ties": 0, "accuracy": 0.5, "interval": [0.3, 0.7]}


@pytest.fixture
def admin_client(client):
    """A staff user, logged in on ``client``."""
    admin = AdminFactory()
    assert client.login(username=admin.username, password=PASSWORD)
    return client


@pytest.fixture
def tiny_base(db, tiny_model_dir) -> BaseModel:
    return BaseModel.objects.create(name="tiny-random", path=str(tiny_model_dir))


def project_with_prompts(count: int = 8, *, heldout: int = 2, name: str = "RL prompts"):
    project = ProjectFactory(name=name)
    for n in range(count):
        PromptFactory(project=project, messages=[{"role": "user", "content": f"Tell me about topic {n}."}])
    for n in range(heldout):
        PromptFactory(project=project, split="heldout", messages=[{"role": "user", "content": f"Held-out {n}?"}])
    return project


def _train_reward_adapter(base: BaseModel, folder: Path) -> Path:
    from training.trainer.config import TrainSettings
    from training.trainer.core import train

    pairs = [
        {"prompt": [{"role": "user", "content": f"Question {i}?"}], "chosen": [{"role": "assistant", "content": "Short."}],
         "rejected": [{"role": "assistant", "content": "A much longer answer with a great many words in it."}]}
        for i in range(8)
    ]
    settings = TrainSettings.from_dict({"method": "reward", "max_steps": 1, "validation_fraction": 0.0,
                                        "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}})
    result = train(model_path=base.path, rows=pairs, settings=settings, output_dir=str(folder))
    return Path(result.adapter_dir)


def zero_the_score_head(adapter: Path) -> None:
    """Every answer then scores exactly 0: a reward model whose score is known."""
    from safetensors.torch import load_file, save_file

    path = adapter / "adapter_model.safetensors"
    weights = load_file(str(path))
    heads = [name for name in weights if "score" in name]
    assert heads, sorted(weights)
    for name in heads:
        weights[name] = weights[name] * 0
    save_file(weights, str(path))


def reward_run(project, base: BaseModel, tmp_path: Path, *, held_out=CLEARLY_ABOVE_CHANCE, zero_head: bool = False,
               name: str = "reward model") -> TuningRun:
    run = make_run(project, status="succeeded", method="reward")
    output_dir = tmp_path / f"reward-run-{run.pk}"
    adapter = _train_reward_adapter(base, output_dir / "attempt-1")
    if zero_head:
        zero_the_score_head(adapter)
    TuningRun.objects.filter(pk=run.pk).update(
        name=name, base_model=base, output_dir=str(output_dir), attempt=1, outcome={"reward_model": held_out},
    )
    run.refresh_from_db()
    return run
