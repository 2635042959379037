"""The model a run trains: the base loaded for the method (a score head for a reward model, 4-bit for QLoRA), a
trained version merged in to start from, the LoRA adapter's config, and two adapters chained into one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch
from peft import LoraConfig
from transformers import AutoModelForCausalLM

from .config import SettingsError, TrainSettings
from .device import DeviceSettings
from .reward import SCORE_HEAD
from .settings_choices import REWARD_METHOD


def _model_class(settings: TrainSettings) -> type:
    if settings.method == REWARD_METHOD:
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification
    return AutoModelForCausalLM


def _load_base_model(model_path: str, settings: TrainSettings, device: DeviceSettings) -> torch.nn.Module:
    # A reward model is the base with a new one-number head (`score`) in place of the vocabulary head.
    head = {"num_labels": 1} if settings.method == REWARD_METHOD else {}
    if settings.quantization == "none":
        return _model_class(settings).from_pretrained(model_path, dtype=device.dtype, **head)
    if device.device != "cuda":
        raise SettingsError(
            "QLoRA (4-bit base weights) needs a CUDA GPU: bitsandbytes' 4-bit kernels do not train on this worker's "
            "CPU. Launch without 4-bit quantization, or on a GPU worker."
        )
    try:
        import bitsandbytes  # noqa: F401 - only checking that it is installed
    except ImportError as exc:
        raise SettingsError(
            "QLoRA needs the bitsandbytes package on the GPU worker (pip install bitsandbytes); it is not installed."
        ) from exc
    from transformers import BitsAndBytesConfig

    quantization = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    # Each data-parallel process holds its own quantised copy on its own GPU.
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    return _model_class(settings).from_pretrained(
        model_path, quantization_config=quantization, dtype=torch.bfloat16, device_map={"": local_rank}, **head
    )


def _lora_config(model: torch.nn.Module, settings: TrainSettings) -> LoraConfig:
    lora = settings.lora
    # Fail with the names the model does have, not PEFT's "target modules not found" deep in setup.
    leaf_names = {
        name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)
    }
    missing = [t for t in lora.target_modules if t not in leaf_names]
    if missing:
        raise SettingsError(
            f"LoRA target module(s) {', '.join(missing)} do not exist in this model; its linear layers are: "
            f"{', '.join(sorted(leaf_names - {'lm_head'}))}."
        )
    reward = settings.method == REWARD_METHOD
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        bias="none",
        task_type="SEQ_CLS" if reward else "CAUSAL_LM",
        # The score head is new and random: it is trained in full and saved with the adapter.
        modules_to_save=[SCORE_HEAD] if reward else None,
    )


def _merged(model: torch.nn.Module, adapter_dir: str) -> torch.nn.Module:
    """The base with a trained version's adapter merged in: what this run starts from and is measured against."""
    from peft import PeftModel

    if not Path(adapter_dir, "adapter_config.json").is_file():
        raise SettingsError(f"The version to start from has no adapter at {adapter_dir}: it may have been deleted.")
    return PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()


def chain_adapters(base_path: str, first: str, second: str, *, out: str, dtype: torch.dtype = torch.float32) -> None:
    """Write to `out` one LoRA adapter equal to `first` then `second` on the base at `base_path`.

    `second` was trained on the base with `first` merged in. LoRA updates add up, so W + B1·A1·s1 + B2·A2·s2 is
    one adapter of rank r1 + r2 (PEFT's "cat" combination): the chained version then loads, generates, battles
    and exports like any other, from the original base.
    """
    from peft import PeftModel

    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype)
    model = PeftModel.from_pretrained(base, first, adapter_name="first")
    model.load_adapter(second, adapter_name="second")
    model.add_weighted_adapter(["first", "second"], [1.0, 1.0], adapter_name="chain", combination_type="cat")
    model.set_adapter("chain")
    model.delete_adapter("first")
    model.delete_adapter("second")
    Path(out).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=Path(out).parent) as tmp:
        model.save_pretrained(tmp, selected_adapters=["chain"], safe_serialization=True)
        saved = Path(tmp) / "chain" if (Path(tmp) / "chain").is_dir() else Path(tmp)
        for name in ("adapter_model.safetensors", "adapter_config.json"):
            shutil.copy(saved / name, Path(out) / name)
