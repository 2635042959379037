"""The base-model registry page: a local folder is checked and measured at once, a hub id is downloaded by a real
worker (offline here, so it fails with the reason), and anything that cannot be tuned is refused with why."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.factories import PASSWORD, AdminFactory, ProjectFactory, UserFactory
from tests.training.conftest import voted_compare_project
from tests.worker_process import celery_worker, purge_queues, wait_for
from training import services
from training.models import BaseModel


@pytest.fixture
def admin_client(client, db):
    admin = AdminFactory()
    assert client.login(username=admin.username, password=PASSWORD)
    client.user = admin
    return client


def _register(client, source: str, name: str = ""):  # noqa: ANN001, ANN202
    return client.post("/models/", {"source": source, "name": name})


def _error(response) -> str:  # noqa: ANN001
    page = response.content.decode()
    start = page.index('class="errors"')
    return page[start : page.index("</ul>", start)]


def test_a_local_model_registered_from_the_page_shows_its_layers_and_memory(admin_client, tiny_model_dir):
    response = _register(admin_client, str(tiny_model_dir), name="Tiny test model")

    assert response.status_code == 302
    model = BaseModel.objects.get(name="Tiny test model")
    assert (model.status, model.path, model.architecture) == ("ready", str(tiny_model_dir), "LlamaForCausalLM")
    assert model.context_length == 2048
    assert model.linear_layers == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
    assert 0 < model.quantizable_parameters < model.parameters
    page = admin_client.get("/models/").content.decode()
    assert "Registered Tiny test model: checked and ready to tune." in page
    assert "LoRA can target: down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj" in page
    assert 'data-testid="model-memory"' in page and "in 4-bit NF4 (QLoRA)" in page
    # The launch form offers it, and checks its settings against its layers.
    assert "Tiny test model" in admin_client.get(f"/projects/{ProjectFactory().pk}/runs/new/").content.decode()


def test_the_memory_estimate_follows_the_size_and_the_gpu_count(db):
    from training import selectors

    BaseModel.objects.create(
        name="7B", path="/m/7b", parameters=7_000_000_000, quantizable_parameters=6_500_000_000, context_length=4096
    )

    (row,) = selectors.base_models_table()
    by_gpus = {m["gpus"]: m for m in row.memory}
    assert by_gpus[1]["lora_ddp"] == pytest.approx(7e9 * 2 / 2**30)
    assert by_gpus[1]["qlora_ddp"] == pytest.approx((6.5e9 * 4.127 / 8 + 0.5e9 * 2) / 2**30)
    assert by_gpus[4]["lora_ddp"] == by_gpus[1]["lora_ddp"], "data parallel keeps a whole copy on each GPU"


def test_the_memory_estimate_divides_the_weights_by_the_gpu_count_when_sharded(db):
    from training import selectors
    from training.model_inspection import ModelShape

    BaseModel.objects.create(
        name="7B", path="/m/7b", parameters=7_000_000_000, quantizable_parameters=6_500_000_000, context_length=4096
    )

    (row,) = selectors.base_models_table()
    by_gpus = {m["gpus"]: m for m in row.memory}
    whole = 7e9 * 2 / 2**30  # 13.04 GiB of bf16 weights
    assert by_gpus[1]["lora_fsdp"] == pytest.approx(whole), "one GPU has nothing to share with"
    assert by_gpus[4]["lora_fsdp"] == pytest.approx(whole / 4) == pytest.approx(3.26, abs=0.01)
    assert by_gpus[8]["lora_fsdp"] == pytest.approx(whole / 8)
    shape = ModelShape(linear_names=frozenset(), max_positions=None, parameters=7_000_000_000)
    assert shape.weight_gib_per_gpu(gpus=4, sharding="none") == pytest.approx(whole), "data parallel: a copy each"


def test_the_models_page_shows_the_sharded_weights_per_gpu(admin_client):
    BaseModel.objects.create(
        name="7B", path="/m/7b", parameters=7_000_000_000, quantizable_parameters=6_500_000_000, context_length=4096
    )

    page = admin_client.get("/models/").content.decode()

    assert 'data-testid="model-memory-sharded"' in page
    assert "<b>6.52 GiB</b> per GPU on 2, <b>3.26 GiB</b> on 4, <b>1.63 GiB</b> on 8" in page


def test_a_folder_that_does_not_exist_is_refused(admin_client):
    response = _register(admin_client, "/no/such/model")

    assert response.status_code == 400
    assert "There is no folder at /no/such/model." in _error(response)
    assert not BaseModel.objects.exists()


def test_a_folder_without_a_config_is_refused(admin_client, tmp_path):
    response = _register(admin_client, str(tmp_path))

    assert response.status_code == 400
    assert "has no config.json, so it is not a transformers model folder" in _error(response)


def test_a_model_that_is_not_a_causal_lm_is_refused(admin_client, tmp_path):
    from transformers import ViTConfig

    ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64).save_pretrained(tmp_path)

    response = _register(admin_client, str(tmp_path))

    assert response.status_code == 400
    assert "holds a ViT model, which is not a causal language model" in _error(response)
    assert not BaseModel.objects.exists()


def test_a_model_without_weights_or_chat_template_is_refused(admin_client, tiny_model_dir, tmp_path):
    no_weights = tmp_path / "no-weights"
    shutil.copytree(tiny_model_dir, no_weights)
    for weights in no_weights.glob("*.safetensors"):
        weights.unlink()
    no_template = tmp_path / "no-template"
    shutil.copytree(tiny_model_dir, no_template)
    (no_template / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((no_template / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (no_template / "tokenizer_config.json").write_text(json.dumps(config))

    weights_error = _error(_register(admin_client, str(no_weights)))
    template_error = _error(_register(admin_client, str(no_template)))

    assert "has a config but no weights" in weights_error
    assert "has no chat template" in template_error and "chat_template.jinja" in template_error
    assert not BaseModel.objects.exists()


def test_a_second_model_of_the_same_name_and_a_malformed_source_are_refused(admin_client, tiny_model_dir, tmp_path):
    import shutil

    assert _register(admin_client, str(tiny_model_dir), name="Same").status_code == 302
    other_folder = shutil.copytree(tiny_model_dir, tmp_path / "copy")

    duplicate = _register(admin_client, str(other_folder), name="Same")
    malformed = _register(admin_client, "not a path or id")

    assert "A base model named &#x27;Same&#x27; is already registered" in _error(duplicate)
    assert "is neither an absolute folder path nor a Hugging Face id" in _error(malformed)
    assert BaseModel.objects.count() == 1


def test_one_folder_written_two_ways_registers_once_and_dotted_ids_are_refused_before_any_name_check(admin_client, tiny_model_dir):
    assert _register(admin_client, str(tiny_model_dir), name="First").status_code == 302
    roundabout = f"{tiny_model_dir.parent}/./{tiny_model_dir.name}/../{tiny_model_dir.name}/"

    again = _register(admin_client, roundabout, name="Second")
    dotted = [_register(admin_client, source, name="First") for source in ("a/..", "../..", "owner/.")]

    assert f"{tiny_model_dir} is already registered as &#x27;First&#x27;." in _error(again)
    for response in dotted:
        assert "is neither an absolute folder path nor a Hugging Face id" in _error(response)
    assert list(BaseModel.objects.values_list("name", "path")) == [("First", str(tiny_model_dir))]


@pytest.mark.parametrize("source", ["a/..", "../x", "../../", "a/b/c", "a//b", "a/", "/a", "owner/.", "a--b/c", "x"])
def test_a_malformed_source_is_refused_for_itself_before_the_name_and_nothing_is_made(
    admin_client, tiny_model_dir, settings, tmp_path, django_capture_on_commit_callbacks, source
):
    settings.PREFTUNE_MODELS_DIR = str(tmp_path / "models")
    assert _register(admin_client, str(tiny_model_dir), name="Taken").status_code == 302

    with django_capture_on_commit_callbacks() as queued:
        response = _register(admin_client, source, name="Taken")

    assert response.status_code == 400
    error = _error(response)
    if source == "/a":  # an absolute path is a folder: it is looked for, and is not there
        assert "There is no folder at /a." in error
    else:
        assert "is neither an absolute folder path nor a Hugging Face id" in error
        assert "such as /models/SmolLM2-360M-Instruct" in error and "owner/name" in error
    assert "Taken" not in error, "the source's own fault, not a name clash"
    assert BaseModel.objects.count() == 1 and queued == [] and not (tmp_path / "models").exists()


def test_a_symlinked_or_differently_spelled_folder_is_the_same_model(admin_client, tiny_model_dir, tmp_path):
    link = tmp_path / "link-to-tiny"
    link.symlink_to(tiny_model_dir, target_is_directory=True)
    assert _register(admin_client, f"{link}/", name="Through a link").status_code == 302
    assert BaseModel.objects.get().path == str(tiny_model_dir.resolve()), "stored resolved"

    again = _register(admin_client, f"{tiny_model_dir}/../{tiny_model_dir.name}", name="Direct")

    assert f"{tiny_model_dir.resolve()} is already registered as &#x27;Through a link&#x27;." in _error(again)
    assert BaseModel.objects.count() == 1


def test_a_folder_registered_elsewhere_in_another_spelling_counts_too(admin_client, tiny_model_dir):
    BaseModel.objects.create(name="From the admin", path=f"{tiny_model_dir}/./")

    response = _register(admin_client, str(tiny_model_dir), name="Again")

    assert "is already registered as &#x27;From the admin&#x27;." in _error(response)
    assert BaseModel.objects.count() == 1


def test_a_hub_id_registers_once_whatever_its_case(admin_client, django_capture_on_commit_callbacks):
    BaseModel.objects.create(name="Smol", path="/m/hub/x", hub_id="HuggingFaceTB/SmolLM2-360M-Instruct", status="ready")

    with django_capture_on_commit_callbacks() as queued:
        response = _register(admin_client, "huggingfacetb/smollm2-360m-instruct", name="Smol again")

    assert "is already registered as &#x27;Smol&#x27;." in _error(response)
    assert BaseModel.objects.count() == 1 and queued == []


def test_annotators_cannot_see_or_register_models(client, db, tiny_model_dir):
    annotator = UserFactory()
    assert client.login(username=annotator.username, password=PASSWORD)

    assert client.get("/models/").status_code == 403
    assert _register(client, str(tiny_model_dir)).status_code == 403
    assert not BaseModel.objects.exists()


def test_a_model_still_downloading_cannot_be_launched(admin_client, db):
    project = voted_compare_project(4, name="Waits for its model")
    model = BaseModel.objects.create(name="Coming", path="/m/coming", hub_id="a/coming", status="downloading")

    with pytest.raises(services.LaunchError, match="'Coming' is still downloading; see the models page"):
        services.run_launch(project=project, base_model_id=model.pk, method="dpo", settings_data={}, created_by=admin_client.user)
    assert "Coming" not in admin_client.get(f"/projects/{project.pk}/runs/new/").content.decode()


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
@pytest.mark.postgres
@pytest.mark.timeout(240)
def test_a_hub_id_is_downloaded_by_a_worker_and_offline_it_fails_with_the_reason(admin_client):
    purge_queues("default", "gpu")

    response = _register(admin_client, "HuggingFaceTB/SmolLM2-360M-Instruct", name="SmolLM2 360M")

    assert response.status_code == 302
    model = BaseModel.objects.get(name="SmolLM2 360M")
    assert (model.status, model.hub_id) == ("downloading", "HuggingFaceTB/SmolLM2-360M-Instruct")
    assert Path(model.path).name == "HuggingFaceTB--SmolLM2-360M-Instruct"
    # The test workers run with HF_HUB_OFFLINE=1, as a worker without internet would.
    with celery_worker("registry"):
        wait_for(lambda: BaseModel.objects.get(pk=model.pk).status != "downloading", timeout=120, what="the download")
    model.refresh_from_db()
    assert model.status == "failed"
    assert model.error.startswith("The worker could not download HuggingFaceTB/SmolLM2-360M-Instruct from the Hugging Face Hub")
    assert "register its folder instead" in model.error
    assert "could not download HuggingFaceTB/SmolLM2-360M-Instruct" in admin_client.get("/models/").content.decode()
