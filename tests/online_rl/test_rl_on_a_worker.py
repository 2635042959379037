"""GRPO and RLOO through the form and a real Celery worker on the tiny model: the reward is the project's reward
model, the KL coefficient reaches TRL, the watch records what the policy wrote, and the version is like any other."""
from __future__ import annotations

import pytest

from tests.online_rl.conftest import project_with_prompts, reward_run
from tests.online_rl.test_launch import RL_FORM
from tests.worker_process import celery_worker, purge_queues, wait_for
from training.models import RunMetric, TuningRun

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker, pytest.mark.postgres, pytest.mark.timeout(600)]

TINY_RL = {"max_steps": "3", "num_generations": "2", "per_device_batch_size": "4", "max_completion_length": "12",
           "learning_rate": "0.001", "beta": "0.2"}


@pytest.fixture(scope="module")
def rl_worker(django_db_setup):
    purge_queues("default", "gpu")
    with celery_worker("rl") as process:
        yield process


def _train(client, project, base, method: str) -> TuningRun:
    response = client.post(f"/projects/{project.pk}/runs/new/",
                           {**RL_FORM, **TINY_RL, "method": method, "base_model": str(base.pk)})
    assert response.status_code == 302, response.content.decode()[-1500:]
    run = TuningRun.objects.get(project=project, method=method)
    wait_for(lambda: TuningRun.objects.filter(pk=run.pk, status__in=["succeeded", "failed", "cancelled"]).exists(),
             timeout=420, what=f"the {method} run to finish")
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    return run


def _train_metrics(run: TuningRun) -> list[dict]:
    return list(RunMetric.objects.filter(run=run, split="train").order_by("step").values_list("values", flat=True))


def test_a_grpo_run_trains_against_the_projects_reward_model_on_a_worker(admin_client, tiny_base, tmp_path, rl_worker):
    from training.trainer.reward import load_reward_model, score_conversations

    project = project_with_prompts(8, heldout=2, name="GRPO e2e")
    scorer_run = reward_run(project, tiny_base, tmp_path)
    run = _train(admin_client, project, tiny_base, "grpo")

    assert (run.step, run.total_steps, run.reward_model) == (3, 3, scorer_run)
    steps = _train_metrics(run)
    assert len(steps) == 3 and all({"reward", "reward_std", "completions/mean_length", "completions/clipped_ratio"} <= s.keys() for s in steps)
    # TRL logs the KL only when its beta is not 0: the leash reached the trainer.
    assert all("kl" in s for s in steps) and run.settings["beta"] == 0.2
    evals = RunMetric.objects.filter(run=run, split="eval").order_by("step")
    assert [e.step for e in evals][0] == 0 and {"eval_reward", "eval_mean_words", "eval_degenerate_share"} <= evals[0].values.keys()

    watch = run.outcome["watch"]
    assert watch["base"]["step"] == 0 and [p["step"] for p in watch["points"]][-1] == 3
    assert run.outcome["kept_step"] == watch["kept_step"] and watch["kept_reason"]
    # The watch's scores are the reward model's: score one answer again, independently.
    sample = watch["points"][-1]["samples"][0]
    model, tokenizer = load_reward_model(watch["reward_adapter"], tiny_base.path)
    conversation = [{"role": "user", "content": sample["prompt"]}, {"role": "assistant", "content": sample["answer"]}]
    assert score_conversations(model, tokenizer, [conversation])[0] == pytest.approx(sample["reward"], abs=1e-4)

    version = run.model_version
    assert version is not None and (run.attempt_dir() / "adapter" / "adapter_model.safetensors").is_file()
    page = admin_client.get(f"/runs/{run.pk}/").content.decode()
    assert 'data-testid="rl-watch"' in page and "Reward-hacking watch" in page and 'data-testid="run-verdict"' in page
    assert "Reward-model score: the mean (and spread)" in page and "Share of answers cut off" in page
    # An RL version is reviewed like any other.
    assert admin_client.get(f"/runs/{run.pk}/review/").status_code == 200
    assert admin_client.get(f"/projects/{project.pk}/leaderboard/").status_code == 200


def test_an_rloo_run_against_a_reward_model_that_scores_everything_zero_logs_zero_reward(admin_client, tiny_base, tmp_path, rl_worker):
    project = project_with_prompts(8, heldout=2, name="RLOO e2e")
    reward_run(project, tiny_base, tmp_path, zero_head=True)
    run = _train(admin_client, project, tiny_base, "rloo")
    steps = _train_metrics(run)
    assert len(steps) == 3
    assert all(s["reward"] == 0.0 and s["reward_std"] == 0.0 for s in steps), steps
    assert all(p["reward_mean"] == 0.0 for p in run.outcome["watch"]["points"])
