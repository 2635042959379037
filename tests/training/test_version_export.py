"""Exporting a tuned version: an admin presses Export, a worker builds the zip (the adapter as trained, or merged into
the base weights as a standalone safetensors model), the run page shows its progress and then a download link. A
download never builds anything in the web request."""
from __future__ import annotations

import io
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction
from django.utils import timezone

from tests.factories import PASSWORD, AdminFactory, ProjectFactory, UserFactory, make_run
from tests.trainer.conftest import make_dpo_rows
from tests.worker_process import celery_worker, purge_queues, wait_for
from training import exports
from training.models import BaseModel, ModelVersion, VersionExport


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
def artifacts(settings, tmp_path) -> Path:
    settings.PREFTUNE_ARTIFACTS_DIR = str(tmp_path / "artifacts")
    return tmp_path / "artifacts"


@pytest.fixture
def version(db, tiny_model_dir, trained_adapter, artifacts) -> ModelVersion:
    base = BaseModel.objects.create(name="tiny", path=str(tiny_model_dir))
    return ModelVersion.objects.create(name="Tiny tuned (run 7)", base_model=base, adapter_path=trained_adapter)


@pytest.fixture
def run(version):  # noqa: ANN201
    """The run that trained ``version``: its page is where the exports are."""
    trained = make_run(ProjectFactory(), status="succeeded")
    trained.model_version = version
    trained.save(update_fields=["model_version"])
    return trained


@pytest.fixture
def admin_client(client, db):
    assert client.login(username=AdminFactory().username, password=PASSWORD)
    return client


@pytest.fixture
def sent(monkeypatch) -> list[tuple[str, list, str]]:
    """The messages the web process publishes, instead of a broker."""
    published: list[tuple[str, list, str]] = []
    monkeypatch.setattr(
        "training.broker.current_app.send_task", lambda name, args, queue, **_: published.append((name, args, queue))
    )
    return published


def _zip(response) -> zipfile.ZipFile:  # noqa: ANN001
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


def _must_not_run(*args: object, **kwargs: object) -> None:
    raise AssertionError("a web request built an export")


def _run_export(version: ModelVersion, kind: str) -> VersionExport:
    """What a worker does with the export's message: claim it, build it."""
    export = VersionExport.objects.create(version=version, kind=kind)
    assert exports.version_export_claim(export_id=export.pk, worker="test-worker")
    return exports.version_export_execute(export_id=export.pk)


def test_a_download_before_any_export_is_a_404_that_builds_nothing(admin_client, run, version, artifacts, monkeypatch):
    monkeypatch.setattr("training.trainer.export.merge_adapter", _must_not_run)
    monkeypatch.setattr("training.trainer.export.copy_adapter", _must_not_run)

    responses = {kind: admin_client.get(f"/versions/{version.pk}/{kind}.zip") for kind in ("adapter", "merged")}

    for kind, response in responses.items():
        assert response.status_code == 404
        assert response["Content-Type"] == "text/plain; charset=utf-8"
        assert response.content.decode() == (
            f"Tiny tuned (run 7) has not been exported as {kind} yet: press Export on its page (/runs/{run.pk}/), "
            "and download it there once the export is ready."
        )
    assert not (artifacts / "exports").exists()
    assert not VersionExport.objects.exists()


def test_an_unknown_kind_is_a_404_never_the_adapter(admin_client, version, sent):
    for kind in ("lora", "Merged", "adapter.zip", ""):
        assert admin_client.get(f"/versions/{version.pk}/{kind}.zip").status_code == 404
        assert admin_client.post(f"/versions/{version.pk}/{kind}/export/").status_code == 404
    with pytest.raises(exports.ExportError, match="There is no 'lora' export: the exports are adapter, merged."):
        exports.version_export_request(version=version, kind="lora", created_by=None)
    assert not VersionExport.objects.exists() and sent == []


def test_annotators_can_neither_export_nor_download(client, version, sent):
    assert client.login(username=UserFactory().username, password=PASSWORD)

    assert client.post(f"/versions/{version.pk}/merged/export/").status_code == 403
    assert client.get(f"/versions/{version.pk}/adapter.zip").status_code == 403
    assert client.get(f"/versions/{version.pk}/exports/").status_code == 403
    assert not VersionExport.objects.exists() and sent == []


def test_pressing_export_queues_one_job_on_commit_and_the_page_shows_it_waiting(
    admin_client, run, version, sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as first:
        response = admin_client.post(f"/versions/{version.pk}/merged/export/")
    with django_capture_on_commit_callbacks(execute=True) as second:
        admin_client.post(f"/versions/{version.pk}/merged/export/")

    assert response.status_code == 302 and response["Location"] == f"/runs/{run.pk}/"
    export = VersionExport.objects.get()
    assert (export.kind, export.status) == ("merged", "queued")
    assert len(first) == len(second) == 1, "a second press finds the queued export, and sends it again"
    assert sent == [("workers.version_export", [export.pk], "gpu")] * 2
    page = admin_client.get(f"/runs/{run.pk}/").content.decode()
    assert "Export of Tiny tuned (run 7) (merged) queued for a worker" in page
    assert 'data-testid="export-merged" data-state="queued"' in page and "waiting for a worker on queue" in page
    assert f'hx-get="/versions/{version.pk}/exports/"' in page, "the panel polls while the export waits"
    assert f'action="/versions/{version.pk}/adapter/export/"' in page, "the other kind can still be pressed"


def test_the_database_keeps_one_active_export_per_version_and_kind(version):
    VersionExport.objects.create(version=version, kind="merged", status="running")
    VersionExport.objects.create(version=version, kind="adapter")

    with pytest.raises(IntegrityError), transaction.atomic():
        VersionExport.objects.create(version=version, kind="merged")
    VersionExport.objects.filter(kind="merged").update(status="failed")
    VersionExport.objects.create(version=version, kind="merged")


def test_the_task_builds_a_merged_zip_whose_weights_are_base_plus_adapter(admin_client, run, version, tiny_model_dir, artifacts):
    from peft import PeftModel
    from safetensors.torch import load as load_safetensors
    from transformers import AutoModelForCausalLM

    from workers.tasks import version_export as export_task

    export = VersionExport.objects.create(version=version, kind="merged")

    assert export_task(export.pk) == "succeeded"
    assert export_task(export.pk) == "not claimed: another worker has it, or it already ran"

    response = admin_client.get(f"/versions/{version.pk}/merged.zip")
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="Tiny-tuned-run-7-merged.zip"'
    archive = _zip(response)
    assert "Tiny-tuned-run-7-merged/adapter_config.json" not in archive.namelist()
    merged = load_safetensors(archive.read("Tiny-tuned-run-7-merged/model.safetensors"))
    expected = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype="auto"), version.adapter_path
    ).merge_and_unload().state_dict()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype="auto").state_dict()
    assert merged and set(merged) <= set(expected) and not any("lora" in name for name in merged)
    assert all(torch.equal(merged[name], expected[name]) for name in merged)
    assert any(not torch.equal(merged[name], base[name]) for name in merged), "the adapter moved the weights"
    assert list((artifacts / "exports" / f"version-{version.pk}").iterdir()) == [
        artifacts / "exports" / f"version-{version.pk}" / "merged.zip"
    ], "no work folder left behind"
    page = admin_client.get(f"/runs/{run.pk}/").content.decode()
    assert f'href="/versions/{version.pk}/merged.zip"' in page and 'data-testid="download-merged"' in page
    assert f'action="/versions/{version.pk}/merged/export/"' not in page


def test_the_adapter_zip_holds_the_adapter_as_trained(admin_client, version, trained_adapter):
    assert _run_export(version, "adapter").status == "succeeded"

    archive = _zip(admin_client.get(f"/versions/{version.pk}/adapter.zip"))

    assert "Tiny-tuned-run-7-adapter/adapter_config.json" in archive.namelist()
    original = Path(trained_adapter, "adapter_model.safetensors").read_bytes()
    assert archive.read("Tiny-tuned-run-7-adapter/adapter_model.safetensors") == original


def test_a_failed_export_shows_its_reason_and_can_be_pressed_again(admin_client, run, version, artifacts, monkeypatch):
    def out_of_memory(*args: object, **kwargs: object) -> None:
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr("training.trainer.export.merge_adapter", out_of_memory)

    export = _run_export(version, "merged")

    assert (export.status, export.error) == ("failed", "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB")
    assert list((artifacts / "exports" / f"version-{version.pk}").iterdir()) == [], "its work folder is gone"
    page = admin_client.get(f"/runs/{run.pk}/").content.decode()
    assert "The last export failed: RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB" in page
    assert 'data-testid="export-merged-button">Export again</button>' in page
    assert admin_client.get(f"/versions/{version.pk}/merged.zip").status_code == 404


def test_a_base_model_alone_cannot_be_exported(admin_client, version, sent):
    alone = ModelVersion.objects.create(name="tiny (base)", base_model=version.base_model, adapter_path="")

    download = admin_client.get(f"/versions/{alone.pk}/adapter.zip")
    pressed = admin_client.post(f"/versions/{alone.pk}/adapter/export/", follow=True)

    assert download.status_code == 404
    assert download.content.decode() == "tiny (base) is a base model alone: there is no adapter to export."
    assert "tiny (base) is a base model alone: there is no adapter to export." in pressed.content.decode()
    assert not VersionExport.objects.exists() and sent == []
    assert admin_client.get("/versions/999999/adapter.zip").status_code == 404


def test_two_builds_at_once_each_work_in_their_own_folder(version, artifacts, monkeypatch):
    from training.trainer import export as export_core

    both_copying = threading.Barrier(2, timeout=30)
    copy = export_core.copy_adapter

    def copy_when_both_are_copying(adapter_path: str, out_dir: Path) -> Path:
        both_copying.wait()
        return copy(adapter_path, out_dir)

    monkeypatch.setattr(export_core, "copy_adapter", copy_when_both_are_copying)

    with ThreadPoolExecutor(2) as pool:
        paths = list(pool.map(lambda _: exports.version_export_build(version=version, kind="adapter"), range(2)))

    folder = artifacts / "exports" / f"version-{version.pk}"
    assert paths == [folder / "adapter.zip"] * 2
    assert list(folder.iterdir()) == [folder / "adapter.zip"]
    assert zipfile.ZipFile(paths[0]).testzip() is None


def test_an_export_whose_worker_went_quiet_is_failed_by_the_watchdog(version, settings):
    from training.watchdog import reap_stale

    settings.PREFTUNE_RUN_STALE_SECONDS = 60
    long_ago = timezone.now() - timedelta(minutes=5)
    stale = VersionExport.objects.create(version=version, kind="merged", status="running", heartbeat_at=long_ago)
    alive = VersionExport.objects.create(version=version, kind="adapter", status="running", heartbeat_at=timezone.now(),
                                         worker="w1@host")

    assert reap_stale()[2] == [stale.pk]
    assert exports.version_exports_reap(worker_name="w1@host") == [alive.pk]
    stale.refresh_from_db()
    assert stale.status == "failed" and stale.error.startswith("The worker building this export stopped")


def test_the_command_writes_the_merged_model_to_a_folder(version, tmp_path):
    out = io.StringIO()

    call_command("export_version", str(version.pk), "--out", str(tmp_path / "export"), "--merged", stdout=out)

    written = tmp_path / "export" / "Tiny-tuned-run-7-merged"
    assert out.getvalue().strip() == f"Wrote {written}"
    assert (written / "model.safetensors").is_file() and (written / "tokenizer.json").is_file()
    with pytest.raises(CommandError, match="No model version with id or name 'nope'"):
        call_command("export_version", "nope", "--out", str(tmp_path))


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_a_real_worker_builds_the_export_the_page_asked_for(admin_client, run, version, artifacts):
    purge_queues("default", "gpu")

    with celery_worker("exporter", queues="gpu", extra_env={"PREFTUNE_ARTIFACTS_DIR": str(artifacts)}):
        response = admin_client.post(f"/versions/{version.pk}/merged/export/")
        assert response.status_code == 302
        export = VersionExport.objects.get()
        wait_for(
            lambda: VersionExport.objects.filter(pk=export.pk).exclude(status__in=VersionExport.ACTIVE).exists(),
            timeout=180, what="the worker to finish the export",
        )

    export.refresh_from_db()
    assert (export.status, export.error) == ("succeeded", "")
    assert export.worker.startswith("exporter@")
    archive = _zip(admin_client.get(f"/versions/{version.pk}/merged.zip"))
    assert "Tiny-tuned-run-7-merged/model.safetensors" in archive.namelist()
    page = admin_client.get(f"/versions/{version.pk}/exports/").content.decode()
    assert 'data-testid="download-merged"' in page and 'data-active="false"' in page


def test_a_queued_export_is_cancelled_at_once_and_can_be_pressed_again(admin_client, run, version, sent):
    assert admin_client.post(f"/versions/{version.pk}/adapter/export/").status_code == 302
    export = VersionExport.objects.get(version=version, kind="adapter")
    page = admin_client.get(f"/runs/{run.pk}/").content.decode()
    assert '<li data-testid="export-adapter"' in page and 'data-testid="export-cancel">Cancel</button>' in page

    response = admin_client.post(f"/versions/{version.pk}/adapter/export/cancel/", follow=True)

    export.refresh_from_db()
    assert (export.status, export.cancel_requested) == ("cancelled", True)
    page = response.content.decode()
    assert "Export of Tiny tuned (run 7) (adapter) cancelled." in page and 'data-testid="export-cancelled"' in page
    assert 'data-testid="export-adapter-button">Export again</button>' in page
    # A worker that gets the message later finds nothing to claim.
    assert not exports.version_export_claim(export_id=export.pk, worker="late-worker")


def test_a_running_export_shows_done_total_rate_and_eta_and_cancel_stops_it_within_a_chunk(
    admin_client, run, version, artifacts, monkeypatch,
):
    monkeypatch.setattr("training.trainer.export.ZIP_CHUNK_BYTES", 4096)
    seen: dict[str, object] = {}
    record = exports._ByteProgress.__call__

    def record_then_look(self, done: int, total: int) -> None:  # noqa: ANN001
        record(self, done, total)
        if done >= 3 * 4096 and "page" not in seen:
            # What the page shows mid-zip, and the admin pressing Cancel there.
            seen["page"] = admin_client.get(f"/versions/{version.pk}/exports/").content.decode()
            seen["cancel"] = admin_client.post(f"/versions/{version.pk}/merged/export/cancel/", follow=True).content.decode()
            seen["done_at_cancel"] = done

    monkeypatch.setattr(exports._ByteProgress, "__call__", record_then_look)

    export = _run_export(version, "merged")

    assert (export.status, export.error) == ("cancelled", "Cancelled by an admin.")
    assert export.bytes_done == seen["done_at_cancel"], "it stopped before the next chunk"
    assert 0 < export.bytes_done < export.bytes_total
    page = seen["page"]
    assert 'data-testid="export-done">' in page and " of " in page and 'data-testid="export-eta"' in page
    assert "/s" in page and 'role="progressbar"' in page
    assert "cancelling: it stops at the next chunk of the zip" in seen["cancel"]
    assert list((artifacts / "exports" / f"version-{version.pk}").iterdir()) == [], "nothing left behind"
    assert admin_client.get(f"/versions/{version.pk}/merged.zip").status_code == 404
