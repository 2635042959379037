"""The playground's reads: which versions a project's playground offers, a user's recent questions, and what the
gpu worker is busy with (a question waits behind it)."""
from __future__ import annotations

from dataclasses import dataclass

from django.utils import timezone

from labeling.models import Project
from training.models import BaseModel, GenerationJob, ModelVersion, PlaygroundRequest, TuningRun
from training.review.rewards import project_reward_model


def playground_version_choices(*, project: Project) -> list[tuple[str, str]]:
    """The base models this project's runs used (or every registered one, before any run), then each version a
    succeeded run of the project made, newest first: ``versions_from_choices`` values."""
    runs = TuningRun.objects.filter(project=project)
    base_ids = set(runs.values_list("base_model_id", flat=True))
    bases = BaseModel.objects.filter(pk__in=base_ids) if base_ids else BaseModel.objects.all()
    choices = [(f"base:{base.pk}", f"{base.name} (base)") for base in bases.order_by("name")]
    versions = ModelVersion.objects.filter(
        pk__in=runs.filter(status=TuningRun.Status.SUCCEEDED, model_version__isnull=False).values("model_version_id")
    ).order_by("-id")
    choices += [(f"version:{v.pk}", v.name) for v in versions]
    reward = project_reward_model(project=project)
    if reward is not None:
        # Best of N of each, picked by the reward model: a column of its own.
        choices += [
            (f"best{BEST_OF}:{value}", f"Best of {BEST_OF}: {label}, picked by the reward model {reward.name!r}")
            for value, label in list(choices)
        ]
    return choices


BEST_OF = 4


def playground_columns(values: list[str]) -> list[tuple[str, int]]:
    """``playground_version_choices`` values as (``versions_from_choices`` value, best of N)."""
    columns = []
    for value in values:
        prefix, _, rest = value.partition(":")
        if prefix.startswith("best") and prefix[4:].isdigit():
            columns.append((rest, int(prefix[4:])))
        else:
            columns.append((value, 1))
    return columns


def playground_requests(*, project: Project, user: object, limit: int = 8) -> list[PlaygroundRequest]:
    """The user's newest questions in the project, their answers prefetched."""
    return list(
        PlaygroundRequest.objects.filter(project=project, created_by=user).prefetch_related("answers__model_version")
        .order_by("-id")[:limit]
    )


@dataclass(frozen=True)
class WorkerBusy:
    what: str
    done: int
    total: int
    wait: str  # how long a question waits behind it, in words


def gpu_worker_busy() -> WorkerBusy | None:
    """The job a gpu worker is running now, which a new question waits behind; None when none runs."""
    job = GenerationJob.objects.filter(status=GenerationJob.Status.RUNNING).order_by("started_at").first()
    if job is not None:
        return WorkerBusy(
            what=f"generation job {job.pk} ({job.get_purpose_display().lower()})",
            done=job.completions_created + job.completions_skipped, total=job.completions_total,
            wait="a question is answered between two of its batches (on a GPU with vLLM, once the job ends)",
        )
    run = TuningRun.objects.filter(status=TuningRun.Status.RUNNING).order_by("started_at").first()
    if run is not None:
        left = run.eta_seconds(timezone.now())
        wait = f"about {round(left / 60) or 1} min" if left is not None else "until it ends"
        return WorkerBusy(what=f"run {run.name!r}", done=run.step, total=run.total_steps,
                          wait=f"a question waits for the run to finish ({wait}), or for another gpu worker")
    return None
