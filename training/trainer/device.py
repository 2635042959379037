"""Pick precision and memory settings for the machine a run lands on."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DeviceSettings:
    """What the trainer config needs to know about the hardware."""

    device: str  # "cuda" or "cpu"
    bf16: bool
    gradient_checkpointing: bool
    pin_memory: bool
    dtype: torch.dtype  # dtype to load the base model weights in

    def training_kwargs(self, config_cls: type | None = None) -> dict[str, object]:
        """Keyword arguments for a TRL config class (DPOConfig / KTOConfig).

        transformers 5.2x renamed `gradient_checkpointing` to `activation_checkpointing` (the old name
        warns). Either way it must be set explicitly: TRL's own default is True.
        """
        names = {f.name for f in dataclasses.fields(config_cls)} if config_cls is not None else set()
        checkpointing = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
        return {
            "bf16": self.bf16,
            "fp16": False,
            checkpointing: self.gradient_checkpointing,
            "dataloader_pin_memory": self.pin_memory,
            "use_cpu": self.device == "cpu",
        }


def choose_device(*, force_cpu: bool = False, allow_gradient_checkpointing: bool = True) -> DeviceSettings:
    """CUDA: bf16 where supported, checkpointing allowed. CPU: fp32, no checkpointing, no pinned memory.

    TRL 1.x defaults to bf16=True and gradient_checkpointing=True; on CPUs without native bf16
    (AVX2 machines) that made DPO steps more than ten times slower, so both are always set here.
    """
    if not force_cpu and torch.cuda.is_available():
        bf16 = torch.cuda.is_bf16_supported()
        return DeviceSettings(
            device="cuda",
            bf16=bf16,
            gradient_checkpointing=allow_gradient_checkpointing,
            pin_memory=True,
            # bf16 base weights: half the memory of fp32, what lets a 7B model's LoRA fit one 24 GB card. PEFT
            # upcasts the LoRA weights to fp32 (autocast_adapter_dtype), so the adapter still trains in fp32.
            dtype=torch.bfloat16 if bf16 else torch.float32,
        )
    return DeviceSettings(
        device="cpu",
        bf16=False,
        gradient_checkpointing=False,
        pin_memory=False,
        dtype=torch.float32,
    )
