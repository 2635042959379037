"""The "Generate candidates" screen: models write completions for labeling, queued for a gpu worker."""
from __future__ import annotations

import re
from html import unescape

import pytest

from labeling.models import Completion
from tests.factories import ProjectFactory, PromptFactory
from tests.html_forms import form_defaults
from training.models import BaseModel, GenerationJob, ModelVersion
from training.review.versions import base_version_get_or_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def project(db):
    project = ProjectFactory(name="Candidates")
    for n in range(3):
        PromptFactory(project=project, messages=[{"role": "user", "content": f"Question {n}?"}])
    return project


@pytest.fixture
def base(db, tiny_model_dir):
    return BaseModel.objects.create(name="tiny", path=str(tiny_model_dir))


def _post(admin_client, project, capture, **changes):
    data = {"split": "train", "n": "2", "max_new_tokens": "8", "temperature": "0.7", "top_p": "0.9", "seed": "0", **changes}
    with capture() as callbacks:
        response = admin_client.post(f"/projects/{project.pk}/candidates/", data)
    return response, callbacks


def test_the_screen_offers_each_base_model_and_tuned_version(admin_client, project, base):
    ModelVersion.objects.create(name="tuned-v1", base_model=base, adapter_path="/x/adapter")

    html = admin_client.get(f"/projects/{project.pk}/candidates/").content.decode()

    assert "tiny (base)" in html and "tuned-v1" in html


def test_it_queues_a_candidates_job_from_the_bare_base_model(admin_client, project, base, django_capture_on_commit_callbacks):
    response, callbacks = _post(admin_client, project, django_capture_on_commit_callbacks, versions=[f"base:{base.pk}"])

    job = GenerationJob.objects.get()
    assert response.status_code == 302
    assert (job.purpose, job.prompt_count, job.settings["n"]) == ("candidates", 3, 2)
    assert [v.name for v in job.model_versions.all()] == ["tiny (base)"]
    assert len(callbacks) == 1


def test_the_form_submits_as_it_is_shown_with_the_base_model_ticked(admin_client, project, base, django_capture_on_commit_callbacks):
    from training.review.forms import CANDIDATE_MAX_NEW_TOKENS

    ModelVersion.objects.create(name="tuned-v1", base_model=base, adapter_path="/x/adapter")
    defaults = form_defaults(admin_client.get(f"/projects/{project.pk}/candidates/").content.decode(), "candidates")

    with django_capture_on_commit_callbacks() as callbacks:
        response = admin_client.post(f"/projects/{project.pk}/candidates/", defaults)

    assert defaults["versions"] == [f"base:{base.pk}"], "the base model is ticked, the tuned version is not"
    assert response.status_code == 302, response.content.decode()[:2000]
    job = GenerationJob.objects.get()
    assert [v.name for v in job.model_versions.all()] == ["tiny (base)"]
    assert (job.prompt_count, job.settings["n"], job.settings["max_new_tokens"]) == (3, 3, CANDIDATE_MAX_NEW_TOKENS)
    assert job.cut_off == "against_finished"
    assert len(callbacks) == 1


def test_one_completion_per_prompt_is_refused(admin_client, project, base, django_capture_on_commit_callbacks):
    response, callbacks = _post(
        admin_client, project, django_capture_on_commit_callbacks, versions=[f"base:{base.pk}"], n="1"
    )

    assert response.status_code == 400
    assert "need at least two completions per prompt" in response.content.decode()
    assert callbacks == [] and not GenerationJob.objects.exists()


def test_an_unknown_choice_is_refused(admin_client, project, base, django_capture_on_commit_callbacks):
    response, _ = _post(admin_client, project, django_capture_on_commit_callbacks, versions=["version:99999"])

    assert response.status_code == 400
    assert not GenerationJob.objects.exists()


def test_the_form_offers_the_pairings_and_pairs_cut_off_answers_only_against_finished_ones_by_default(admin_client, project, base):
    from training.review.forms import CANDIDATE_MAX_NEW_TOKENS

    html = admin_client.get(f"/projects/{project.pk}/candidates/").content.decode()

    for label in ("All against all", "Shortest against longest", "Two temperatures", "Second temperature"):
        assert label in html
    assert re.search(r'<option value="against_finished" selected>Paired only against a finished answer</option>', html)
    assert f'name="max_new_tokens" value="{CANDIDATE_MAX_NEW_TOKENS}"' in html


def test_it_queues_the_chosen_pairing_with_cut_off_answers_left_out(admin_client, project, base, django_capture_on_commit_callbacks):
    response, _ = _post(
        admin_client, project, django_capture_on_commit_callbacks, versions=[f"base:{base.pk}"],
        pairing="length_extremes", cut_off="left_out", alt_temperature="1.1",
    )

    job = GenerationJob.objects.get()
    assert response.status_code == 302
    assert (job.pairing, job.cut_off, job.completions_total) == ("length_extremes", "left_out", 6)
    assert "alt_temperature" not in job.settings, "the second temperature belongs to the two-temperature pairing only"


def test_two_temperatures_need_the_second_one(admin_client, project, base, django_capture_on_commit_callbacks):
    refused, _ = _post(
        admin_client, project, django_capture_on_commit_callbacks, versions=[f"base:{base.pk}"],
        pairing="mixed_temperatures", alt_temperature="",
    )
    assert refused.status_code == 400 and "need a second temperature" in refused.content.decode()
    assert not GenerationJob.objects.exists()

    accepted, _ = _post(
        admin_client, project, django_capture_on_commit_callbacks, versions=[f"base:{base.pk}"],
        pairing="mixed_temperatures", temperature="0.3", alt_temperature="1.1",
    )
    job = GenerationJob.objects.get()
    assert accepted.status_code == 302
    assert (job.pairing, job.settings["temperature"], job.settings["alt_temperature"]) == ("mixed_temperatures", 0.3, 1.1)


def _job(project, **fields) -> GenerationJob:
    defaults = {"prompt_ids": [], "settings": {}, "purpose": "candidates", "prompt_count": 3}
    return GenerationJob.objects.create(project=project, **{**defaults, **fields})


def test_the_jobs_table_shows_progress_and_notes_and_polls_while_a_job_runs(admin_client, project):
    job = _job(
        project, status="running", completions_total=10, completions_created=4, completions_skipped=1, tasks_created=2,
        pairing="length_extremes", notes=["3 answers were cut off at 256 tokens and left out of pairs."],
    )

    html = admin_client.get(f"/projects/{project.pk}/candidates/").content.decode()

    assert 'aria-valuenow="50"' in html and 'job-percent">50%</span> · <span data-testid="job-done">5 of 10 answers' in html
    assert "3 answers were cut off at 256 tokens and left out of pairs." in html
    assert "Shortest against longest" in html
    assert f'hx-get="/projects/{project.pk}/candidates/" hx-trigger="every 3s"' in html
    assert 'http-equiv="refresh"' not in html, "htmx refreshes the table, not the whole page with its form"

    partial = admin_client.get(f"/projects/{project.pk}/candidates/", HTTP_HX_REQUEST="true").content.decode()
    assert 'id="candidate-jobs"' in partial and 'class="candidates"' not in partial and 'job-percent">50%</span> · <span data-testid="job-done">5 of 10 answers' in partial

    GenerationJob.objects.filter(pk=job.pk).update(status="succeeded", completions_created=9)
    done = admin_client.get(f"/projects/{project.pk}/candidates/", HTTP_HX_REQUEST="true").content.decode()
    assert 'aria-valuenow="100"' in done and "hx-trigger" not in done, "polling stops once no job is active"


def test_job_notes_are_escaped(admin_client, project):
    _job(project, status="succeeded", notes=["<script>alert(1)</script>"])

    html = admin_client.get(f"/projects/{project.pk}/candidates/").content.decode()

    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_annotators_cannot_poll_the_jobs_table(annotator_client, project):
    response = annotator_client.get(f"/projects/{project.pk}/candidates/", HTTP_HX_REQUEST="true")

    assert response.status_code in (403, 404)


def test_a_queued_job_is_cancelled_at_once_and_its_message_never_runs(admin_client, project):
    job = _job(project, status="queued")

    response = admin_client.post(f"/generation-jobs/{job.pk}/cancel/", follow=True)

    job.refresh_from_db()
    assert (job.status, job.error) == ("cancelled", "Cancelled by an admin.") and job.finished_at is not None
    assert f"Job {job.pk} cancelled before it started." in response.content.decode()
    from training.review.generation import generation_job_claim

    assert not generation_job_claim(job_id=job.pk, worker="late"), "a worker that gets the message later does nothing"


def test_cancel_leaves_a_finished_job_as_it_was_and_the_table_offers_it_only_while_active(admin_client, project):
    running = _job(project, status="running")
    done = _job(project, status="succeeded")

    html = admin_client.get(f"/projects/{project.pk}/candidates/").content.decode()
    response = admin_client.post(f"/generation-jobs/{done.pk}/cancel/", follow=True)

    assert f'action="/generation-jobs/{running.pk}/cancel/"' in html
    assert f'action="/generation-jobs/{done.pk}/cancel/"' not in html
    done.refresh_from_db()
    assert done.status == "succeeded" and f"Job {done.pk} had already ended." in response.content.decode()


def test_annotators_cannot_cancel_jobs(annotator_client, project):
    job = _job(project, status="running")

    assert annotator_client.post(f"/generation-jobs/{job.pk}/cancel/").status_code == 403
    assert annotator_client.post("/generation-jobs/999999/cancel/").status_code == 403, "no ids leak"
    job.refresh_from_db()
    assert job.status == "running"


def test_cancel_is_a_post(admin_client, project):
    job = _job(project, status="running")

    assert admin_client.get(f"/generation-jobs/{job.pk}/cancel/").status_code == 405
    job.refresh_from_db()
    assert job.status == "running"


def _finished_job(project, base, *, answers: int, seconds: float, limit: int = 384) -> GenerationJob:
    from datetime import timedelta

    from django.utils import timezone

    version = base_version_get_or_create(base_model=base)
    finished = timezone.now()
    job = _job(project, status="succeeded", completions_created=answers, settings={"max_new_tokens": limit},
               started_at=finished - timedelta(seconds=seconds), finished_at=finished)
    job.model_versions.add(version)
    return job


def test_before_any_answer_the_form_says_how_many_pairs_at_most_and_that_the_time_is_unknown(admin_client, project, base):
    html = admin_client.get(f"/projects/{project.pk}/candidates/").content.decode()
    text = unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)))

    # 3 prompts × 3 answers, all against all: 3 pairs a prompt if every answer finishes.
    assert "3 prompts → 9 answers → up to 9 pairs if every answer finishes" in text
    assert "known once this base model has written 20 at that limit" in text
    assert "The time is known after this base model's first generation job; the jobs table then shows an ETA." in text


def test_the_form_expects_pairs_and_time_from_what_this_installation_measured(admin_client, project, base):
    # Given 24 earlier base answers at 384 tokens, 18 of them finished (75%), and a job that wrote 20 answers in 60 s
    version = base_version_get_or_create(base_model=base)
    prompt = project.prompts.first()
    for i in range(24):
        Completion.objects.create(
            prompt=prompt, text=f"answer {i}", source="generated", model_version=version, model_name=version.name,
            generation_settings={"max_new_tokens": 384, "sample": i}, finish_reason="stop" if i < 18 else "length",
        )
    _finished_job(project, base, answers=20, seconds=60)

    html = admin_client.get(f"/projects/{project.pk}/candidates/").content.decode()
    text = unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)))

    # Then 3 prompts × 3 answers at 75%, cut-off answers paired only against finished ones: k finished of 3 make
    # C(k, 2) + k (3 - k) pairs, 2.81 a prompt ≈ 8 pairs, and a pair unless none finished (1 - 0.25³ = 98%);
    # 9 answers × 3 s ≈ 30 s
    assert "3 prompts → 9 answers → about 8 pairs, 98% of the prompts with at least one" in text
    assert "18 of 24 earlier answers of this base model at 384 tokens finished" in text
    assert "about 30 s (at the pace of job" in text and "20 answers of up to 384 tokens in about 1 min" in text


def test_a_running_job_shows_the_time_left_at_its_pace(admin_client, project):
    from datetime import timedelta

    from django.utils import timezone

    _job(project, status="running", started_at=timezone.now() - timedelta(seconds=60), completions_total=40,
         completions_skipped=10, completions_created=10)

    html = admin_client.get(f"/projects/{project.pk}/candidates/", HTTP_HX_REQUEST="true").content.decode()

    # 10 answers in a minute, 20 to go
    assert 'data-testid="job-eta">about 2 min left' in html


def test_generate_while_a_candidate_job_runs_says_so_and_queues_nothing(admin_client, project, base):
    # Issue 26: a second Generate queued a duplicate job without a word (and it would write the same answers again).
    running = _job(project, status="running", completions_total=60, completions_created=12)
    defaults = form_defaults(admin_client.get(f"/projects/{project.pk}/candidates/").content.decode(), "candidates")

    response = admin_client.post(f"/projects/{project.pk}/candidates/", defaults)

    html = response.content.decode()
    assert response.status_code == 400
    assert f"Candidate job {running.pk} is still running (12 of 60 answers): nothing new was queued." in html
    assert GenerationJob.objects.count() == 1


def test_the_dashboards_generating_block_has_cancel_back_to_the_dashboard(admin_client, project):
    job = _job(project, status="running", completions_total=60, completions_created=12)

    html = admin_client.get(f"/projects/{project.pk}/dashboard/").content.decode()
    block = html[html.index('data-testid="generation-job"'):]

    assert f'action="/generation-jobs/{job.pk}/cancel/"' in block
    assert f'name="next" value="/projects/{project.pk}/dashboard/"' in block
    response = admin_client.post(f"/generation-jobs/{job.pk}/cancel/", {"next": f"/projects/{project.pk}/dashboard/"})
    assert response["Location"] == f"/projects/{project.pk}/dashboard/"
    job.refresh_from_db()
    assert job.status == "cancelled"
