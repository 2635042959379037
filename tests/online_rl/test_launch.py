"""Launching an online RL run from the form: settings that reach the run, and refusals with the reason."""
from __future__ import annotations

import pytest

from tests.online_rl.conftest import AT_CHANCE, project_with_prompts, reward_run
from training.models import DatasetSnapshot, TuningRun
from training.trainer.config import SettingsError, TrainSettings

pytestmark = pytest.mark.django_db

RL_FORM = {
    "method": "grpo", "loss_type": "", "beta": "", "learning_rate": "", "num_train_epochs": "", "max_steps": "-1",
    "per_device_batch_size": "4", "gradient_accumulation_steps": "1", "max_length": "", "validation_fraction": "0.25",
    "seed": "1", "lora_r": "4", "lora_alpha": "8", "lora_dropout": "0.0", "lora_target_modules": "q_proj,v_proj",
    "noise_handling": "none", "temperature": "1.0",
}


def _launch(client, project, base, **changes):
    return client.post(f"/projects/{project.pk}/runs/new/", {**RL_FORM, "base_model": str(base.pk), **changes})


def test_without_a_reward_model_the_form_refuses_and_says_to_train_one(admin_client, tiny_base):
    project = project_with_prompts()
    response = _launch(admin_client, project, tiny_base)
    assert response.status_code == 400
    assert "has no reward model yet" in response.content.decode() and "train one on the votes first" in response.content.decode()
    assert not TuningRun.objects.filter(project=project).exists() and not DatasetSnapshot.objects.filter(project=project).exists()


def test_a_reward_model_at_chance_is_refused_with_its_interval(admin_client, tiny_base, tmp_path):
    project = project_with_prompts()
    reward_run(project, tiny_base, tmp_path, held_out=AT_CHANCE)
    response = _launch(admin_client, project, tiny_base, method="rloo")
    page = response.content.decode()
    assert response.status_code == 400
    assert "ranks 50% of 20 held-out pairs right (95% interval 30%–70%), not clearly better than a coin flip" in page
    assert TuningRun.objects.filter(project=project).count() == 1  # only the reward model


def test_a_reward_model_without_held_out_pairs_is_refused(admin_client, tiny_base, tmp_path):
    project = project_with_prompts()
    reward_run(project, tiny_base, tmp_path, held_out={})
    page = _launch(admin_client, project, tiny_base).content.decode()
    assert "has no held-out accuracy" in page


def test_a_launched_rl_run_trains_on_train_prompts_against_the_newest_reward_model_with_its_leash(admin_client, tiny_base, tmp_path):
    project = project_with_prompts(8, heldout=2)
    older = reward_run(project, tiny_base, tmp_path, name="older")
    newest = reward_run(project, tiny_base, tmp_path, name="newest")
    response = _launch(admin_client, project, tiny_base, num_generations="2", max_completion_length="24")
    assert response.status_code == 302, response.content.decode()[-1500:]
    run = TuningRun.objects.filter(project=project, method="grpo").get()
    assert run.reward_model == newest != older
    assert run.settings["reward_adapter"].endswith(f"reward-run-{newest.pk}/attempt-1/adapter")
    assert run.settings["beta"] == 0.05 and run.settings["num_generations"] == 2
    from training.selectors import training_device
    from training.trainer.auto_settings import AUTO_RL_STEPS

    assert run.settings["max_completion_length"] == 24 and run.settings["max_steps"] == AUTO_RL_STEPS[training_device()]
    assert run.snapshot.row_count == 8 and all("chosen" not in row for row in run.snapshot.rows)
    assert run.snapshot.summary["held_out_prompts_kept_for_the_review"] == 2
    assert run.snapshot.lineage["reward_model"]["name"] == "newest"
    assert any("KL coefficient 0.05" in choice for choice in run.outcome["choices"])


def test_the_admin_can_pick_an_older_reward_model(admin_client, tiny_base, tmp_path):
    project = project_with_prompts()
    older = reward_run(project, tiny_base, tmp_path, name="older")
    reward_run(project, tiny_base, tmp_path, name="newest")
    page = admin_client.get(f"/projects/{project.pk}/runs/new/").content.decode()
    assert "older (90% of 20 held-out pairs)" in page and "Prompts to write answers to (GRPO, RLOO)" in page
    assert _launch(admin_client, project, tiny_base, reward_model=str(older.pk)).status_code == 302
    assert TuningRun.objects.get(project=project, method="grpo").reward_model == older


def test_group_size_must_divide_the_batch_and_rl_knobs_are_refused_for_other_methods():
    with pytest.raises(SettingsError, match="must be whole groups of 3") as caught:
        TrainSettings.from_dict({"method": "grpo", "per_device_batch_size": 4, "num_generations": 3})
    assert caught.value.field == "per_device_batch_size"
    with pytest.raises(SettingsError, match="only applies to online RL runs") as caught:
        TrainSettings.from_dict({"method": "dpo", "num_generations": 4})
    assert caught.value.field == "num_generations"
    with pytest.raises(SettingsError, match="temperature"):
        TrainSettings.from_dict({"method": "rloo", "temperature": 0})
    resolved, notes = TrainSettings(method="rloo").resolve(40, device="cpu")
    assert (resolved.beta, resolved.num_generations, resolved.max_completion_length, resolved.max_steps) == (0.05, 4, 128, 60)
    assert any("without the leash" in note for note in notes)


@pytest.mark.parametrize("method", ["grpo", "rloo"])
def test_the_kl_coefficient_group_and_length_reach_trls_config(method, tmp_path):
    from trl import GRPOConfig, RLOOConfig

    from training.trainer.device import choose_device
    from training.trainer.online import _rl_config

    settings, _ = TrainSettings(method=method, beta=0.3, num_generations=2, max_completion_length=40,
                                temperature=0.8).resolve(10, device="cpu")
    config = _rl_config(settings, choose_device(force_cpu=True), tmp_path)
    assert isinstance(config, GRPOConfig if method == "grpo" else RLOOConfig)
    assert (config.beta, config.num_generations, config.max_completion_length, config.temperature) == (0.3, 2, 40, 0.8)
    assert config.max_steps == 60 and config.learning_rate == settings.learning_rate
    if method == "grpo":
        assert config.loss_type == "dapo"
