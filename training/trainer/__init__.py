"""Django-free training core: settings, rows, device choice, training and generation.

Settings and rows are imported eagerly (cheap, no torch) so the web process can validate input;
the torch/TRL parts load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import LoraSettings, SettingsError, TrainSettings
from .rows import (
    RowsError,
    count_kto_labels,
    kto_class_weights,
    kto_weight_ratio,
    prompt_key,
    rows_format,
    rows_hash,
    split_rows,
    validate_dpo_rows,
    validate_kto_rows,
    validate_rows,
)
from .settings_choices import DPO_LOSS_TYPES, KTO_LOSS_TYPES, METHODS

if TYPE_CHECKING:
    from .checkpoints import latest_checkpoint
    from .core import TrainResult, train
    from .device import DeviceSettings, choose_device
    from .events import ProgressEvent
    from .generation import adapter_disabled, generate, load_for_generation, sequence_logprob

_LAZY = {
    "ProgressEvent": "events",
    "TrainResult": "core",
    "latest_checkpoint": "checkpoints",
    "train": "core",
    "DeviceSettings": "device",
    "choose_device": "device",
    "adapter_disabled": "generation",
    "generate": "generation",
    "load_for_generation": "generation",
    "sequence_logprob": "generation",
}

__all__ = [
    "DPO_LOSS_TYPES",
    "KTO_LOSS_TYPES",
    "METHODS",
    "LoraSettings",
    "RowsError",
    "SettingsError",
    "TrainSettings",
    "count_kto_labels",
    "kto_class_weights",
    "kto_weight_ratio",
    "rows_format",
    "rows_hash",
    "prompt_key",
    "split_rows",
    "validate_dpo_rows",
    "validate_kto_rows",
    "validate_rows",
    # loaded lazily (see _LAZY)
    "DeviceSettings",
    "ProgressEvent",
    "TrainResult",
    "adapter_disabled",
    "choose_device",
    "generate",
    "latest_checkpoint",
    "load_for_generation",
    "sequence_logprob",
    "train",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
