"""Exporting a tuned version: its LoRA adapter as it is, or the adapter merged into the base weights as a
standalone safetensors model that any transformers (or vLLM, llama.cpp converter) user can load. No Django here."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path


def merge_adapter(base_path: str, adapter_path: str, out_dir: str | Path) -> Path:
    """Write base + adapter merged into one model (safetensors) with its tokenizer and chat template to `out_dir`."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # Merge in the base model's own precision: the merged weights are what a user serves.
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype="auto")
    merged = PeftModel.from_pretrained(base, adapter_path).merge_and_unload()
    with torch.no_grad():
        merged.save_pretrained(str(out), safe_serialization=True)
    AutoTokenizer.from_pretrained(adapter_path if Path(adapter_path, "tokenizer_config.json").is_file() else base_path).save_pretrained(str(out))
    return out


def copy_adapter(adapter_path: str, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    shutil.copytree(adapter_path, out, dirs_exist_ok=True)
    return out


def zip_folder(folder: str | Path, zip_path: str | Path, *, root: str) -> Path:
    """Zip `folder`'s files under the top-level name `root` (weights are stored, not deflated: they do not shrink)."""
    folder, zip_path = Path(folder), Path(zip_path)
    with zipfile.ZipFile(zip_path, "w") as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            stored = path.suffix in (".safetensors", ".bin", ".pt")
            archive.write(path, f"{root}/{path.relative_to(folder)}",
                          compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
    return zip_path
