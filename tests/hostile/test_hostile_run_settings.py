"""Hostile values in the run launch form (/projects/<id>/runs/new/): a 400 page naming the problem, never a 500,
no run, no snapshot, nothing queued. (tests/training/test_run_launch.py covers the first refusal of each
setting; these are the absurd, malformed and out-of-range values.)"""
from __future__ import annotations

import html
import json

import pytest

from tests.factories import make_pair_task, make_pair_vote
from tests.training.conftest import LAUNCH_FORM as FORM
from tests.training.conftest import voted_compare_project
from training.models import BaseModel

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]



@pytest.fixture
def model_folder(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    return folder


@pytest.fixture
def base(db, model_folder):
    return BaseModel.objects.create(name="folder-model", path=str(model_folder))


@pytest.fixture
def project(db):
    return voted_compare_project(6, name="Launch data")


def _launch(admin_client, project, capture, **changes):
    with capture() as callbacks:
        response = admin_client.post(f"/projects/{project.pk}/runs/new/", {**FORM, **changes})
    return response, callbacks


ABSURD = [
    pytest.param({"learning_rate": "abc"}, "Enter a number.", id="lr-text"),
    pytest.param({"learning_rate": "nan"}, "Enter a number.", id="lr-nan"),
    pytest.param({"learning_rate": "1e309"}, "Enter a number.", id="lr-infinite"),
    pytest.param({"learning_rate": "0"}, "Learning rate must be a positive number", id="lr-zero"),
    pytest.param({"label_smoothing": "0.7"}, "Ensure this value is less than or equal to 0.49.", id="smoothing-too-high"),
    pytest.param({"loss_type": "robust"}, "needs the share of flipped votes", id="robust-without-smoothing"),
    pytest.param({"method": "kto", "label_smoothing": "0.1"}, "Label smoothing only applies to DPO", id="kto-smoothing"),
    pytest.param({"sft_weight": "-0.5"}, "Ensure this value is greater than or equal to 0.", id="sft-negative"),
    pytest.param({"sft_weight": "50"}, "Ensure this value is less than or equal to 10.", id="sft-too-high"),
    pytest.param({"sft_weight": "nan"}, "Enter a number.", id="sft-nan"),
    pytest.param({"method": "kto", "sft_weight": "1"}, "The SFT weight only applies to DPO runs", id="kto-sft"),
    pytest.param({"noise_handling": "magic"}, "Select a valid choice. magic is not one of the available choices.", id="noise-unknown"),
    pytest.param({"method": "kto", "noise_handling": "drop_split"}, "Noise handling applies to DPO runs", id="noise-kto"),
    pytest.param({"beta": "-1"}, "beta must be a positive number", id="beta-negative"),
    pytest.param({"method": "simpo", "simpo_gamma": "-1"}, "Ensure this value is greater than or equal to 0.", id="simpo-gamma-negative"),
    pytest.param({"method": "simpo", "simpo_gamma": "nan"}, "Enter a number.", id="simpo-gamma-nan"),
    pytest.param({"method": "cpo", "cpo_alpha": "11"}, "Ensure this value is less than or equal to 10.", id="cpo-alpha-too-high"),
    pytest.param({"ld_alpha": "1.5"}, "Ensure this value is less than or equal to 1.", id="ld-alpha-too-high"),
    pytest.param({"method": "orpo", "ld_alpha": "0.5"}, "ld_alpha (length-desensitised DPO) only applies to DPO", id="ld-alpha-orpo"),
    pytest.param({"method": "orpo", "sft_weight": "1"}, "CPO and ORPO have their own NLL term", id="orpo-sft"),
    pytest.param({"method": "reward"}, "beta does not apply to a reward model", id="reward-beta"),
    pytest.param({"method": "reward", "beta": "", "center_rewards": "-0.1"}, "Ensure this value is greater than or equal to 0.", id="reward-centring-negative"),
    pytest.param({"method": "reward", "beta": "", "center_rewards": "2"}, "Ensure this value is less than or equal to 1.", id="reward-centring-too-high"),
    pytest.param({"method": "reward", "beta": "", "center_rewards": "nan"}, "Enter a number.", id="reward-centring-nan"),
    pytest.param({"center_rewards": "0.1"}, "Reward centring only applies to reward-model runs", id="dpo-centring"),
    pytest.param({"method": "reward", "beta": "", "group_by_length": "on"}, "group_by_length is offered for DPO runs only", id="reward-grouping"),
    pytest.param({"method": "reward", "beta": "", "sft_weight": "1"}, "The SFT weight only applies to DPO runs", id="reward-sft"),
    pytest.param({"method": "reward", "beta": "", "loss_type": "sigmoid"}, "Loss type 'sigmoid' is not available for REWARD", id="reward-loss"),
    pytest.param({"method": "simpo", "loss_type": "sigmoid"}, "Loss type 'sigmoid' is not available for SIMPO", id="simpo-loss"),
    pytest.param({"method": "cpo", "loss_type": "robust"}, "Loss type 'robust' is not available for CPO", id="cpo-robust"),
    pytest.param({"method": "simpo", "group_by_length": "on"}, "group_by_length is offered for DPO runs only", id="simpo-grouping"),
    pytest.param({"method": "simpo", "noise_handling": "robust"}, "The robust loss is a DPO loss", id="simpo-robust-noise"),
    pytest.param({"num_train_epochs": "0"}, "Number of epochs must be positive", id="epochs-zero"),
    pytest.param({"num_train_epochs": "-3"}, "Number of epochs must be positive", id="epochs-negative"),
    pytest.param({"max_steps": "-2"}, "Max steps must be a positive whole number, or -1", id="max-steps-minus-two"),
    pytest.param({"max_steps": "2.5"}, "Enter a whole number.", id="max-steps-decimal"),
    pytest.param({"per_device_batch_size": "-4"}, "Batch size must be a positive integer", id="batch-negative"),
    pytest.param({"gradient_accumulation_steps": "0"}, "Gradient accumulation steps must be a positive integer", id="accum-zero"),
    pytest.param({"max_length": "-1"}, "Max length must be a whole number of at least 16", id="max-length-negative"),
    pytest.param({"seed": "-1"}, "Seed must be a non-negative integer", id="seed-negative"),
    pytest.param({"validation_fraction": "-0.1"}, "Validation fraction must be between 0 and 0.5", id="val-negative"),
    pytest.param({"lora_r": "100000"}, "implausibly large", id="lora-r-absurd"),
    pytest.param({"lora_alpha": "0"}, "LoRA alpha must be a positive number", id="lora-alpha-zero"),
    pytest.param({"lora_dropout": "1"}, "LoRA dropout must be in [0, 1)", id="lora-dropout-one"),
    pytest.param({"lora_dropout": "-0.5"}, "LoRA dropout must be in [0, 1)", id="lora-dropout-negative"),
    pytest.param({"lora_target_modules": " , ,"}, "LoRA target_modules must be a non-empty list", id="lora-targets-blank"),
    pytest.param({"lora_target_modules": "q_proj,embed_tokens"}, "LoRA cannot target 'embed_tokens'", id="lora-targets-embeddings"),
    pytest.param({"loss_type": "evil"}, "Select a valid choice. evil is not one of the available choices.", id="loss-unknown"),
    pytest.param({"method": "ppo"}, "Select a valid choice. ppo is not one of the available choices.", id="method-unknown"),
    pytest.param({"method": "kto", "undesirable_weight": "-1"}, "undesirable_weight must be a positive number", id="kto-negative-weight"),
    pytest.param({"name": "n" * 201}, "Ensure this value has at most 200 characters", id="name-too-long"),
    pytest.param({"max_steps": str(10**20)}, "far too large", id="max-steps-absurd"),
    pytest.param({"seed": str(10**30)}, "far too large", id="seed-absurd"),
    pytest.param({"per_device_batch_size": str(10**9)}, "far too large", id="batch-absurd"),
    pytest.param({"max_length": str(10**9)}, "far too large", id="max-length-absurd"),
    pytest.param({"num_train_epochs": "1e300"}, "far too large", id="epochs-absurd"),
    pytest.param({"sharding": "zero3"}, "Select a valid choice. zero3 is not one of the available choices.", id="sharding-unknown"),
    pytest.param({"sharding": "FSDP"}, "Select a valid choice. FSDP is not one of the available choices.", id="sharding-case"),
    pytest.param({"sharding": "fsdp " * 1000}, "is not one of the available choices.", id="sharding-long"),
    pytest.param({"sharding": "fsdp"}, "Sharding splits the model's weights across GPUs, so it needs at least 2 GPUs", id="sharding-one-gpu"),
    pytest.param({"sharding": "fsdp", "num_processes": "1"}, "needs at least 2 GPUs", id="sharding-one-gpu-explicit"),
    pytest.param({"sharding": "fsdp", "num_processes": "0"}, "Ensure this value is greater than or equal to 1.", id="sharding-zero-gpus"),
    pytest.param({"sharding": "fsdp", "num_processes": "2", "quantization": "4bit"},
                 "Sharding (FSDP) cannot be combined with 4-bit base weights (QLoRA)", id="sharding-qlora"),
]


@pytest.mark.parametrize(("changes", "message"), ABSURD)
def test_absurd_settings_are_refused(admin_client, base, project, rows, django_capture_on_commit_callbacks, changes, message):
    rows.snapshot()

    response, callbacks = _launch(admin_client, project, django_capture_on_commit_callbacks, base_model=str(base.pk), **changes)

    assert response.status_code == 400
    assert message in html.unescape(response.content.decode())
    assert callbacks == []
    rows.assert_unchanged()


@pytest.mark.parametrize(
    ("base_model", "message"),
    [
        pytest.param("abc", "Enter a whole number.", id="id-text"),
        pytest.param("", "This field is required.", id="id-missing"),
        pytest.param("-1", "unknown base model", id="id-negative"),
        pytest.param(str(2**63), "unknown base model", id="id-past-bigint"),
    ],
)
def test_bad_base_model_ids_are_refused(admin_client, project, rows, django_capture_on_commit_callbacks, base_model, message):
    rows.snapshot()

    response, callbacks = _launch(admin_client, project, django_capture_on_commit_callbacks, base_model=base_model)

    assert response.status_code == 400
    assert message in html.unescape(response.content.decode())
    assert callbacks == []
    rows.assert_unchanged()


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/nonexistent/model", id="absolute-missing"),
        pytest.param("../../../../etc", id="relative-traversal"),
        pytest.param("/etc", id="folder-without-config"),
        pytest.param("", id="empty"),
        pytest.param("not a hub id", id="spaces"),
        pytest.param("org/model/extra", id="three-parts"),
        pytest.param("/org", id="leading-slash"),
    ],
)
def test_unusable_base_model_paths_are_refused(admin_client, project, rows, django_capture_on_commit_callbacks, path):
    base = BaseModel.objects.create(name="bad-path", path=path)
    rows.snapshot()

    response, callbacks = _launch(admin_client, project, django_capture_on_commit_callbacks, base_model=str(base.pk))

    assert response.status_code == 400
    assert "which is not a model folder on this server" in html.unescape(response.content.decode())
    assert callbacks == []
    rows.assert_unchanged()


def test_a_model_folder_whose_config_is_a_directory_is_refused(admin_client, project, rows, tmp_path,
                                                               django_capture_on_commit_callbacks):
    (tmp_path / "odd" / "config.json").mkdir(parents=True)
    base = BaseModel.objects.create(name="odd", path=str(tmp_path / "odd"))
    rows.snapshot()

    response, callbacks = _launch(admin_client, project, django_capture_on_commit_callbacks, base_model=str(base.pk))

    assert response.status_code == 400
    assert callbacks == []
    rows.assert_unchanged()


@pytest.mark.parametrize("changes", [{}, {"sharding": "fsdp", "num_processes": "2"}], ids=["default", "sharded"])
def test_a_sound_form_still_launches(admin_client, base, project, django_capture_on_commit_callbacks, changes):
    # The control case: the form above differs from an accepted one only in the field under test.
    make_pair_vote(make_pair_task(project, 50), project.members.first(), "a")

    response, callbacks = _launch(admin_client, project, django_capture_on_commit_callbacks, base_model=str(base.pk), **changes)

    assert response.status_code == 302
    assert len(callbacks) == 1
