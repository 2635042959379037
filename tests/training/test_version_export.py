"""Exporting a tuned version from its run page and by command: the adapter as trained, or merged into the base
weights as a standalone safetensors model that gives the same outputs."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
import torch
from django.core.management import CommandError, call_command

from tests.factories import PASSWORD, AdminFactory, UserFactory
from tests.trainer.conftest import make_dpo_rows
from training.models import BaseModel, ModelVersion


@pytest.fixture(scope="module")
def trained_adapter(tiny_model_dir, tmp_path_factory) -> str:
    from training.trainer import TrainSettings, train

    result = train(
        model_path=str(tiny_model_dir), rows=make_dpo_rows(6), output_dir=str(tmp_path_factory.mktemp("run")),
        settings=TrainSettings(max_steps=3, per_device_batch_size=2, learning_rate=5e-3, validation_fraction=0.0,
                               max_length=64),
    )
    return result.adapter_dir


@pytest.fixture
def version(db, tiny_model_dir, trained_adapter, settings, tmp_path) -> ModelVersion:
    settings.PREFTUNE_ARTIFACTS_DIR = str(tmp_path / "artifacts")
    base = BaseModel.objects.create(name="tiny", path=str(tiny_model_dir))
    return ModelVersion.objects.create(name="Tiny tuned (run 7)", base_model=base, adapter_path=trained_adapter)


@pytest.fixture
def admin_client(client, db):
    assert client.login(username=AdminFactory().username, password=PASSWORD)
    return client


def _zip(response) -> zipfile.ZipFile:  # noqa: ANN001
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


def _logits(model, tokenizer) -> torch.Tensor:  # noqa: ANN001
    batch = tokenizer("Write one sentence about the sea.", return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits


def test_the_adapter_downloads_from_the_run_page_as_trained(admin_client, version, trained_adapter):
    response = admin_client.get(f"/versions/{version.pk}/adapter.zip")

    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="Tiny-tuned-run-7-adapter.zip"'
    archive = _zip(response)
    names = set(archive.namelist())
    assert {"Tiny-tuned-run-7-adapter/adapter_model.safetensors", "Tiny-tuned-run-7-adapter/adapter_config.json"} <= names
    original = Path(trained_adapter, "adapter_model.safetensors").read_bytes()
    assert archive.read("Tiny-tuned-run-7-adapter/adapter_model.safetensors") == original


def test_the_merged_model_gives_the_outputs_of_base_plus_adapter(admin_client, version, tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.trainer.generation import load_for_generation

    response = admin_client.get(f"/versions/{version.pk}/merged.zip")

    assert response.status_code == 200
    _zip(response).extractall(tmp_path / "unzipped")
    merged_dir = tmp_path / "unzipped" / "Tiny-tuned-run-7-merged"
    assert (merged_dir / "model.safetensors").is_file() and not (merged_dir / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    tuned, _ = load_for_generation(str(tiny_model_dir), version.adapter_path, device="cpu")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert torch.allclose(_logits(merged, tokenizer), _logits(tuned, tokenizer), atol=1e-4)
    assert not torch.allclose(_logits(merged, tokenizer), _logits(base, tokenizer), atol=1e-4), "the adapter moved it"
    assert tokenizer.chat_template, "the chat template travels with it"


def test_the_command_writes_the_merged_model_to_a_folder(version, tmp_path):
    out = io.StringIO()

    call_command("export_version", str(version.pk), "--out", str(tmp_path / "export"), "--merged", stdout=out)

    written = tmp_path / "export" / "Tiny-tuned-run-7-merged"
    assert out.getvalue().strip() == f"Wrote {written}"
    assert (written / "model.safetensors").is_file() and (written / "tokenizer.json").is_file()


def test_a_base_model_alone_and_an_unknown_version_are_refused(admin_client, version, tmp_path):
    alone = ModelVersion.objects.create(name="tiny (base)", base_model=version.base_model, adapter_path="")

    response = admin_client.get(f"/versions/{alone.pk}/adapter.zip")

    assert response.status_code == 404
    assert response.content.decode() == "tiny (base) is a base model alone: there is no adapter to export."
    assert admin_client.get("/versions/999999/adapter.zip").status_code == 404
    with pytest.raises(CommandError, match="No model version with id or name 'nope'"):
        call_command("export_version", "nope", "--out", str(tmp_path))


def test_annotators_cannot_download_versions(client, version):
    assert client.login(username=UserFactory().username, password=PASSWORD)

    assert client.get(f"/versions/{version.pk}/adapter.zip").status_code == 403
