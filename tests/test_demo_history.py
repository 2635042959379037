"""The shipped demo history (labeling/demo/history.json, made by scripts/make_demo_history.py) loads into a project
a newcomer can tune on at once, and the home page walks an admin through label, tune, compare, label again.

The browser test of the whole newcomer path (Launch with the defaults, the run, the review) is
tests/browser/test_newcomer_in_chromium.py."""
from __future__ import annotations

import json
import re

import pytest
from django.core.management import call_command

from labeling.agreement import krippendorff_alpha_nominal
from labeling.management.commands.load_demo import DEFAULT_PASSWORD, DEMO_DIR, HISTORY_NAME
from labeling.models import PairTask, PairVote, Project, TaskStatus
from tests.factories import make_run
from training.data_needs import ROWS_TO_TELL
from training.services import dataset_preview

pytestmark = pytest.mark.django_db

HISTORY = json.loads((DEMO_DIR / "history.json").read_text())


def _load() -> Project:
    call_command("load_demo", stdout=open("/dev/null", "w"))  # noqa: PTH123, SIM115
    return Project.objects.get(name=HISTORY_NAME)


def test_the_history_loads_once_is_enough_for_a_run_and_shows_agreement():
    project = _load()
    votes = sum(len(pair["votes"]) for pair in HISTORY["pairs"])
    assert project.prompts.count() == len(HISTORY["prompts"])
    assert project.prompts.filter(split="heldout").count() == sum(p["split"] == "heldout" for p in HISTORY["prompts"]) >= 20
    assert PairTask.objects.filter(project=project).count() == len(HISTORY["pairs"]) >= 100
    assert PairVote.objects.filter(task__project=project).count() == votes >= 200
    # Every pair got its two votes, from three different annotators across the project.
    assert not PairTask.objects.filter(project=project).exclude(status=TaskStatus.COMPLETE).exists()
    assert PairVote.objects.filter(task__project=project).values("annotator").distinct().count() == 3
    _load()
    assert PairVote.objects.filter(task__project=project).count() == votes
    assert Project.objects.filter(name=HISTORY_NAME).count() == 1

    # Enough for a run whose validation can tell, and four in five decided judgements reach it.
    preview = dataset_preview(project=project, method="dpo")
    summary = preview.summary
    no_preference = summary["ties"] + summary["both_bad"] + summary["disagreements"]
    decided = summary["considered"] - no_preference
    assert len(preview.rows) >= ROWS_TO_TELL / 0.2, "a fifth for validation must reach what a verdict can resolve"
    assert len(preview.rows) / decided >= 0.8, summary
    assert summary["heldout"] == 0, "the history has no votes on held-out prompts: those are for the review"

    # The annotators agree well, but not perfectly: the dashboard has an agreement to show.
    units: dict[int, list[str]] = {}
    for task_id, choice in PairVote.objects.filter(task__project=project).values_list("task_id", "choice"):
        units.setdefault(task_id, []).append(choice)
    alpha = krippendorff_alpha_nominal(units)
    assert 0.4 < alpha < 0.95, alpha


def test_the_home_page_walks_an_admin_through_the_loop_and_annotators_do_not_see_it(client):
    project = _load()
    assert client.login(username="admin", password=DEFAULT_PASSWORD)
    page = client.get("/").content.decode()
    walkthrough = page[page.index('data-testid="walkthrough"'):]
    assert HISTORY_NAME in walkthrough[:400]
    states = dict(re.findall(r'data-testid="loop-step-(\d)" data-state="(\w+)"', walkthrough))
    assert states == {"1": "done", "2": "next", "3": "later", "4": "later"}
    assert f'href="/projects/{project.pk}/runs/new/"' in walkthrough
    # Once a run succeeded, comparing is next, and the button opens its review.
    run = make_run(project, status="succeeded")
    page = client.get("/").content.decode()
    states = dict(re.findall(r'data-testid="loop-step-(\d)" data-state="(\w+)"', page))
    assert states == {"1": "done", "2": "done", "3": "next", "4": "later"}
    assert f'href="/runs/{run.pk}/review/"' in page
    # Another project can be walked through instead.
    other = Project.objects.get(name="Demo: thumbs")
    page = client.get(f"/?loop={other.pk}").content.decode()
    assert re.search(r"The loop for <a[^>]*>Demo: thumbs</a>", page)
    assert dict(re.findall(r'data-testid="loop-step-(\d)" data-state="(\w+)"', page))["1"] == "next"

    # Annotators see their projects, without the admin's walkthrough.
    client.logout()
    assert client.login(username="annotator1", password=DEFAULT_PASSWORD)
    page = client.get("/").content.decode()
    assert 'data-testid="walkthrough"' not in page
    assert HISTORY_NAME in page


def test_the_base_models_half_of_the_first_review_ships_with_the_history(tiny_model_dir):
    # Given the bundled model registered (as `make run` does before loading the demo)
    from labeling.models import Completion
    from training.models import BaseModel
    from training.review.forms import GenerationForm
    from training.review.generation import generation_job_claim, generation_job_create, generation_job_execute
    from training.review.versions import base_version_get_or_create

    base = base_version_get_or_create(base_model=BaseModel.objects.create(name="bundled", path=str(tiny_model_dir)))
    project = _load()
    heldout = project.prompts.filter(split="heldout").count()
    form = GenerationForm(heldout_prompts=heldout)
    defaults = {name: form.fields[name].initial for name in ("max_new_tokens", "temperature", "top_p", "seed", "n")}

    # When the review form's defaults are submitted for the base model's outputs
    job = generation_job_create(project=project, versions=[base], settings_data=defaults, split="heldout", enqueue=False)
    assert generation_job_claim(job_id=job.pk, worker="test")
    job = generation_job_execute(job_id=job.pk)

    # Then every one of them is already there, made by the bundled model with exactly those settings
    stored = Completion.objects.filter(prompt__project=project, prompt__split="heldout", model_version=base)
    assert stored.count() == len(HISTORY["heldout_base_outputs"]) == heldout * defaults["n"] == 90
    assert (job.status, job.completions_created, job.completions_skipped) == ("succeeded", 0, 90), job.error
    assert {output["generation_settings"]["max_new_tokens"] for output in HISTORY["heldout_base_outputs"]} == {384}
