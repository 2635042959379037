"""How a sharded (FSDP) run is launched and configured, as plain logic: the launch command, the Trainer's FSDP
config, and that the two agree. The run itself: tests/trainer/test_data_parallel.py (CPU) and
tests/trainer/test_cuda_paths.py (two GPUs)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from training.trainer.config import SettingsError, TrainSettings
from training.trainer.process import trainer_command
from training.trainer.sharding import decoder_layer_classes, fsdp_launch_flags, fsdp_training_kwargs

SPEC = Path("/runs/1/run-spec.json")
TRAINER = ["-m", "training.trainer", str(SPEC)]


def _flags(command: list[str]) -> dict[str, str]:
    return {flag: value for flag, value in zip(command, command[1:], strict=False) if flag.startswith("--fsdp")}


def test_a_sharded_run_on_gpus_is_launched_with_accelerate_fsdp_not_ddp():
    command = trainer_command(SPEC, 4, cuda=True, sharding="fsdp")

    assert command[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert "--use_fsdp" in command and "--multi_gpu" not in command
    assert command[command.index("--num_processes") + 1] == "4"
    assert _flags(command) == {
        "--fsdp_version": "2", "--fsdp_reshard_after_forward": "true", "--fsdp_cpu_ram_efficient_loading": "false",
    }
    assert command[-3:] == TRAINER


def test_other_runs_keep_their_launchers():
    assert "--multi_gpu" in trainer_command(SPEC, 2, cuda=True)
    assert "--use_fsdp" not in trainer_command(SPEC, 2, cuda=True, sharding="none")
    # accelerate starts CPU processes only through MPI: torch's launcher starts them, sharded or not.
    assert trainer_command(SPEC, 2, cuda=False, sharding="fsdp")[1:3] == ["-m", "torch.distributed.run"]
    assert trainer_command(SPEC, 1, cuda=True) == [sys.executable, *TRAINER]


def test_the_trainer_shards_the_decoder_layers_with_fsdp2_and_takes_over_activation_checkpointing():
    hardware = {"bf16": True, "fp16": False, "activation_checkpointing": True, "use_cpu": False}

    kwargs = fsdp_training_kwargs(hardware, ["LlamaDecoderLayer"])

    assert kwargs["fsdp"] is True and kwargs["bf16"] is True
    assert kwargs["activation_checkpointing"] is False, "transformers refuses its own flag together with FSDP's"
    assert kwargs["fsdp_config"] == {
        "version": 2, "reshard_after_forward": True, "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "transformer_layer_cls_to_wrap": ["LlamaDecoderLayer"], "state_dict_type": "FULL_STATE_DICT",
        "cpu_ram_efficient_loading": False, "activation_checkpointing": True,
    }
    assert hardware["activation_checkpointing"] is True, "the caller's dict is left as it was"


def test_the_launch_flags_and_the_trainer_config_agree():
    flags = _flags(["accelerate", *fsdp_launch_flags()])
    config = fsdp_training_kwargs({}, ["LlamaDecoderLayer"])["fsdp_config"]

    assert flags["--fsdp_version"] == str(config["version"])
    assert flags["--fsdp_reshard_after_forward"] == str(config["reshard_after_forward"]).lower()
    # Left to accelerate's default (true), ranks 1..N-1 would load empty weights the Trainer never fills.
    assert flags["--fsdp_cpu_ram_efficient_loading"] == str(config["cpu_ram_efficient_loading"]).lower() == "false"


def test_transformers_builds_accelerates_fsdp2_plugin_from_the_run_settings(tmp_path, monkeypatch):
    from training.trainer.device import choose_device
    from training.trainer.trl_config import _trl_config

    # TrainingArguments writes this to the environment; keep it from leaking into later tests.
    monkeypatch.setenv("FSDP_CPU_RAM_EFFICIENT_LOADING", "false")
    settings, _ = TrainSettings(num_processes=2, sharding="fsdp", max_steps=2, learning_rate=1e-4).resolve(8)

    args = _trl_config(
        settings, choose_device(force_cpu=True), tmp_path, has_validation=False, kto_weights=None,
        fsdp_layers=["LlamaDecoderLayer"],
    )

    assert args.fsdp is True and args.activation_checkpointing is False
    assert args.fsdp_plugin_args == {
        "fsdp_version": 2, "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "transformer_cls_names_to_wrap": "LlamaDecoderLayer", "cpu_ram_efficient_loading": False,
        "state_dict_type": "FULL_STATE_DICT", "activation_checkpointing": False, "reshard_after_forward": True,
    }


def test_an_unsharded_run_gets_no_fsdp_config(tmp_path):
    from training.trainer.device import choose_device
    from training.trainer.trl_config import _trl_config

    settings, _ = TrainSettings(num_processes=2, max_steps=2, learning_rate=1e-4).resolve(8)

    args = _trl_config(settings, choose_device(force_cpu=True), tmp_path, has_validation=False, kto_weights=None)

    assert not args.fsdp and args.fsdp_plugin_args is None


def test_the_layers_to_shard_are_the_models_own_decoder_layers(tiny_model_dir):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(tiny_model_dir))

    assert decoder_layer_classes(model) == ["LlamaDecoderLayer"]
    with pytest.raises(SettingsError, match="does not name its decoder layer class"):
        decoder_layer_classes(torch.nn.Linear(2, 2))


def test_a_sharded_runs_checkpoint_is_complete_with_accelerates_optimizer_file(tmp_path):
    from training.trainer.checkpoints import checkpoint_complete

    folder = tmp_path / "checkpoint-4"
    folder.mkdir()
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    (folder / "trainer_state.json").write_text('{"global_step": 4}')
    assert not checkpoint_complete(folder)

    (folder / "optimizer.bin").write_bytes(b"optimizer, gathered whole by accelerate's FSDP checkpointing")

    assert checkpoint_complete(folder)
