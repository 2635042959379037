"""Reward-model scores of a project's answers: the scoring job, and the spread of base and tuned held-out outputs
on the review page (a collapsing spread is flagged). The reward model is really trained, on a tiny random model."""
from __future__ import annotations

import shutil
import statistics
from pathlib import Path

import pytest
from django.utils import timezone

from labeling.models import Completion, PairTask
from tests.factories import make_run
from tests.review.conftest import review_setup
from tests.trainer.conftest import make_dpo_rows
from training.models import GenerationJob, RewardScore, TuningRun
from training.review import candidate_pairs as review_candidate_pairs
from training.review import generation as review_generation
from training.review import rewards as review_rewards

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="session")
def reward_output_dir(tiny_model_dir, tmp_path_factory) -> Path:
    from training.trainer import TrainSettings, train

    out = tmp_path_factory.mktemp("reward-run")
    settings = TrainSettings(method="reward", max_steps=2, per_device_batch_size=2, validation_fraction=0.25, max_length=64)
    train(model_path=str(tiny_model_dir), rows=make_dpo_rows(8), settings=settings, output_dir=str(out))
    return out


def _reward_run(project, output_dir: Path) -> TuningRun:
    run = make_run(project, status="succeeded", method="reward")
    TuningRun.objects.filter(pk=run.pk).update(
        name="Reward model A", output_dir=str(output_dir), finished_at=timezone.now(),
        outcome={"reward_model": {"correct": 9, "pairs": 10, "ties": 0, "accuracy": 0.9, "interval": [0.6, 0.98]}},
    )
    run.refresh_from_db()
    return run


def _collapsed_setup(tiny_model_dir):
    """Eight held-out prompts; the base writes eight different answers, the tuned version one answer eight times."""
    setup = review_setup(prompts=8, base_path=str(tiny_model_dir), name="Rewarded project")
    Completion.objects.filter(model_version=setup.base).update(text="placeholder")
    for n, completion in enumerate(Completion.objects.filter(model_version=setup.base).order_by("id")):
        completion.text = ["No.", "Yes, gladly: here it is.", "Maybe later", "The sea is wide and grey today."][n % 4] + " x" * n
        completion.save(update_fields=["text"])
    Completion.objects.filter(model_version=setup.tuned).update(text="Here is a sentence: it is lovely.")
    return setup


def _run_job(job: GenerationJob) -> GenerationJob:
    assert review_generation.generation_job_claim(job_id=job.pk, worker="test-worker")
    return review_generation.generation_job_execute(job_id=job.pk)


def test_a_scoring_job_scores_every_answer_once_and_a_second_finds_nothing(
    tiny_model_dir, reward_output_dir, django_capture_on_commit_callbacks
):
    setup = _collapsed_setup(tiny_model_dir)
    reward_run = _reward_run(setup.project, reward_output_dir)
    answers = Completion.objects.filter(prompt__project=setup.project).count()

    with django_capture_on_commit_callbacks() as sent:
        job = review_rewards.reward_scoring_job_create(project=setup.project)
        again = review_rewards.reward_scoring_job_create(project=setup.project)
    assert again == job and len(sent) == 1, "one queued job per reward model, not one per click"
    assert answers == 16
    assert (job.purpose, job.run_id, job.completions_total) == ("scores", reward_run.pk, 16)

    done = _run_job(job)

    assert done.status == "succeeded", done.error
    assert (done.completions_created, done.percent) == (16, 100)
    assert RewardScore.objects.filter(reward_run=reward_run).count() == 16
    assert review_rewards.reward_scoring_job_create(project=setup.project) is None
    # Each stored score is what the saved reward model gives that prompt and answer.
    from training.trainer.reward import load_reward_model, score_conversations

    model, tokenizer = load_reward_model(str(reward_output_dir / "adapter"), str(tiny_model_dir))
    stored = RewardScore.objects.select_related("completion__prompt").order_by("id").last()
    conversation = [*stored.completion.prompt.messages, {"role": "assistant", "content": stored.completion.text}]
    assert score_conversations(model, tokenizer, [conversation]) == pytest.approx([stored.score], abs=1e-5)


def test_the_review_page_shows_each_sides_reward_spread_and_flags_a_collapse(
    admin_client, tiny_model_dir, reward_output_dir, django_capture_on_commit_callbacks
):
    setup = _collapsed_setup(tiny_model_dir)
    _reward_run(setup.project, reward_output_dir)
    before = admin_client.get(f"/runs/{setup.run.pk}/review/").content.decode()
    assert 'data-testid="reward-none"' in before and "8 matched pairs not scored yet" in before

    with django_capture_on_commit_callbacks():
        response = admin_client.post(
            f"/projects/{setup.project.pk}/rewards/score/", {"next": f"/runs/{setup.run.pk}/review/"}
        )
    assert response.status_code == 302 and response["Location"] == f"/runs/{setup.run.pk}/review/"
    _run_job(GenerationJob.objects.get(purpose="scores"))

    page = admin_client.get(f"/runs/{setup.run.pk}/review/").content.decode()
    assert 'data-testid="reward-table"' in page and "Reward model A" in page
    assert "ranks 90% of its 10 held-out pairs correctly (95% interval 60%–98%)" in page
    spread = {
        side: statistics.stdev(RewardScore.objects.filter(completion__model_version=version).values_list("score", flat=True))
        for side, version in (("base", setup.base), ("tuned", setup.tuned))
    }
    assert spread["tuned"] < 0.5 * spread["base"], spread
    assert 'data-testid="reward-collapse"' in page and "have narrowed" in page
    assert "over 8 matched pairs" in page


def test_without_a_reward_model_the_review_page_has_no_scores_section(admin_client, tiny_model_dir):
    setup = review_setup(prompts=2, base_path=str(tiny_model_dir))
    page = admin_client.get(f"/runs/{setup.run.pk}/review/").content.decode()
    assert 'data-testid="reward-scores"' not in page
    assert review_rewards.reward_scoring_job_create(project=setup.project) is None


def test_a_scoring_job_whose_reward_model_is_gone_fails_with_the_reason_and_stores_nothing(
    tiny_model_dir, reward_output_dir, tmp_path, django_capture_on_commit_callbacks
):
    setup = _collapsed_setup(tiny_model_dir)
    gone = tmp_path / "deleted-run"
    shutil.copytree(reward_output_dir, gone)
    _reward_run(setup.project, gone)
    with django_capture_on_commit_callbacks():
        job = review_rewards.reward_scoring_job_create(project=setup.project)
    shutil.rmtree(gone)

    done = _run_job(job)

    assert done.status == "failed" and "No reward model adapter at" in done.error
    assert RewardScore.objects.count() == 0


def test_annotators_cannot_start_scoring(annotator_client, setup):
    assert annotator_client.post(f"/projects/{setup.project.pk}/rewards/score/").status_code == 403
    assert GenerationJob.objects.count() == 0


# ---------------------------------------------------------------- best-of-N candidates


def test_best_against_worst_pairs_the_candidates_the_reward_model_ranks_highest_and_lowest(
    tiny_model_dir, reward_output_dir
):
    from tests.review.test_candidate_generation import _stored
    from training.trainer.generation_settings import GenerationSettings

    s = review_setup(prompts=1, base_path=str(tiny_model_dir), with_outputs=False)
    reward_run = _reward_run(s.project, reward_output_dir)
    settings = GenerationSettings(temperature=0.7, n=4)
    worst, unscored, best, middle = _stored(s, s.heldout[0], settings, [(f"Answer number {k}.", "stop") for k in range(4)])
    for completion, score in ((worst, -100.0), (best, 100.0), (middle, 0.5)):
        RewardScore.objects.create(reward_run=reward_run, completion=completion, score=score)

    made = review_candidate_pairs.candidate_pairs_create(
        project=s.project, prompt_ids=[s.heldout[0].pk], versions=[s.base], settings=settings,
        pairing="reward_extremes", scorer=review_rewards.RewardScorer(reward_run),
    )

    task = PairTask.objects.get()
    assert made.created == 1 and {task.completion_a_id, task.completion_b_id} == {best.pk, worst.pk}
    # The candidate it had no score for was scored by the model, and kept for the labeling order.
    assert RewardScore.objects.filter(reward_run=reward_run).count() == 4
    assert -100 < RewardScore.objects.get(completion=unscored).score < 100


def test_a_candidate_job_draws_n_and_keeps_the_best_and_worst_as_a_pair(tiny_model_dir, reward_output_dir):
    s = review_setup(prompts=2, base_path=str(tiny_model_dir), with_outputs=False)
    reward_run = _reward_run(s.project, reward_output_dir)
    job = review_generation.generation_job_create(
        project=s.project, purpose="candidates", split="heldout", enqueue=False, versions=[s.base],
        settings_data={"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 6, "seed": 1, "n": 3},
        pairing="reward_extremes", cut_off="paired",
    )
    assert review_generation.generation_job_claim(job_id=job.pk, worker="test")

    done = review_generation.generation_job_execute(job_id=job.pk)

    assert done.status == "succeeded", done.error
    assert (done.completions_created, done.tasks_created) == (6, 2)
    scores = dict(RewardScore.objects.filter(reward_run=reward_run).values_list("completion_id", "score"))
    assert len(scores) == 6
    for task in PairTask.objects.all():
        mine = [scores[c.pk] for c in Completion.objects.filter(prompt=task.prompt)]
        assert sorted([scores[task.completion_a_id], scores[task.completion_b_id]]) == [min(mine), max(mine)]


def test_best_against_worst_is_refused_without_a_reward_model_or_with_one_answer_to_choose_from(tiny_model_dir, reward_output_dir):
    from training.review.versions import ReviewError

    s = review_setup(prompts=1, with_outputs=False)
    arguments = dict(project=s.project, purpose="candidates", split="heldout", enqueue=False, versions=[s.base],
                     pairing="reward_extremes")
    with pytest.raises(ReviewError, match="Best against worst needs a reward model"):
        review_generation.generation_job_create(settings_data={"temperature": 1.0, "n": 4}, **arguments)
    _reward_run(s.project, reward_output_dir)
    with pytest.raises(ReviewError, match="need at least two completions per prompt"):
        review_generation.generation_job_create(settings_data={"temperature": 1.0, "n": 1}, **arguments)
    assert not GenerationJob.objects.exists()


def test_the_review_page_compares_tuned_with_base_best_of_n(admin_client, tiny_model_dir, reward_output_dir):
    from tests.review.conftest import SETTINGS, add_output

    setup = review_setup(prompts=4, base_path=str(tiny_model_dir), name="Best of N")
    reward_run = _reward_run(setup.project, reward_output_dir)
    for prompt in setup.heldout:
        for k in (1, 2):
            add_output(prompt, setup.base, f"Base sample {k} for {prompt.pk}.", {**SETTINGS, "sample": k})
            add_output(prompt, setup.tuned, f"Tuned sample {k} for {prompt.pk}.", {**SETTINGS, "sample": k})
    # Base samples score 0, 1, 2 on every prompt; the tuned first answer 3 on three prompts and 1 on the last.
    for n, prompt in enumerate(setup.heldout):
        for completion in Completion.objects.filter(prompt=prompt):
            sample = completion.generation_settings["sample"]
            tuned = completion.model_version_id == setup.tuned.pk
            score = (1.0 if n == 3 else 3.0) if tuned and sample == 0 else float(sample) - (5 if tuned else 0)
            RewardScore.objects.create(reward_run=reward_run, completion=completion, score=score)

    page = admin_client.get(f"/runs/{setup.run.pk}/review/").content.decode()

    assert 'data-testid="best-of-n"' in page and "Tuned against base best-of-3:" in page
    assert "on 4 held-out prompts, the tuned model's first answer scores above the best of the base model's 3 answers" in page
    assert "<b>75%</b>" in page and "mean score 2 (base best-of-3) against 2.5 (tuned)" in page
    assert "Not yet distinguishable from sampling the base model 3 times." in page


def test_a_cancelled_scoring_job_stops_between_two_batches_and_keeps_what_it_scored(tiny_model_dir, reward_output_dir, monkeypatch):
    # Issue 26: every long job has a Cancel that stops it.
    setup = _collapsed_setup(tiny_model_dir)
    reward_run = _reward_run(setup.project, reward_output_dir)
    job = review_rewards.reward_scoring_job_create(project=setup.project)
    monkeypatch.setattr(review_rewards, "SCORE_BATCH", 4)
    scores = review_rewards.RewardScorer.scores

    def cancel_after_the_first_batch(self, ids):  # noqa: ANN001, ANN202
        found = scores(self, ids)
        GenerationJob.objects.filter(pk=job.pk).update(status="cancelled")
        return found

    monkeypatch.setattr(review_rewards.RewardScorer, "scores", cancel_after_the_first_batch)

    done = _run_job(job)

    assert done.status == "cancelled"
    assert RewardScore.objects.filter(reward_run=reward_run).count() == 4 == done.completions_created
    assert done.notes == ["Cancelled after scoring 4 of 16 answers; their scores stay."]
    assert done.finished_at is not None
