"""The "Generate candidates" screen: models write completions for labeling, queued for a gpu worker."""
from __future__ import annotations

import pytest

from tests.factories import ProjectFactory, PromptFactory
from training.models import BaseModel, GenerationJob, ModelVersion

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
