"""What a base model folder allows, read from its config.json without loading a single weight.

The launch form uses it to refuse LoRA target modules the model does not have, and a max_length past what it
can read, before anything is queued: otherwise the worker loads the model a moment later and fails there.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelShape:
    """``linear_names``: the last name component of every linear layer, the names LoRA target modules are
    matched against (the trainer applies the same rule). ``max_positions``: tokens the model reads at once,
    None when its config does not say."""

    linear_names: frozenset[str]
    max_positions: int | None
    parameters: int = 0
    quantizable_parameters: int = 0  # in linear layers other than the output head: what 4-bit loading packs

    def weight_gib(self, quantization: str) -> float:
        """GiB the base weights take on each GPU: bf16, or NF4 with double quantisation (about 4.13 bits a weight
        in the linear layers; embeddings, norms and the output head stay bf16)."""
        if quantization == "4bit":
            packed = self.quantizable_parameters * 4.127 / 8
            return (packed + (self.parameters - self.quantizable_parameters) * 2) / 2**30
        return self.parameters * 2 / 2**30

    def weight_gib_per_gpu(self, *, gpus: int, sharding: str) -> float:
        """GiB of bf16 base weights on each of ``gpus`` GPUs. Data parallel ("none") keeps a whole copy on every GPU;
        full sharding ("fsdp") keeps 1/gpus of every weight (embeddings, decoder layers and head alike) and, while a
        decoder layer runs, gathers that one layer in full on top."""
        whole = self.weight_gib("none")
        return whole / gpus if sharding == "fsdp" and gpus > 1 else whole


def local_model_shape(path: str) -> ModelShape | None:
    """The shape of the model in the local folder ``path``; None for a hub id, a folder without a config.json,
    or a config that transformers cannot build a model from.

    None means "not checked here": the launch service refuses a path that is not a model folder, and the
    worker reports a config it cannot load. The first call for a folder imports torch and transformers and
    builds the model on the meta device (no memory, about a second); later calls are cached.
    """
    folder = Path(path)
    if not (folder.is_absolute() or path.startswith(".")):
        return None
    config = folder / "config.json"
    if not config.is_file():
        return None
    # Keyed by the config's modification time too, so a folder prepared again is read again.
    return _shape(str(folder.resolve()), config.stat().st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _shape(folder: str, config_mtime_ns: int) -> ModelShape | None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(folder)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except (OSError, ValueError, KeyError, TypeError, ImportError) as exc:
        logger.warning("Could not read the model config in %s, so its launch settings are not checked: %s", folder, exc)
        return None
    names = frozenset(
        name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)
    )
    max_positions = getattr(config, "max_position_embeddings", None)
    head = model.get_output_embeddings()
    quantizable = sum(
        module.weight.numel() for module in model.modules() if isinstance(module, torch.nn.Linear) and module is not head
    )
    return ModelShape(
        linear_names=names,
        max_positions=max_positions if isinstance(max_positions, int) else None,
        parameters=sum(p.numel() for p in model.parameters()),
        quantizable_parameters=quantizable,
    )


class ModelFolderError(Exception):
    """A folder that cannot be registered as a base model; the message says why, for the admin."""


@dataclass(frozen=True)
class ModelFacts:
    """What registering a base model records: its size, context length, linear layers and chat template."""

    architecture: str
    parameters: int
    quantizable_parameters: int
    context_length: int | None
    linear_layers: tuple[str, ...]
    has_chat_template: bool

    def shape(self) -> ModelShape:
        return ModelShape(
            linear_names=frozenset(self.linear_layers), max_positions=self.context_length,
            parameters=self.parameters, quantizable_parameters=self.quantizable_parameters,
        )


def inspect_model_folder(path: str) -> ModelFacts:
    """Check that ``path`` is a local causal language model with a tokenizer and a chat template, and read its
    facts without loading a weight (the model is built on the meta device). Raises ModelFolderError."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder = Path(path)
    if not folder.is_absolute():
        raise ModelFolderError(f"{path!r} is not an absolute path: give the model folder's full path on the worker.")
    if not folder.is_dir():
        raise ModelFolderError(f"There is no folder at {path}.")
    if not (folder / "config.json").is_file():
        raise ModelFolderError(f"{path} has no config.json, so it is not a transformers model folder.")
    try:
        config = AutoConfig.from_pretrained(str(folder))
    except (OSError, ValueError, KeyError) as exc:
        raise ModelFolderError(f"transformers cannot read the config in {path}: {exc}") from exc
    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except ValueError as exc:
        raise ModelFolderError(
            f"{path} holds a {type(config).__name__.removesuffix('Config')} model, which is not a causal language "
            "model (transformers has no AutoModelForCausalLM for it); preference tuning needs one that writes text "
            "left to right."
        ) from exc
    weights = list(folder.glob("*.safetensors")) + list(folder.glob("*.bin"))
    if not weights:
        raise ModelFolderError(f"{path} has a config but no weights (*.safetensors or *.bin).")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelFolderError(f"{path} has no tokenizer that transformers can load: {exc}") from exc
    if not tokenizer.chat_template:
        raise ModelFolderError(
            f"{path} has no chat template, and prompts and answers are chat messages. Use the instruct/chat variant "
            "of the model, or add a chat_template.jinja file to the folder."
        )
    head = model.get_output_embeddings()
    linear = {name: module for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    context = getattr(config, "max_position_embeddings", None)
    return ModelFacts(
        architecture=type(model).__name__,
        parameters=sum(p.numel() for p in model.parameters()),
        quantizable_parameters=sum(m.weight.numel() for m in linear.values() if m is not head),
        context_length=context if isinstance(context, int) else None,
        linear_layers=tuple(sorted({name.rsplit(".", 1)[-1] for name, m in linear.items() if m is not head})),
        has_chat_template=True,
    )


def memory_estimates(shape: ModelShape, gpu_counts: tuple[int, ...] = (1, 2, 4, 8)) -> list[dict[str, object]]:
    """Base-weight memory per GPU, GiB, for LoRA (bf16) and QLoRA (4-bit), by GPU count, data parallel and sharded.

    Data parallel (DDP) keeps a whole copy on every GPU, so the weights per GPU do not shrink with more GPUs:
    more GPUs buy speed, not room. Full sharding (FSDP, bf16 only: the trainer refuses it with 4-bit weights) divides
    them by the GPU count. Activations, the adapter and its optimizer state come on top.
    """
    lora, qlora = shape.weight_gib("none"), shape.weight_gib("4bit")
    return [
        {"gpus": n, "lora_ddp": lora, "qlora_ddp": qlora, "lora_fsdp": shape.weight_gib_per_gpu(gpus=n, sharding="fsdp")}
        for n in gpu_counts
    ]
