"""factory_boy factories for the labeling models."""
from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from labeling.models import Completion, PairTask, PairVote, Project, Prompt, RateTask, Rating, TaskStatus
from training.models import BaseModel, DatasetSnapshot, TuningRun

PASSWORD = "pw-for-tests-1"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"annotator{n}")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def save_password(obj, create, extracted, **kwargs):  # noqa: N805
        if create:
            obj.save()


class AdminFactory(UserFactory):
    username = factory.Sequence(lambda n: f"admin{n}")
    is_staff = True
    is_superuser = True


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project

    name = factory.Sequence(lambda n: f"Project {n}")
    mode = Project.Mode.COMPARE
    overlap = 1
    guidelines = "Pick the **more helpful** answer."


class PromptFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Prompt

    project = factory.SubFactory(ProjectFactory)
    messages = factory.Sequence(lambda n: [{"role": "user", "content": f"Question number {n}?"}])


class CompletionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Completion

    prompt = factory.SubFactory(PromptFactory)
    text = factory.Sequence(lambda n: f"Answer {n}.")


def make_pair_task(project: Project, n: int = 0, overlap: int | None = None) -> PairTask:
    prompt = PromptFactory(project=project, messages=[{"role": "user", "content": f"Prompt {n}: what is {n}+{n}?"}])
    a = CompletionFactory(prompt=prompt, text=f"{2 * n}")
    b = CompletionFactory(prompt=prompt, text=f"{2 * n + 1}, I think")
    return PairTask.objects.create(
        project=project, prompt=prompt, completion_a=a, completion_b=b, overlap=overlap or project.overlap
    )


def make_rate_task(project: Project, n: int = 0, overlap: int | None = None) -> RateTask:
    prompt = PromptFactory(project=project, messages=[{"role": "user", "content": f"Say hello #{n}"}])
    completion = CompletionFactory(prompt=prompt, text=f"Hello {n}!")
    return RateTask.objects.create(project=project, completion=completion, overlap=overlap or project.overlap)




def make_pair_vote(
    task: PairTask,
    annotator,  # noqa: ANN001
    choice: str,
    *,
    a_side: str = "left",
    time_spent_ms: int = 0,
    rationale: str = "",
    strength: int | None = None,
) -> PairVote:
    """Store a compare vote directly (no lease, no service) and count it on the task, as the service would."""
    vote = PairVote.objects.create(
        task=task,
        annotator=annotator,
        choice=choice,
        a_side=a_side,
        time_spent_ms=time_spent_ms,
        rationale=rationale,
        strength=strength,
        client_key=f"test-{task.pk}-{annotator.pk}",
    )
    task.vote_count += 1
    if task.vote_count >= task.overlap:
        task.status = TaskStatus.COMPLETE
    task.save(update_fields=["vote_count", "status"])
    return vote


def make_rating(task: RateTask, annotator, value: str, *, time_spent_ms: int = 0) -> Rating:  # noqa: ANN001
    """Store a thumbs rating directly and count it on the task, as the service would."""
    rating = Rating.objects.create(
        task=task,
        completion_id=task.completion_id,
        annotator=annotator,
        value=value,
        time_spent_ms=time_spent_ms,
        client_key=f"test-rate-{task.pk}-{annotator.pk}",
    )
    task.vote_count += 1
    if task.vote_count >= task.overlap:
        task.status = TaskStatus.COMPLETE
    task.save(update_fields=["vote_count", "status"])
    return rating


def make_run(project: Project, *, status: str = "queued", method: str = "dpo", base_path: str = "/nonexistent") -> TuningRun:
    """A run row with a tiny frozen snapshot, for screens and state transitions (nothing is trained)."""
    base, _ = BaseModel.objects.get_or_create(name="test-base", defaults={"path": base_path})
    rows = [{"prompt": [{"role": "user", "content": "hi"}], "chosen": [{"role": "assistant", "content": "hello"}],
             "rejected": [{"role": "assistant", "content": "go away"}]}]
    snapshot = DatasetSnapshot.objects.create(project=project, method=method, rows=rows, rows_hash="0" * 64, row_count=1)
    return TuningRun.objects.create(
        project=project, name=f"run of {project.name}", method=method, base_model=base, settings={"method": method},
        snapshot=snapshot, status=status,
    )
