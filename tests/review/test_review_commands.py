"""The review management commands: generate (queued or inline), create battles, print win rates."""
from __future__ import annotations

import json
from io import StringIO
from unittest import mock

import pytest
from django.core.management import CommandError, call_command

from labeling.models import Completion, PairTask
from tests.factories import UserFactory, make_pair_vote
from tests.review.conftest import MATCHED, review_setup
from training.models import GenerationJob

pytestmark = pytest.mark.django_db


def _run(*args, **kwargs) -> str:
    out = StringIO()
    call_command(*args, stdout=out, **kwargs)
    return out.getvalue()


def test_generate_completions_queues_a_job_for_a_run(setup, django_capture_on_commit_callbacks):
    with mock.patch("webapp.celery.app.send_task") as delay, django_capture_on_commit_callbacks(execute=True):
        out = _run("generate_completions", "--run", str(setup.run.pk), "--max-new-tokens", "8", "--temperature", "0")
    job = GenerationJob.objects.get()
    delay.assert_called_once()
    assert delay.call_args.kwargs["args"] == [job.pk]
    assert f"Queued generation job {job.pk}: 4 prompts × 2 versions" in out


def test_generate_completions_inline_makes_candidates(tiny_model_dir, tiny_adapter_dir):
    s = review_setup(prompts=2, base_path=str(tiny_model_dir), adapter_path=str(tiny_adapter_dir), with_outputs=False)
    out = _run(
        "generate_completions", "--project", str(s.project.pk), "--versions", f"{s.base.pk},{s.tuned.pk}",
        "--purpose", "candidates", "--max-new-tokens", "4", "--temperature", "0", "--inline",
    )
    assert "succeeded: 4 completions created, 0 already there" in out
    assert Completion.objects.filter(source="generated").count() == 4
    assert PairTask.objects.filter(purpose="label").count() == GenerationJob.objects.get().tasks_created


def test_generate_completions_explains_bad_input(setup):
    with pytest.raises(CommandError, match="Give --run"):
        _run("generate_completions")
    with pytest.raises(CommandError, match="temperature"):
        _run("generate_completions", "--run", str(setup.run.pk), "--temperature", "5")


def test_create_battles_and_win_rates(setup):
    out = _run("create_battles", "--run", str(setup.run.pk), "--seed", "1")
    assert "Created 4 battles" in out and "greedy (temperature 0), top-p 0.9, up to 16 tokens, from seed 0" in out
    assert all(t.matched_settings == MATCHED for t in PairTask.objects.filter(purpose="review"))
    annotator = UserFactory()
    for task in PairTask.objects.filter(purpose="review").select_related("completion_a"):
        make_pair_vote(task, annotator, "a" if task.completion_a.model_version_id == setup.tuned.pk else "b")
    out = _run("win_rates", "--project", str(setup.project.pk), "--rounds", "20")
    assert ("paired 100.0% (95% CI 100.0–100.0%, sign test p = 0.12) over 4 prompts and 4 votes; win 4 tie 0 loss 0  "
            "length change +16.0 chars") in out
    assert "vote by vote 1.000 (95% CI 0.510–1.000)" in out
    assert "length-controlled 100.0%" in out
    assert "1. secret-tuned" in out and "2. test-base (base)" in out
    again = _run("create_battles", "--project", str(setup.project.pk), "--versions", f"{setup.base.pk},{setup.tuned.pk}")
    assert "Created 0 battles" in again


def test_create_battles_takes_the_comparisons_settings(setup):
    other = {**MATCHED, "temperature": 0.7}
    with pytest.raises(CommandError, match="made with temperature 0.7"):
        _run("create_battles", "--run", str(setup.run.pk), "--generation-settings", json.dumps(other))
    with pytest.raises(CommandError, match="JSON object"):
        _run("create_battles", "--run", str(setup.run.pk), "--generation-settings", "[1]")
    out = _run("create_battles", "--run", str(setup.run.pk), "--generation-settings", json.dumps(MATCHED))
    assert "Created 4 battles" in out
