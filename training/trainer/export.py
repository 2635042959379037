"""Exporting a tuned version: its LoRA adapter as it is, or the adapter merged into the base weights as a
standalone safetensors model that any transformers (or vLLM, llama.cpp converter) user can load. No Django here."""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

ZIP_CHUNK_BYTES = 8 << 20


class ExportStopped(Exception):
    """The export was asked to stop (an admin pressed Cancel) part-way through writing its zip."""


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


def zip_folder(
    folder: str | Path, zip_path: str | Path, *, root: str, on_bytes: Callable[[int, int], object] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Path:
    """Zip `folder`'s files under the top-level name `root` (weights are stored, not deflated: they do not shrink).
    ``on_bytes(done, total)`` is called after each chunk of ZIP_CHUNK_BYTES read; ``should_stop()`` is polled before
    each chunk, and True raises ExportStopped (the partial zip is the caller's to delete)."""
    folder, zip_path = Path(folder), Path(zip_path)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    total, done = sum(p.stat().st_size for p in files), 0
    with zipfile.ZipFile(zip_path, "w") as archive:
        for path in files:
            info = zipfile.ZipInfo.from_file(path, f"{root}/{path.relative_to(folder)}")
            info.compress_type = zipfile.ZIP_STORED if path.suffix in (".safetensors", ".bin", ".pt") else zipfile.ZIP_DEFLATED
            with path.open("rb") as source, archive.open(info, "w", force_zip64=True) as target:
                while True:
                    if should_stop is not None and should_stop():
                        raise ExportStopped(f"Stopped after {done} of {total} bytes.")
                    block = source.read(ZIP_CHUNK_BYTES)
                    if not block:
                        break
                    target.write(block)
                    done += len(block)
                    if on_bytes is not None:
                        on_bytes(done, total)
    return zip_path
