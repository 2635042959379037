"""Review screens through the client: staff only, the side-by-side page, battles, results, leaderboard."""
from __future__ import annotations

import re
from unittest import mock

import pytest

from labeling.models import Completion, PairTask
from tests.factories import make_pair_vote
from training.models import GenerationJob
from training.review import battles as review_battles

pytestmark = pytest.mark.django_db


def test_annotators_get_403_on_every_review_screen(annotator_client, setup):
    run, project = setup.run.pk, setup.project.pk
    for url in (f"/runs/{run}/review/", f"/runs/{run}/battles/", f"/projects/{project}/leaderboard/"):
        assert annotator_client.get(url).status_code == 403
    for url in (f"/runs/{run}/review/generate/", f"/runs/{run}/battles/create/", f"/projects/{project}/battles/create/"):
        assert annotator_client.post(url).status_code == 403
    assert PairTask.objects.count() == 0 and GenerationJob.objects.count() == 0


def test_the_review_page_shows_outputs_side_by_side_escaped_and_paged(admin_client, setup):
    Completion.objects.filter(model_version=setup.tuned, prompt=setup.heldout[0]).update(text="<script>alert(1)</script>")
    response = admin_client.get(f"/runs/{setup.run.pk}/review/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)" not in html
    assert "Base answer 1." in html and "Tuned answer 1, in more words." in html
    assert setup.tuned.name in html and setup.base.name in html
    filtered = admin_client.get(f"/runs/{setup.run.pk}/review/", {"q": "question 3"}).content.decode()
    assert "Tuned answer 3" in filtered and "Tuned answer 2" not in filtered
    with mock.patch("training.review.views.ROWS_PER_PAGE", 3):
        second = admin_client.get(f"/runs/{setup.run.pk}/review/", {"page": 2}).content.decode()
    assert "Tuned answer 3" in second and "Tuned answer 0" not in second and "Page 2 of 2" in second


def test_a_run_without_an_adapter_says_so(admin_client, setup):
    type(setup.run).objects.filter(pk=setup.run.pk).update(model_version=None, status="running")
    assert "no tuned adapter yet" in admin_client.get(f"/runs/{setup.run.pk}/review/").content.decode()
    assert "no tuned adapter yet" in admin_client.get(f"/runs/{setup.run.pk}/battles/").content.decode()


def test_generate_queues_a_job_for_base_and_tuned(admin_client, setup, django_capture_on_commit_callbacks):
    with mock.patch("webapp.celery.app.send_task") as delay, django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            f"/runs/{setup.run.pk}/review/generate/",
            {"n": 1, "max_new_tokens": 16, "temperature": 0, "top_p": 0.9, "seed": 0, "create_review_tasks": "on"},
        )
    assert response.status_code == 302
    job = GenerationJob.objects.get()
    delay.assert_called_once()
    assert delay.call_args.kwargs["args"] == [job.pk]
    assert set(job.model_versions.all()) == {setup.base, setup.tuned} and job.create_review_tasks and job.run == setup.run
    assert job.settings["n"] == 1


def test_reusing_other_engines_is_an_explicit_choice_and_its_figures_say_mixed(
    admin_client, setup, django_capture_on_commit_callbacks
):
    page = admin_client.get(f"/runs/{setup.run.pk}/review/").content.decode()
    assert 'name="reuse_other_engines"' in page and "Reuse answers another engine wrote" in page
    data = {"n": 1, "max_new_tokens": 16, "temperature": 0, "top_p": 0.9, "seed": 0}
    with mock.patch("webapp.celery.app.send_task"), django_capture_on_commit_callbacks(execute=True):
        admin_client.post(f"/runs/{setup.run.pk}/review/generate/", data)
        GenerationJob.objects.update(status="succeeded")
        admin_client.post(f"/runs/{setup.run.pk}/review/generate/", {**data, "reuse_other_engines": "on"})
    plain, mixed = GenerationJob.objects.order_by("id")
    assert (plain.reuse_other_engines, mixed.reuse_other_engines) == (False, True)

    # What a worker records when such a job paired answers across engines.
    GenerationJob.objects.filter(pk=mixed.pk).update(
        status="succeeded", engine="transformers float32",
        movement={"pairs": 4, "identical": 0, "identical_share": 0.0, "kl_per_token": 0.02, "tokens": 40,
                  "engines": "vllm bfloat16 against transformers float32", "mixed_engines": 4},
    )
    run_page = admin_client.get(f"/runs/{setup.run.pk}/").content.decode()
    assert "4 of 4 pairs mix engines" in run_page and 'data-testid="mixed-engines"' in run_page
    review = admin_client.get(f"/runs/{setup.run.pk}/review/").content.decode()
    assert "transformers float32 · reuses other engines' answers: mixed engines" in review
    assert "4 of 4 matched pairs compare answers of different engines or precisions" in review
    battles = admin_client.get(f"/runs/{setup.run.pk}/battles/").content.decode()
    assert "Mixed engines: 4 of 4 pairs compare answers of different engines" in battles


def test_bad_generation_settings_are_shown_not_queued(admin_client, setup):
    response = admin_client.post(
        f"/runs/{setup.run.pk}/review/generate/", {"n": 1, "max_new_tokens": 0, "temperature": 0, "top_p": 0.9, "seed": 0}, follow=True
    )
    html = response.content.decode()
    assert "Generation settings" in html and "max_new_tokens" in html and GenerationJob.objects.count() == 0


def test_creating_battles_then_voting_shows_the_win_rate(admin_client, setup, annotator):
    setup.project.members.add(annotator)
    response = admin_client.post(f"/runs/{setup.run.pk}/battles/create/", follow=True)
    assert "Created 4 blind battles" in response.content.decode()
    for task in PairTask.objects.filter(purpose="review"):
        tuned_is_a = task.completion_a.model_version_id == setup.tuned.pk
        make_pair_vote(task, annotator, "a" if tuned_is_a else "b")
    html = admin_client.get(f"/runs/{setup.run.pk}/battles/").content.decode()
    assert "100.0%" in html and "4 / 0 / 0" in html and "+16 chars" in html


def test_the_compare_card_never_names_the_models(client, setup, annotator):
    from tests.factories import PASSWORD

    setup.project.members.add(annotator)
    review_battles.battles_create(project=setup.project, version_a=setup.tuned, version_b=setup.base)
    client.login(username=annotator.username, password=PASSWORD)
    html = client.get(f"/projects/{setup.project.pk}/").content.decode()
    assert "Held-out question" in html
    for secret in (setup.tuned.name, setup.base.name, "test-base", "tuned", "(base)"):
        assert secret not in html


def test_the_leaderboard_ranks_and_battles_any_two_versions(admin_client, setup):
    response = admin_client.post(
        f"/projects/{setup.project.pk}/battles/create/", {"version_a": setup.base.pk, "version_b": setup.tuned.pk}, follow=True
    )
    assert "Created 4 blind battles" in response.content.decode()
    for task in PairTask.objects.filter(purpose="review"):
        from tests.factories import UserFactory

        make_pair_vote(task, UserFactory(), "tie")
    html = admin_client.get(f"/projects/{setup.project.pk}/leaderboard/").content.decode()
    assert setup.tuned.name in html and "1000" in html and "0 / 4 / 0" in html
    same = admin_client.post(
        f"/projects/{setup.project.pk}/battles/create/", {"version_a": setup.base.pk, "version_b": setup.base.pk}, follow=True
    )
    assert "two different model versions" in same.content.decode()


def _running_review_job(setup, **fields):
    from datetime import timedelta

    from django.utils import timezone

    job = GenerationJob.objects.create(
        project=setup.project, run=setup.run, prompt_ids=[p.pk for p in setup.heldout], settings={"n": 1},
        purpose="review", status="running", started_at=timezone.now() - timedelta(seconds=60), completions_total=64,
        completions_created=12, **fields,
    )
    job.model_versions.set([setup.base, setup.tuned])
    return job


def test_the_review_page_follows_a_running_job_with_done_of_total_an_eta_and_cancel(admin_client, setup):
    # Issue 26: the jobs table said "New 12" while the dashboard said "12 of 64", with no ETA and no Cancel.
    job = _running_review_job(setup)

    html = admin_client.get(f"/runs/{setup.run.pk}/review/").content.decode()
    fragment = admin_client.get(f"/runs/{setup.run.pk}/review/", HTTP_HX_REQUEST="true").content.decode()

    for page in (html, fragment):
        assert 'data-testid="job-percent">19%' in page and 'data-testid="job-done">12 of 64 answers' in page
        assert 'data-testid="job-eta">about 4 min left' in page  # 12 in a minute, 52 to go
        assert re.search(r'data-testid="job-rate">1[12]\.\d answers a minute', page)  # about 12 in the minute since it started
        assert f'action="/generation-jobs/{job.pk}/cancel/"' in page and 'data-testid="job-cancel"' in page
        assert f'hx-get="/runs/{setup.run.pk}/review/" hx-trigger="every 3s"' in page
    assert "<html" not in fragment and fragment.lstrip().startswith('<div id="review-jobs"'), "htmx gets the table alone"


def test_generate_while_a_review_job_runs_says_so_and_queues_nothing(admin_client, setup):
    job = _running_review_job(setup)
    data = {"n": 1, "max_new_tokens": 16, "temperature": 0, "top_p": 0.9, "seed": 0}

    with mock.patch("webapp.celery.app.send_task") as send:
        response = admin_client.post(f"/runs/{setup.run.pk}/review/generate/", data, follow=True)

    html = response.content.decode()
    assert f"Review job {job.pk} is still running for this run (12 of 64 outputs): nothing new was queued." in html
    assert GenerationJob.objects.count() == 1 and not send.called


def test_cancel_from_the_review_page_comes_back_to_it(admin_client, setup):
    job = _running_review_job(setup)

    response = admin_client.post(
        f"/generation-jobs/{job.pk}/cancel/", {"next": f"/runs/{setup.run.pk}/review/"}, follow=True
    )

    job.refresh_from_db()
    assert job.status == "cancelled"
    assert response.redirect_chain[-1][0] == f"/runs/{setup.run.pk}/review/"
    assert "it stops once the batch it is writing is stored" in response.content.decode()
    elsewhere = admin_client.post(f"/generation-jobs/{job.pk}/cancel/", {"next": "//evil.example/"})
    assert elsewhere["Location"] == f"/projects/{setup.project.pk}/candidates/"
