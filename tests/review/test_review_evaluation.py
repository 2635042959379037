"""What a review job does once its outputs are in (training.review.evaluation), on the tiny random model: did the
tuned model move (identical share, per-token KL, stored on the job), blind battles per sample in a compare
project, held-out thumbs in a rate project, and the pages that show them."""
from __future__ import annotations

import re

import pytest

from labeling.models import Completion, PairTask, RateTask
from tests.factories import PASSWORD, UserFactory, make_rating
from tests.review.conftest import review_setup
from training.models import GenerationJob
from training.review import generation as review_generation
from training.review import matched_outputs as review_matched_outputs
from training.review import results as review_results
from training.review.evaluation import heldout_thumbs_create
from training.trainer.generation_settings import GenerationSettings

pytestmark = pytest.mark.django_db
SAMPLED = {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 6, "seed": 3, "n": 2}


@pytest.fixture(scope="module")
def fresh_adapter_dir(tiny_model_dir, tmp_path_factory):
    """A LoRA adapter as PEFT initialises it (B = 0): a run that did not move at all."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dest = tmp_path_factory.mktemp("fresh-adapter")
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")).save_pretrained(str(dest))
    AutoTokenizer.from_pretrained(str(tiny_model_dir)).save_pretrained(str(dest))
    return dest


def _run_review_job(s, settings: dict = SAMPLED, *, create_review_tasks: bool = True) -> GenerationJob:  # noqa: ANN001
    job = review_generation.generation_job_create(
        project=s.project, versions=[s.base, s.tuned], settings_data=settings, run=s.run,
        create_review_tasks=create_review_tasks, enqueue=False,
    )
    assert review_generation.generation_job_claim(job_id=job.pk, worker="test")
    return review_generation.generation_job_execute(job_id=job.pk)


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("&#x27;", "'")


def test_a_review_job_measures_movement_and_battles_each_sample(tiny_model_dir, tiny_adapter_dir):
    s = review_setup(prompts=3, base_path=str(tiny_model_dir), adapter_path=str(tiny_adapter_dir), with_outputs=False)
    job = _run_review_job(s)
    assert job.status == "succeeded", job.error
    assert job.completions_created == 12
    movement = job.movement
    assert movement["pairs"] == 6 and movement["tokens"] > 6
    assert movement["kl_per_token"] > 1e-3, "a random adapter at scale 20 moves the model a lot"
    pairs = review_matched_outputs.matched_pairs(project=s.project, first=s.tuned, second=s.base, settings={k: v for k, v in SAMPLED.items() if k != "n"})
    assert movement["identical"] == sum(p.identical for p in pairs) and movement["identical_share"] == movement["identical"] / 6
    tasks = list(PairTask.objects.filter(purpose="review").select_related("completion_a", "completion_b"))
    assert job.tasks_created == len(tasks) == 6 - movement["identical"]
    assert {t.completion_a.generation_settings["sample"] for t in tasks} <= {0, 1}
    assert all(t.completion_a.generation_settings == t.completion_b.generation_settings for t in tasks)
    assert all(t.matched_settings == {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 6, "seed": 3} for t in tasks)


def test_a_model_that_did_not_move_gets_no_battles_and_a_warning(tiny_model_dir, fresh_adapter_dir, client):
    s = review_setup(prompts=3, base_path=str(tiny_model_dir), adapter_path=str(fresh_adapter_dir), with_outputs=False)
    job = _run_review_job(s)
    assert job.status == "succeeded", job.error
    assert (job.movement["pairs"], job.movement["identical"], job.movement["identical_share"]) == (6, 6, 1.0)
    assert job.movement["kl_per_token"] == pytest.approx(0.0, abs=1e-6)
    assert job.tasks_created == 0 and PairTask.objects.filter(purpose="review").count() == 0
    from tests.factories import AdminFactory

    admin = AdminFactory()
    client.login(username=admin.username, password=PASSWORD)
    text = _text(client.get(f"/runs/{s.run.pk}/review/").content.decode())
    assert "The tuned model did not move: 6 of 6 outputs are identical to the base's (KL 0 per token)." in text
    assert "Try more steps, a larger learning rate, or more data. Launch a new run" in text
    assert "100.0% identical · KL 0" in text


def test_a_rate_projects_review_job_makes_held_out_thumbs_and_its_page_shows_up_rates(tiny_model_dir, tiny_adapter_dir, client):
    s = review_setup(prompts=2, base_path=str(tiny_model_dir), adapter_path=str(tiny_adapter_dir), with_outputs=False, mode="rate")
    job = _run_review_job(s)
    # The job succeeds (a thumbs project cannot battle, and must not fail for it) with its real numbers
    assert job.status == "succeeded", job.error
    assert (job.completions_created, job.tasks_created) == (8, 8)
    tasks = RateTask.objects.filter(purpose="review")
    assert tasks.count() == 8
    assert {t.completion.model_version_id for t in tasks} == {s.base.pk, s.tuned.pk}
    assert {t.completion.prompt.split for t in tasks} == {"heldout"}
    assert PairTask.objects.count() == 0
    assert job.movement["pairs"] == 4

    # Annotators rate them blind in the ordinary thumbs screen
    annotator = UserFactory(username="thumbs-voter")
    s.project.members.add(annotator)
    client.login(username=annotator.username, password=PASSWORD)
    seen = 0
    for _ in range(8):
        html = client.get(f"/projects/{s.project.pk}/").content.decode()
        task_id = re.search(r'data-task="(\d+)"', html)
        if task_id is None:
            break
        for secret in (s.tuned.name, s.base.name, "test-base", "tuned", "(base)"):
            assert secret not in html, f"the thumbs screen revealed {secret!r}"
        task = RateTask.objects.get(pk=int(task_id.group(1)))
        key = re.search(r'name="client_key" value="([^"]+)"', html).group(1)
        value = "up" if task.completion.model_version_id == s.tuned.pk else ("down" if seen % 2 else "up")
        assert client.post(f"/projects/{s.project.pk}/rate/{task.pk}/vote/", {"value": value, "client_key": key}).status_code == 302
        seen += 1
    assert seen == 8

    thumbs = review_results.heldout_thumbs(project=s.project, base=s.base, tuned=s.tuned)
    assert (thumbs.tuned.ups, thumbs.tuned.downs, thumbs.base.ups + thumbs.base.downs) == (4, 0, 4)
    assert thumbs.tuned.rate == 1.0 and thumbs.tuned.low == pytest.approx(0.5101, abs=1e-4)
    assert thumbs.difference == pytest.approx(1.0 - thumbs.base.rate)

    client.logout()
    from tests.factories import AdminFactory

    client.login(username=AdminFactory().username, password=PASSWORD)
    html = client.get(f"/runs/{s.run.pk}/review/").content.decode()
    text = _text(html)
    assert "Create blind battles" not in text and 'data-testid="create-battles"' not in html
    assert "Ask annotators for held-out thumbs when done" in text
    assert f"Tuned: thumbs-up rate 100.0% 95% CI {thumbs.tuned.interval_percent}" in text
    assert f"Base: thumbs-up rate {thumbs.base.rate_percent} 95% CI {thumbs.base.interval_percent}" in text
    assert f"Difference (tuned − base) {thumbs.difference_points}" in text
    row = re.search(rf'<tr data-job="{job.pk}">.*?</tr>', html, re.S).group(0)
    assert re.search(r'data-testid="job-new">8<', row) and re.search(r'data-testid="job-tasks">8<', row)
    assert "Thumbs tasks" in html
    battles_page = _text(client.get(f"/runs/{s.run.pk}/battles/").content.decode())
    assert "thumbs (rate) project" in battles_page and "Tuned: thumbs-up rate 100.0%" in battles_page


def test_held_out_thumbs_are_made_once_per_output():
    s = review_setup(prompts=2, mode="rate")
    settings = GenerationSettings(temperature=0.0, max_new_tokens=16)
    ids = [p.pk for p in s.heldout]
    assert heldout_thumbs_create(project=s.project, versions=[s.base, s.tuned], prompt_ids=ids, settings=settings) == 4
    assert heldout_thumbs_create(project=s.project, versions=[s.base, s.tuned], prompt_ids=ids, settings=settings) == 0
    other = GenerationSettings(temperature=0.5, max_new_tokens=16)
    assert heldout_thumbs_create(project=s.project, versions=[s.base, s.tuned], prompt_ids=ids, settings=other) == 0
    assert set(RateTask.objects.values_list("purpose", flat=True)) == {"review"}
    assert RateTask.objects.count() == Completion.objects.filter(source="generated").count()


def test_thumbs_up_rates_count_only_review_thumbs_of_each_version():
    s = review_setup(prompts=2, mode="rate")
    heldout_thumbs_create(
        project=s.project, versions=[s.base, s.tuned], prompt_ids=[p.pk for p in s.heldout],
        settings=GenerationSettings(temperature=0.0, max_new_tokens=16),
    )
    annotator = UserFactory()
    base_values = iter(["up", "down"])
    for task in RateTask.objects.select_related("completion").order_by("id"):
        make_rating(task, annotator, "up" if task.completion.model_version_id == s.tuned.pk else next(base_values))
    # A labeling thumbs task on a tuned output is training data, not evaluation: it does not count.
    train_output = Completion.objects.create(
        prompt=s.heldout[0], text="Imported answer.", model_version=s.tuned, source="imported"
    )
    make_rating(RateTask.objects.create(project=s.project, completion=train_output, overlap=1), UserFactory(), "down")
    thumbs = review_results.heldout_thumbs(project=s.project, base=s.base, tuned=s.tuned)
    assert (thumbs.tuned.ups, thumbs.tuned.downs, thumbs.tuned.tasks) == (2, 0, 2)
    assert (thumbs.base.ups, thumbs.base.downs) == (1, 1)
    assert thumbs.difference == pytest.approx(0.5) and thumbs.difference_points == "+50.0 points"
    assert thumbs.base.rate_percent == "50.0%" and thumbs.base.interval_percent == "9.5–90.5%"
