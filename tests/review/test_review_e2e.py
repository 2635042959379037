"""End to end on real parts: PostgreSQL, Redis, a Celery worker process and a model on disk.

A tuned version and its base generate outputs for the held-out prompts on a gpu-queue worker, which measures how
far the tuned model moved (identical share, per-token KL over one loaded base) and battles the matched outputs;
an annotator votes through the compare screen, and the results page shows the win rate and interval that the
known votes give.

This is wiring, not learning, so it runs on the tiny random-weight model (the bundled model's architecture and
tokenizer) with a random adapter that moves its greedy answers; `tests/training/test_run_e2e.py` trains the real
bundled model end to end, and `tests/trainer/test_alignment_direction.py` checks what a real adapter learns.
"""
from __future__ import annotations

import re
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command

from labeling.models import Completion, PairTask, Prompt
from tests.factories import PASSWORD, AdminFactory, ProjectFactory, UserFactory, make_run
from tests.worker_process import celery_worker, purge_queues, wait_for
from training.models import BaseModel, Battle, GenerationJob, ModelVersion, TuningRun
from training.review.results import battle_results
from training.trainer.generation_backends import generation_dtype, resolve_backend

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.worker,
    pytest.mark.postgres,
    pytest.mark.timeout(600),
]

HELDOUT = [
    "Name a fruit.", "Say hello in French.", "What colour is the sky?", "Count to three.", "Name an animal.",
    "Describe the sea.", "Write a word about the moon.",
]
# Who wins each battle, in the order the compare screen serves them: 2 wins, 1 tie, 1 loss for the tuned model.
# An adapter may leave some greedy answers unchanged, and identical answers are never battled, so there are more
# prompts than votes; the first four battles served get these votes.
OUTCOMES = ["tuned", "tuned", "tie", "base"]


def _vote_through_the_compare_screen(client, project, tuned: ModelVersion, annotator) -> list[str]:
    """Work the queue as the annotator, picking the side that OUTCOMES says for each card served."""
    served = []
    for outcome in OUTCOMES:
        html = client.get(f"/projects/{project.pk}/").content.decode()
        task_id = int(re.search(r'data-task="(\d+)"', html).group(1))
        key = re.search(r'name="client_key" value="([^"]+)"', html).group(1)
        task = PairTask.objects.select_related("completion_a").get(pk=task_id)
        assert task.purpose == "review"
        a_side = task.a_side_for(annotator.pk)
        tuned_side = a_side if task.completion_a.model_version_id == tuned.pk else ("right" if a_side == "left" else "left")
        base_side = "right" if tuned_side == "left" else "left"
        pick = {"tuned": tuned_side, "base": base_side, "tie": "tie"}[outcome]
        response = client.post(f"/projects/{project.pk}/pairs/{task_id}/vote/", {"pick": pick, "client_key": key})
        assert response.status_code == 302
        served.append(task_id)
    return served


def test_base_and_tuned_outputs_battles_and_the_win_rate(client, tiny_model_dir, tiny_adapter_dir):
    project = ProjectFactory(name="Review e2e", overlap=1)
    run = make_run(project, status="succeeded", base_path=str(tiny_model_dir))
    BaseModel.objects.filter(pk=run.base_model_id).update(path=str(tiny_model_dir), name="tiny-random")
    tuned = ModelVersion.objects.create(name="e2e tuned (run)", base_model_id=run.base_model_id,
                                        adapter_path=str(tiny_adapter_dir))
    TuningRun.objects.filter(pk=run.pk).update(model_version=tuned)
    for text in HELDOUT:
        Prompt.objects.create(project=project, messages=[{"role": "user", "content": text}], split="heldout")
    Prompt.objects.create(project=project, messages=[{"role": "user", "content": "A training prompt."}], split="train")

    admin = AdminFactory()
    assert client.login(username=admin.username, password=PASSWORD)
    purge_queues("gpu")
    response = client.post(
        f"/runs/{run.pk}/review/generate/",
        {"n": 1, "max_new_tokens": 16, "temperature": 0, "top_p": 0.9, "seed": 0, "create_review_tasks": "on"},
    )
    assert response.status_code == 302
    job = GenerationJob.objects.get(project=project)
    assert job.status == "queued"
    with celery_worker("review-e2e", queues="gpu"):
        wait_for(lambda: GenerationJob.objects.filter(pk=job.pk, status__in=["succeeded", "failed"]).exists(),
                 timeout=300, what="the generation job to finish")
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    assert job.completions_created == 2 * len(HELDOUT)
    outputs = Completion.objects.filter(prompt__project=project, source="generated")
    assert {c.prompt.split for c in outputs} == {"heldout"}
    base = ModelVersion.objects.get(base_model_id=run.base_model_id, adapter_path="")
    assert {c.model_version_id for c in outputs} == {base.pk, tuned.pk}
    engine = resolve_backend(settings.PREFTUNE_GENERATION_BACKEND)  # the worker's engine: transformers without CUDA
    recorded = {"temperature": 0.0, "top_p": 0.9, "max_new_tokens": 16, "seed": 0, "sample": 0, "backend": engine,
                "dtype": generation_dtype(engine)}
    assert all(c.generation_settings == recorded for c in outputs)
    # One output for every prompt from each version (the tiny model's base answers are often empty: that is fine
    # here; tests/trainer/test_generation.py checks that the real model answers).
    assert len({(c.prompt_id, c.model_version_id) for c in outputs}) == 2 * len(HELDOUT)
    assert {c.finish_reason for c in outputs} <= {"stop", "length"}
    # The worker measured the move before battling, and battled only the pairs that differ.
    texts = {(c.prompt_id, c.model_version_id): c.text for c in outputs}
    heldout_ids = Prompt.objects.filter(project=project, split="heldout").values_list("pk", flat=True)
    identical = sum(texts[(p, base.pk)].strip() == texts[(p, tuned.pk)].strip() for p in heldout_ids)
    assert (job.movement["pairs"], job.movement["identical"]) == (len(HELDOUT), identical)
    assert job.movement["kl_per_token"] > 0 and job.movement["tokens"] > len(HELDOUT)
    assert job.tasks_created == len(HELDOUT) - identical >= len(OUTCOMES), "the adapter must move most answers"
    assert Battle.objects.get(project=project).identical_skipped == identical
    tasks = PairTask.objects.filter(project=project, purpose="review").select_related("completion_a", "completion_b")
    assert all(t.matched_settings == {"temperature": 0.0, "top_p": 0.9, "max_new_tokens": 16, "seed": 0} for t in tasks)
    assert all(t.completion_a.text.strip() != t.completion_b.text.strip() for t in tasks)

    client.logout()
    annotator = UserFactory(username="e2e-voter")
    project.members.add(annotator)
    assert client.login(username=annotator.username, password=PASSWORD)
    served = _vote_through_the_compare_screen(client, project, tuned, annotator)
    assert len(set(served)) == 4
    assert PairTask.objects.filter(project=project, purpose="review", status="open").count() == job.tasks_created - 4

    results = battle_results(project=project, tuned=tuned, base=base)
    assert (results.wins, results.ties, results.losses) == (2, 1, 1)
    # (2 + 1/2) / 4 with a Wilson interval, worked by hand in tests/trainer/test_review_stats.py.
    assert results.rate == pytest.approx(0.625)
    assert (results.low, results.high) == pytest.approx((0.2194, 0.9081), abs=1e-4)
    client.logout()
    assert client.login(username=admin.username, password=PASSWORD)
    html = client.get(f"/runs/{run.pk}/battles/").content.decode()
    assert "62.5%" in html and "95% CI 21.9–90.8%" in html and "2 / 1 / 1" in html
    assert "Paired win rate" in html and "Length-controlled win rate" in html
    review = client.get(f"/runs/{run.pk}/review/").content.decode()
    assert f"{100 * identical / len(HELDOUT):.1f}% of {len(HELDOUT)} matched outputs are identical" in review.replace("</b>", "").replace("<b>", "")
    assert ('data-testid="not-moved"' in review) == (2 * identical >= len(HELDOUT))

    out = StringIO()
    call_command("win_rates", project=project.pk, stdout=out)
    assert "win 2 tie 1 loss 1" in out.getvalue() and "vote by vote 0.625 (95% CI 0.219–0.908)" in out.getvalue()
