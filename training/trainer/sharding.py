"""Sharding a run's model across its processes: PyTorch FSDP2 full shard (ZeRO-3's equivalent) through accelerate.

Each process keeps 1/N of every weight, gradient and optimizer state and gathers one decoder layer at a time for
its forward and backward pass, so a model too large for one GPU trains on several. The options live here, once,
because two places read them: the worker's launch command (`accelerate launch --use_fsdp ...`, which exports them
to every process) and the Trainer's `fsdp_config`, from which each process builds accelerate's FSDP plugin. No
torch here: the worker imports this to build the command.
"""

from __future__ import annotations

from typing import Any

from .config import SettingsError

FSDP_VERSION = 2
# Every process loads the whole model and then keeps its shard. accelerate's launcher defaults to loading on rank 0
# only (the others start empty and get a broadcast), and transformers reads that from the environment while it loads
# the model, before the Trainer's own setting exists; left on, the two would disagree and ranks 1..N-1 would train
# on empty weights. So it is off in both places: host RAM must hold N copies while the model loads.
CPU_RAM_EFFICIENT_LOADING = False


def fsdp_launch_flags() -> list[str]:
    """`accelerate launch` flags for a fully sharded run (in place of `--multi_gpu`)."""
    return [
        "--use_fsdp",
        "--fsdp_version", str(FSDP_VERSION),
        "--fsdp_reshard_after_forward", "true",
        "--fsdp_cpu_ram_efficient_loading", str(CPU_RAM_EFFICIENT_LOADING).lower(),
    ]


def decoder_layer_classes(model: Any) -> list[str]:
    """The class names FSDP wraps one by one: the model's own `_no_split_modules` (its decoder layer), so a layer's
    weights, LoRA included, are gathered together and freed again after it has run."""
    names = [name for name in getattr(model, "_no_split_modules", None) or [] if isinstance(name, str)]
    if not names:
        raise SettingsError(
            f"{type(model).__name__} does not name its decoder layer class (transformers' _no_split_modules), so FSDP "
            "cannot tell where to cut it into shards. Train it without sharding."
        )
    return names


def fsdp_training_kwargs(hardware: dict[str, Any], layer_classes: list[str]) -> dict[str, Any]:
    """`hardware` (DeviceSettings.training_kwargs) turned into the TrainingArguments of a fully sharded run.

    Activation checkpointing moves into FSDP's own config: transformers refuses both at once, and its own flag would
    gather every layer's weights a second time in the backward pass.
    """
    kwargs = dict(hardware)
    checkpointing = False
    for name in ("activation_checkpointing", "gradient_checkpointing"):
        if name in kwargs:
            checkpointing = bool(kwargs[name]) or checkpointing
            kwargs[name] = False
    kwargs["fsdp"] = True
    kwargs["fsdp_config"] = {
        "version": FSDP_VERSION,
        "reshard_after_forward": True,  # full shard: weights are gathered for each layer's pass and freed after it
        "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "transformer_layer_cls_to_wrap": list(layer_classes),
        # Checkpoints and the final adapter are gathered whole to rank 0 and written as ordinary PEFT files.
        "state_dict_type": "FULL_STATE_DICT",
        "cpu_ram_efficient_loading": CPU_RAM_EFFICIENT_LOADING,
        "activation_checkpointing": checkpointing,
    }
    return kwargs
