"""End to end on real parts: PostgreSQL, Redis, a Celery worker process, a model on disk.

votes → a run launched through the dashboard view → the worker trains a few steps → the run succeeds with
metric rows and a saved adapter that changes the model.

One DPO run uses the real bundled model (the end-to-end run the product promises); every other method is wiring
(form → snapshot → worker → child → metrics → version), proved on the tiny random-weight model with the bundled
model's architecture and tokenizer. Those runs share one worker process for the module; the data-parallel test
starts its own, since what it checks first is that no worker takes two-GPU runs yet.
"""
from __future__ import annotations

import pytest

from tests.factories import PASSWORD, AdminFactory
from tests.training.conftest import rated_project, voted_compare_project
from tests.worker_process import celery_worker, purge_queues, wait_for
from training.models import BaseModel, RunMetric, TuningRun

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.worker,
    pytest.mark.postgres,
    pytest.mark.timeout(900),
]

SMALL_RUN = {
    "loss_type": "",
    "beta": "0.1",
    "learning_rate": "0.001",
    "num_train_epochs": "1",
    "max_steps": "3",
    "per_device_batch_size": "2",
    "gradient_accumulation_steps": "1",
    "max_length": "96",
    "validation_fraction": "0.25",
    "seed": "3",
    "lora_r": "8",
    "lora_alpha": "16",
    "lora_dropout": "0.0",
    "lora_target_modules": "q_proj,v_proj",
    "include_review": "on",
}


@pytest.fixture
def real_base(bundled_model_dir) -> BaseModel:
    return BaseModel.objects.create(name="SmolLM2-135M-Instruct", path=str(bundled_model_dir))


@pytest.fixture(scope="module")
def module_worker(django_db_setup):
    """One worker on the default and gpu queues for the whole module: starting one costs seconds, and a run
    leaves nothing behind in it (each run trains in a child process of its own)."""
    purge_queues("default", "gpu")
    with celery_worker("e2e") as process:
        yield process


@pytest.fixture
def logged_in_admin(client):
    admin = AdminFactory()
    assert client.login(username=admin.username, password=PASSWORD)
    return client


def _launch_and_train(client, project, base, method: str, worker, **changes) -> TuningRun:
    assert worker.poll() is None, "the module's worker is still up"
    response = client.post(
        f"/projects/{project.pk}/runs/new/", {**SMALL_RUN, "method": method, "base_model": str(base.pk), **changes}
    )
    assert response.status_code == 302, response.content.decode()[-2000:]
    run = TuningRun.objects.filter(project=project).latest("pk")
    assert run.method == method
    wait_for(
        lambda: TuningRun.objects.filter(pk=run.pk, status__in=["succeeded", "failed", "cancelled"]).exists(),
        timeout=480,
        what=f"the {method} run to finish",
    )
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    return run


def _assert_adapter_was_trained(adapter_dir: str) -> None:
    """LoRA's B matrices start at zero, so an adapter with a non-zero one changes the model: no reload needed."""
    from pathlib import Path

    from safetensors.torch import load_file

    weights = load_file(str(Path(adapter_dir) / "adapter_model.safetensors"))
    lora_b = [tensor for name, tensor in weights.items() if "lora_B" in name]
    assert lora_b and max(float(t.abs().max()) for t in lora_b) > 0, "every LoRA B matrix is still zero"


def _assert_adapter_changes_logprobs(run: TuningRun, base: BaseModel) -> None:
    """Loads the model again: only for the tiny model, where that takes well under a second."""
    from training.trainer.generation import adapter_disabled, load_for_generation, sequence_logprob

    row = run.snapshot.rows[0]
    completion = (row.get("chosen") or row["completion"])[0]["content"]
    model, tokenizer = load_for_generation(base.path, run.model_version.adapter_path)
    tuned = sequence_logprob(model, tokenizer, row["prompt"], completion)
    with adapter_disabled(model):
        original = sequence_logprob(model, tokenizer, row["prompt"], completion)
    assert abs(tuned - original) > 1e-3, (tuned, original)


@pytest.mark.slow
def test_a_dpo_run_trains_on_a_real_worker_and_saves_an_adapter(logged_in_admin, real_base, module_worker):
    project = voted_compare_project(8, name="E2E DPO")

    run = _launch_and_train(logged_in_admin, project, real_base, "dpo", module_worker)

    assert (run.step, run.total_steps, run.attempt) == (3, 3, 1)
    assert run.model_version is not None and run.model_version.base_model == real_base
    train_keys = set().union(*RunMetric.objects.filter(run=run, split="train").values_list("values", flat=True))
    assert {"loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen"} <= train_keys
    assert RunMetric.objects.filter(run=run, split="eval").exists(), "validation metrics on the held-out split"
    page = logged_in_admin.get(f"/runs/{run.pk}/").content.decode()
    assert "Succeeded" in page and run.model_version.name in page
    _assert_adapter_was_trained(run.model_version.adapter_path)


def test_a_kto_run_trains_from_thumbs(logged_in_admin, tiny_base, module_worker):
    project = rated_project(up=5, down=5, name="E2E KTO")

    run = _launch_and_train(logged_in_admin, project, tiny_base, "kto", module_worker, validation_fraction="0.2",
                            max_steps="2")

    assert run.step == 2, (run.settings, list(RunMetric.objects.filter(run=run).values_list("split", "step")))
    train_keys = set().union(*RunMetric.objects.filter(run=run, split="train").values_list("values", flat=True))
    assert {"loss", "rewards/chosen", "kl"} <= train_keys
    _assert_adapter_changes_logprobs(run, tiny_base)


def _train_losses(run: TuningRun) -> dict[int, float]:
    return {m.step: m.values["loss"] for m in RunMetric.objects.filter(run=run, split="train")}


def test_two_data_parallel_processes_through_the_form_match_one_process(logged_in_admin, tiny_base):
    """Two CPU processes (gloo) on queue gpu2 against one process on gpu, same global batch of 4 rows a step."""
    project = voted_compare_project(12, name="E2E data parallel")
    same = {"max_steps": "3", "max_length": "96", "validation_fraction": "0.0", "sft_weight": "0",
            "precompute_ref_log_probs": "", "learning_rate": "0.001"}
    purge_queues("default", "gpu", "gpu2")
    client = logged_in_admin
    for gpus, batch in (("1", "4"), ("2", "2")):
        response = client.post(
            f"/projects/{project.pk}/runs/new/",
            {**SMALL_RUN, **same, "method": "dpo", "base_model": str(tiny_base.pk), "num_processes": gpus,
             "per_device_batch_size": batch, "name": f"{gpus} process(es)"},
        )
        assert response.status_code == 302, response.content.decode()[-2000:]
    one, two = TuningRun.objects.filter(project=project).order_by("pk")
    assert two.settings["num_processes"] == 2
    assert "Waiting for a worker with 2 GPUs" in client.get(f"/runs/{two.pk}/").content.decode()

    with celery_worker("e2e-ddp", queues="default,gpu,gpu2"):
        for run in (one, two):
            wait_for(
                lambda run=run: TuningRun.objects.filter(pk=run.pk, status__in=["succeeded", "failed"]).exists(),
                timeout=480, what=f"{run.name} to finish",
            )
    one.refresh_from_db()
    two.refresh_from_db()
    assert (one.status, two.status) == ("succeeded", "succeeded"), (one.error, two.error)
    losses_one, losses_two = _train_losses(one), _train_losses(two)
    assert sorted(losses_one) == sorted(losses_two) == [1, 2, 3]
    assert max(abs(losses_one[s] - losses_two[s]) for s in losses_one) < 1e-3, (losses_one, losses_two)
    _assert_adapter_changes_logprobs(two, tiny_base)


@pytest.mark.parametrize(
    ("method", "own_metrics", "chart"),
    [
        ("simpo", {"nll_loss"}, "NLL of the chosen answers"),
        ("cpo", {"nll_loss"}, "NLL of the chosen answers"),
        ("orpo", {"log_odds_ratio", "log_odds_chosen", "nll_loss"}, "Log odds ratio (ORPO)"),
    ],
)
def test_a_reference_free_method_trains_on_a_real_worker(logged_in_admin, tiny_base, module_worker, method, own_metrics,
                                                         chart):
    project = voted_compare_project(8, name=f"E2E {method}")

    run = _launch_and_train(logged_in_admin, project, tiny_base, method, module_worker)

    assert (run.method, run.step, run.total_steps) == (method, 3, 3)
    train_keys = set().union(*RunMetric.objects.filter(run=run, split="train").values_list("values", flat=True))
    assert {"loss", "rewards/accuracies", "rewards/margins"} | own_metrics <= train_keys
    eval_keys = set().union(*RunMetric.objects.filter(run=run, split="eval").values_list("values", flat=True))
    assert "rewards/accuracies" in {key.removeprefix("eval_") for key in eval_keys}
    page = logged_in_admin.get(f"/runs/{run.pk}/").content.decode()
    assert "Succeeded" in page and chart in page
    _assert_adapter_changes_logprobs(run, tiny_base)


def test_sft_then_dpo_is_a_chain_of_two_runs_on_a_real_worker(logged_in_admin, tiny_base, module_worker):
    import json
    from pathlib import Path

    project = voted_compare_project(8, name="E2E chain")
    sft = _launch_and_train(logged_in_admin, project, tiny_base, "sft", module_worker)
    sft_keys = set().union(*RunMetric.objects.filter(run=sft, split="train").values_list("values", flat=True))
    assert {"loss", "mean_token_accuracy"} <= sft_keys
    assert "Answers to imitate (SFT): 8 rows" in logged_in_admin.get(f"/projects/{project.pk}/runs/new/").content.decode()

    dpo = _launch_and_train(logged_in_admin, project, tiny_base, "dpo", module_worker,
                            start_from=str(sft.model_version.pk))

    assert dpo.start_from == sft.model_version and dpo.model_version.parent == sft.model_version
    assert dpo.settings["init_adapter"] == sft.model_version.adapter_path
    assert dpo.snapshot.lineage["started_from"] == {"version": sft.model_version.name, "run": sft.pk, "method": "SFT"}
    page = logged_in_admin.get(f"/runs/{dpo.pk}/").content.decode()
    assert sft.model_version.name in page
    # One adapter holds both updates: rank 8 (SFT) + 8 (DPO) over the original base.
    config = json.loads(Path(dpo.model_version.adapter_path, "adapter_config.json").read_text())
    assert config["r"] == 16
    _assert_adapter_changes_logprobs(dpo, tiny_base)


def test_a_reward_model_trains_on_a_real_worker_then_scores_the_projects_answers(logged_in_admin, tiny_base,
                                                                                 module_worker):
    from labeling.models import Completion
    from training.models import GenerationJob, RewardScore

    project = voted_compare_project(8, name="E2E reward")
    response = logged_in_admin.post(
        f"/projects/{project.pk}/runs/new/", {**SMALL_RUN, "method": "reward", "beta": "", "base_model": str(tiny_base.pk)}
    )
    assert response.status_code == 302, response.content.decode()[-2000:]
    run = TuningRun.objects.get(project=project)
    # Its success queues a job that scores every answer of the project: the same worker takes it next.
    wait_for(lambda: GenerationJob.objects.filter(project=project, purpose="scores", status__in=["succeeded", "failed"]).exists()
             or TuningRun.objects.filter(pk=run.pk, status__in=["failed", "cancelled"]).exists(),
             timeout=480, what="the reward run and its scoring job")
    run.refresh_from_db()

    assert run.status == "succeeded", run.error
    assert (run.method, run.step, run.total_steps, run.model_version) == ("reward", 3, 3, None)
    train_keys = set().union(*RunMetric.objects.filter(run=run, split="train").values_list("values", flat=True))
    assert {"loss", "accuracy", "margin", "mean_reward", "min_reward", "max_reward"} <= train_keys
    held_out = run.outcome["reward_model"]
    assert held_out["pairs"] == run.validation_rows == 2 and held_out["interval"] is not None
    page = logged_in_admin.get(f"/runs/{run.pk}/").content.decode()
    assert 'data-testid="reward-heldout"' in page and "held-out pairwise accuracy" in page
    assert "Reward model scores (lowest, mean, highest)" in page and "Review</a>" not in page
    job = GenerationJob.objects.get(project=project, purpose="scores", run=run)
    assert job.status == "succeeded", job.error
    answers = Completion.objects.filter(prompt__project=project).count()
    assert RewardScore.objects.filter(reward_run=run).count() == answers == job.completions_created
    assert len(set(RewardScore.objects.filter(reward_run=run).values_list("score", flat=True))) > 1

    from safetensors.torch import load_file

    adapter = run.attempt_dir() / "adapter"
    _assert_adapter_was_trained(str(adapter))
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    assert any("score" in name for name in weights), "the score head is saved with the adapter"
