"""The playground (issue 25): a question answered by several versions on the worker's code path, the same answer a
review job writes for the same prompt and settings; who may ask; what is refused; keep, battle, stop."""
from __future__ import annotations

import pytest

from labeling.models import Completion, PairTask, Prompt
from tests.factories import PASSWORD, AdminFactory, UserFactory
from tests.review.conftest import review_setup
from training.models import GenerationJob, PlaygroundAnswer, PlaygroundRequest
from training.playground import services
from training.review import generation as review_generation

pytestmark = pytest.mark.django_db
SETTINGS = {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 24, "seed": 3}
RLO = "\u202e"


def _ask(s, user, prompt="What is a good name for a cat?", **settings):
    question = services.playground_request_create(
        project=s.project, user=user, prompt=prompt, versions=[s.base, s.tuned], settings_data={**SETTINGS, **settings}
    )
    assert services.playground_request_claim(request_id=question.pk, worker="test")
    return services.playground_request_execute(request_id=question.pk)


def _client(client, user):
    assert client.login(username=user.username, password=PASSWORD)
    return client


def test_the_same_prompt_and_settings_give_the_answers_a_review_job_writes(tiny_model_dir, tiny_adapter_dir):
    s = review_setup(prompts=1, base_path=str(tiny_model_dir), adapter_path=str(tiny_adapter_dir), with_outputs=False)
    prompt = s.heldout[0]
    job = review_generation.generation_job_create(
        project=s.project, versions=[s.base, s.tuned], settings_data={**SETTINGS, "n": 1}, prompt_ids=[prompt.pk],
        enqueue=False,
    )
    assert review_generation.generation_job_claim(job_id=job.pk, worker="test")
    assert review_generation.generation_job_execute(job_id=job.pk).status == "succeeded"
    reviewed = {c.model_version_id: c for c in Completion.objects.filter(prompt=prompt, source="generated")}

    question = _ask(s, AdminFactory(), prompt=prompt.messages[0]["content"])

    assert question.status == "succeeded", question.error
    answers = list(question.answers.all())
    assert [a.model_version_id for a in answers] == [s.base.pk, s.tuned.pk]
    for answer in answers:
        assert answer.text and answer.text == reviewed[answer.model_version_id].text
        assert answer.finish_reason == reviewed[answer.model_version_id].finish_reason
        assert answer.tokens > 0 and answer.seconds > 0
    assert answers[0].text != answers[1].text, "the adapter changes the answer"
    assert question.engine.startswith("transformers ")


def test_answers_stream_into_their_rows_while_they_are_written(tiny_model_dir, tiny_adapter_dir, monkeypatch):
    s = review_setup(prompts=1, base_path=str(tiny_model_dir), adapter_path=str(tiny_adapter_dir), with_outputs=False)
    seen: list[tuple[int, str]] = []
    update = services.PlaygroundAnswer.objects.filter

    def watching_filter(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        rows = update(*args, **kwargs)
        original = rows.update

        def recorded(**fields):  # noqa: ANN003, ANN202
            if "text" in fields and "finish_reason" not in fields:
                seen.append((fields["tokens"], fields["text"]))
            return original(**fields)

        rows.update = recorded
        return rows

    monkeypatch.setattr(services, "STREAM_SECONDS", 0.0)
    monkeypatch.setattr(services.PlaygroundAnswer.objects, "filter", watching_filter)
    question = _ask(s, AdminFactory())

    assert question.status == "succeeded", question.error
    final = {a.position: a.text for a in question.answers.all()}
    partial_tokens = [tokens for tokens, _ in seen]
    assert len(seen) >= 4 and partial_tokens[:3] == [1, 2, 3], "every token written as it comes"
    assert any(final[0].startswith(text) and text != final[0] for _, text in seen if text)


def test_stop_ends_the_answer_at_the_next_write_and_a_new_question_stops_the_last(tiny_model_dir, tiny_adapter_dir, monkeypatch):
    s = review_setup(prompts=1, base_path=str(tiny_model_dir), adapter_path=str(tiny_adapter_dir), with_outputs=False)
    admin = AdminFactory()
    first = services.playground_request_create(project=s.project, user=admin, prompt="One?", versions=[s.base], settings_data=SETTINGS)
    second = services.playground_request_create(project=s.project, user=admin, prompt="Two?", versions=[s.base], settings_data=SETTINGS)
    first.refresh_from_db()
    assert (first.status, first.error) == ("cancelled", "Stopped: a new question was asked.")
    assert not services.playground_request_claim(request_id=first.pk, worker="test"), "a stopped question never starts"

    assert services.playground_request_claim(request_id=second.pk, worker="test")
    monkeypatch.setattr(services, "STREAM_SECONDS", 0.0)
    real = services.PlaygroundRequest.objects.filter

    def stop_after_three_tokens(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        answer = PlaygroundAnswer.objects.get(request=second)
        if answer.tokens >= 3:
            real(pk=second.pk).update(status="cancelled")
        return real(*args, **kwargs)

    monkeypatch.setattr(services.PlaygroundRequest.objects, "filter", stop_after_three_tokens)
    question = services.playground_request_execute(request_id=second.pk)

    answer = question.answers.get()
    assert question.status == "cancelled"
    assert 3 <= answer.tokens <= 4, answer.tokens


def test_who_may_ask(client, db):
    s = review_setup(prompts=1, with_outputs=False)
    annotator = UserFactory()
    s.project.members.add(annotator)
    url = f"/projects/{s.project.pk}/playground/"

    assert _client(client, annotator).get(url).status_code == 403
    assert client.post(url, {"prompt": "hi", "versions": [f"base:{s.base.base_model_id}"]}).status_code == 403
    assert "annotator-playground" not in client.get("/").content.decode()
    type(s.project).objects.filter(pk=s.project.pk).update(playground_for_annotators=True)
    assert client.get(url).status_code == 200
    assert f'href="{url}" data-testid="annotator-playground"' in client.get("/").content.decode()
    outsider = UserFactory()
    client.logout()
    assert _client(client, outsider).get(url).status_code == 403
    assert not PlaygroundRequest.objects.exists()


def _post(client, s, **changes):
    data = {"prompt": "Hello?", "system": "", "versions": [f"base:{s.base.base_model_id}", f"version:{s.tuned.pk}"],
            "max_new_tokens": 24, "temperature": 0.7, "top_p": 0.9, "seed": 0, **changes}
    return client.post(f"/projects/{s.project.pk}/playground/", data)


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ("x" * 1_000_000, "The prompt is 1,000,000 characters; the playground takes up to 20,000."),
        ("ring the bell \x07 please", "The prompt contains a control character (U+0007) at position 15"),
        ("   ", "Write a prompt to ask."),
    ],
    ids=["one-megabyte", "control-character", "blank"],
)
def test_a_prompt_that_cannot_be_asked_is_refused_with_the_reason(client, prompt, message):
    s = review_setup(prompts=1, with_outputs=False)
    _client(client, AdminFactory())

    response = _post(client, s, prompt=prompt)

    assert response.status_code == 400
    assert message in response.content.decode()
    assert not PlaygroundRequest.objects.exists()


def test_asking_queues_the_question_on_the_gpu_queue_and_shows_it(client, django_capture_on_commit_callbacks):
    from unittest import mock

    s = review_setup(prompts=1, with_outputs=False)
    _client(client, AdminFactory())
    with mock.patch("webapp.celery.app.send_task") as send, django_capture_on_commit_callbacks(execute=True):
        response = _post(client, s, prompt=f"Is gpj.{RLO}exe an image? <script>alert(1)</script>")

    question = PlaygroundRequest.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/playground/{question.pk}/"
    assert send.call_args.args[0] == "workers.playground" and send.call_args.kwargs["queue"] == "gpu"
    assert [a.model_version_id for a in question.answers.all()] == [s.base.pk, s.tuned.pk]
    page = client.get(response["Location"]).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page
    assert 'data-testid="bidi-mark"' in page and RLO not in page.split('<h2>Ask again</h2>')[0]
    assert 'hx-trigger="every 500ms"' in page and 'data-testid="playground-cancel"' in page


def test_keep_adds_the_question_once_and_a_battle_pairs_the_two_answers(client):
    s = review_setup(prompts=1, with_outputs=False)
    admin = AdminFactory()
    question = PlaygroundRequest.objects.create(
        project=s.project, created_by=admin, messages=[{"role": "user", "content": "Why is the sea salty?"}],
        settings={**SETTINGS, "n": 1}, status="succeeded", engine="transformers float32",
    )
    for n, (version, text) in enumerate(((s.base, "Rivers carry salt."), (s.tuned, "Minerals from rocks."))):
        PlaygroundAnswer.objects.create(request=question, model_version=version, position=n, text=text,
                                        finish_reason="stop", tokens=4, seconds=0.5)
    _client(client, admin)

    client.post(f"/playground/{question.pk}/keep/", {"split": "train"})
    client.post(f"/playground/{question.pk}/keep/", {"split": "train"})
    kept = Prompt.objects.get(external_id=f"playground-{question.pk}")
    assert (kept.split, kept.messages) == ("train", question.messages)

    other = PlaygroundRequest.objects.create(
        project=s.project, created_by=admin, messages=[{"role": "user", "content": "Why is the sky blue?"}],
        settings={**SETTINGS, "n": 1}, status="succeeded", engine="transformers float32",
    )
    for answer in question.answers.all():
        answer.pk = None
        answer.request = other
        answer.save()
    page = client.post(f"/playground/{other.pk}/battle/", follow=True).content.decode()

    assert "Sent to a blind battle" in page
    prompt = Prompt.objects.get(external_id=f"playground-{other.pk}")
    assert prompt.split == "heldout"
    [task] = PairTask.objects.filter(purpose="review", prompt=prompt)
    assert {task.completion_a.text, task.completion_b.text} == {"Rivers carry salt.", "Minerals from rocks."}
    assert task.completion_a.generation_settings["dtype"] == "float32"
    assert not GenerationJob.objects.exists()


def test_a_question_left_writing_by_a_worker_that_is_gone_is_failed_with_the_reason(db):
    from datetime import timedelta

    from django.utils import timezone

    s = review_setup(prompts=1, with_outputs=False)
    admin = AdminFactory()
    mine = PlaygroundRequest.objects.create(project=s.project, created_by=admin, messages=[], settings={}, status="running",
                                            worker="gpu@a", heartbeat_at=timezone.now())
    silent = PlaygroundRequest.objects.create(project=s.project, created_by=admin, messages=[], settings={}, status="running",
                                              worker="gpu@b", heartbeat_at=timezone.now() - timedelta(minutes=10))
    alive = PlaygroundRequest.objects.create(project=s.project, created_by=admin, messages=[], settings={}, status="running",
                                             worker="gpu@c", heartbeat_at=timezone.now())

    assert services.playground_requests_reap(worker_name="gpu@a") == [mine.pk]
    assert services.playground_requests_reap(older_than=timedelta(minutes=2)) == [silent.pk]

    statuses = dict(PlaygroundRequest.objects.values_list("pk", "status"))
    assert statuses == {mine.pk: "failed", silent.pk: "failed", alive.pk: "running"}
    assert "ask again" in PlaygroundRequest.objects.get(pk=mine.pk).error


def test_a_generation_job_answers_a_waiting_question_between_two_batches(tiny_model_dir, tiny_adapter_dir):
    # Issue 25: a question waits behind at most one batch of a running job, not the whole job.
    s = review_setup(prompts=4, base_path=str(tiny_model_dir), adapter_path=str(tiny_adapter_dir), with_outputs=False)
    question = services.playground_request_create(
        project=s.project, user=AdminFactory(), prompt="Quick one?", versions=[s.tuned], settings_data=SETTINGS
    )
    job = review_generation.generation_job_create(
        project=s.project, versions=[s.base, s.tuned], settings_data={**SETTINGS, "n": 1}, enqueue=False
    )
    assert review_generation.generation_job_claim(job_id=job.pk, worker="gpu@test")

    job = review_generation.generation_job_execute(job_id=job.pk, batch_size=2, backend="transformers")

    question.refresh_from_db()
    assert job.status == "succeeded" and job.completions_created == 8
    assert (question.status, question.worker) == ("succeeded", "gpu@test"), question.error
    assert question.finished_at < job.finished_at and question.answers.get().text
    assert not services.playground_request_claim(request_id=question.pk, worker="gpu@other"), "its own message does nothing"


def test_the_page_says_what_a_question_waits_behind(client):
    s = review_setup(prompts=1, with_outputs=False)
    job = GenerationJob.objects.create(project=s.project, prompt_ids=[], settings={}, purpose="candidates",
                                       status="running", completions_total=90, completions_created=30)
    _client(client, AdminFactory())

    html = client.get(f"/projects/{s.project.pk}/playground/").content.decode()

    assert (f"The gpu worker is busy with generation job {job.pk} (candidates for labeling) (30 of 90): a question is answered "
            "between two of its batches") in html


def test_best_of_n_writes_n_samples_and_shows_the_one_the_reward_model_scores_highest(client, tiny_model_dir, tiny_adapter_dir,
                                                                                     reward_output_dir):
    from tests.review.test_reward_scores import _reward_run

    s = review_setup(prompts=1, base_path=str(tiny_model_dir), adapter_path=str(tiny_adapter_dir), with_outputs=False)
    admin = AdminFactory()
    with pytest.raises(services.PlaygroundError, match="Best of N needs a reward model trained in this project"):
        services.playground_request_create(project=s.project, user=admin, prompt="Hi?", versions=[s.tuned],
                                           settings_data=SETTINGS, best_of=[3])
    _reward_run(s.project, reward_output_dir)
    question = services.playground_request_create(
        project=s.project, user=admin, prompt="Name a colour.", versions=[s.base, s.tuned], best_of=[1, 3],
        settings_data={**SETTINGS, "temperature": 1.0},
    )
    assert services.playground_request_claim(request_id=question.pk, worker="test")

    question = services.playground_request_execute(request_id=question.pk)

    assert question.status == "succeeded", question.error
    plain, best = question.answers.order_by("position")
    assert (plain.best_of, plain.samples) == (1, [])
    scores = [sample["score"] for sample in best.samples]
    assert len(scores) == 3 and all(isinstance(score, float) for score in scores)
    assert len({sample["text"] for sample in best.samples}) > 1, "seed, seed+1, seed+2 give different samples"
    assert best.text == best.samples[best.best_sample]["text"] and scores[best.best_sample] == max(scores)
    _client(client, admin)
    page = client.get(f"/playground/{question.pk}/").content.decode()
    assert f"Sample {best.best_sample + 1} of 3 shown: the reward model scored it highest." in page
    assert 'data-testid="best-of-samples"' in page
    refused = client.post(f"/playground/{question.pk}/battle/", follow=True).content.decode()
    assert "A best-of-N answer was picked from several samples" in refused
    form = client.get(f"/projects/{s.project.pk}/playground/").content.decode()
    assert f'value="best4:version:{s.tuned.pk}"' in form and "Best of 4: " in form
