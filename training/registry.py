"""Writes for the base-model registry: register a local model folder (checked and measured at once) or a Hugging
Face id (downloaded, then checked, by a worker)."""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from django.conf import settings
from django.db import transaction

from training.model_inspection import ModelFacts, ModelFolderError, inspect_model_folder
from training.models import BaseModel

logger = logging.getLogger(__name__)

# owner/name, each part starting and ending with a letter, digit or "_" (the hub's \b...\b).
_HUB_PART = r"[A-Za-z0-9_](?:[\w.-]{0,94}[A-Za-z0-9_])?"
HUB_ID = re.compile(rf"^{_HUB_PART}/{_HUB_PART}$", re.ASCII)
DOWNLOAD_TASK = "workers.base_model_download"
# What a causal LM needs from a hub repository; other formats and checkpoints stay on the hub.
DOWNLOAD_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "*.model", "*.txt", "*.tiktoken"]


class RegistryError(Exception):
    """Why a model cannot be registered, in words for the admin; nothing was written."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def _facts_fields(facts: ModelFacts) -> dict[str, object]:
    return {
        "architecture": facts.architecture,
        "parameters": facts.parameters,
        "quantizable_parameters": facts.quantizable_parameters,
        "context_length": facts.context_length,
        "linear_layers": list(facts.linear_layers),
    }


def base_model_register(*, name: str, source: str) -> BaseModel:
    """Register ``source``: an absolute folder path (checked now: a causal LM with a tokenizer and a chat
    template) or a Hugging Face id (queued for a worker to download and check). Raises RegistryError, having
    written nothing (no row, no folder, no queued download)."""
    # The source is checked and put in one spelling before anything else, so a bad one gets its own message
    # (not a name clash) and one folder written two ways (/m/x, /m/./x/, /m/y/../x, a symlink to /m/x) is one
    # registration.
    source, is_folder = check_model_source(source)
    existing = _registered_folder(source) if is_folder else BaseModel.objects.filter(hub_id__iexact=source).first()
    if existing is not None:
        raise RegistryError(f"{source} is already registered as {existing.name!r}.", field="source")
    facts = None
    if is_folder:
        try:
            facts = inspect_model_folder(source)
        except ModelFolderError as exc:
            raise RegistryError(str(exc), field="source") from exc
    name = name.strip() or source.rsplit("/", 1)[-1]
    if BaseModel.objects.filter(name=name).exists():
        raise RegistryError(f"A base model named {name!r} is already registered; pick another name.", field="name")
    if facts is not None:
        return BaseModel.objects.create(name=name, path=source, status=BaseModel.Status.READY, **_facts_fields(facts))
    folder = Path(settings.PREFTUNE_MODELS_DIR) / "hub" / source.replace("/", "--")
    with transaction.atomic():
        model = BaseModel.objects.create(
            name=name, path=str(folder), hub_id=source, status=BaseModel.Status.DOWNLOADING
        )
        transaction.on_commit(lambda: _send_download(model.pk))
    return model


def check_model_source(source: str) -> tuple[str, bool]:
    """``source`` in its one spelling, and whether it is a folder: an absolute path resolved (``..``, ``.`` and
    symlinks followed), or a Hugging Face id as given. Raises RegistryError (field "source") for anything else."""
    source = source.strip()
    if not source:
        raise RegistryError("Give a model folder or a Hugging Face id.", field="source")
    if source.startswith("/"):
        return os.path.realpath(source), True
    # The hub's own rule (huggingface_hub's validate_repo_id) plus exactly one owner: "--" is also refused because
    # the download folder writes "/" as "--", so a--b/c and a/b--c would share one folder.
    if not HUB_ID.match(source) or ".." in source or "--" in source or source.endswith(".git"):
        raise RegistryError(
            f"{source!r} is neither an absolute folder path nor a Hugging Face id. A folder is its full path on the "
            "workers, such as /models/SmolLM2-360M-Instruct; an id is owner/name, such as "
            "HuggingFaceTB/SmolLM2-360M-Instruct: two non-empty parts of letters, digits, '-', '_' and '.', "
            "without '..' or '--'.",
            field="source",
        )
    return source, False


def _registered_folder(folder: str) -> BaseModel | None:
    # Rows made elsewhere (the admin, prepare_base_model) may spell their folder another way: compare resolved.
    for model in BaseModel.objects.only("name", "path"):
        if os.path.isabs(model.path) and os.path.realpath(model.path) == folder:
            return model
    return None


def _send_download(model_id: int) -> None:
    from celery import current_app

    current_app.send_task(DOWNLOAD_TASK, args=[model_id], queue="gpu")


def base_model_download(*, model_id: int) -> BaseModel:
    """On a worker: download a registered hub id into its folder and check it; the row ends ready or failed with
    the reason. A model no longer downloading (done, or failed) is left alone."""
    model = BaseModel.objects.get(pk=model_id)
    if model.status != BaseModel.Status.DOWNLOADING:
        return model
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(repo_id=model.hub_id, local_dir=model.path, allow_patterns=DOWNLOAD_PATTERNS)
    except Exception as exc:  # noqa: BLE001 - network, auth and offline errors all end the same way, with the reason
        logger.warning("Could not download %s: %s", model.hub_id, exc)
        return _fail(
            model,
            f"The worker could not download {model.hub_id} from the Hugging Face Hub ({type(exc).__name__}: "
            f"{str(exc)[:300]}). It is offline (HF_HUB_OFFLINE) or cannot reach huggingface.co, or the id is wrong "
            "or gated. Download the model where the Hub can be reached and register its folder instead.",
        )
    try:
        facts = inspect_model_folder(model.path)
    except ModelFolderError as exc:
        return _fail(model, f"Downloaded, but it cannot be tuned here: {exc}")
    BaseModel.objects.filter(pk=model.pk, status=BaseModel.Status.DOWNLOADING).update(
        status=BaseModel.Status.READY, error="", **_facts_fields(facts)
    )
    return BaseModel.objects.get(pk=model.pk)


def _fail(model: BaseModel, reason: str) -> BaseModel:
    BaseModel.objects.filter(pk=model.pk, status=BaseModel.Status.DOWNLOADING).update(
        status=BaseModel.Status.FAILED, error=reason[:4000]
    )
    return BaseModel.objects.get(pk=model.pk)
