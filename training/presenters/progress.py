"""One long job's progress as every page shows it: done of total, a rate, time left, and Cancel.

A training run, a generation job (candidates, review outputs, reward scores) and a version export each keep their
own counters; these functions turn each into the same `Progress`, and `templates/_progress.html` draws it the same
way wherever it appears (the run page, the review and candidates pages, the dashboard, the exports box).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.template.defaultfilters import filesizeformat
from django.urls import reverse

from training.models import GenerationJob, TuningRun, VersionExport

# Under this many seconds left a forecast is noise: the page says the job is finishing up.
FINISHING_SECONDS = 10


@dataclass(frozen=True)
class Progress:
    label: str  # names the bar for screen readers
    status: str
    active: bool
    percent: int
    done: str  # "12 of 64 answers", "step 30 of 60", "1.2 MB of 3.0 MB"; "" until a total is known
    rate: str  # "4.1 answers a minute"; "" until measured
    seconds_left: float | None  # None until a pace is known
    waiting: str  # said in place of a forecast while there is none
    cancel_url: str  # "" where the job cannot be cancelled from here
    cancelling: str  # said in place of Cancel once it was asked for
    cancel_label: str = "Cancel"

    @property
    def finishing(self) -> bool:
        return self.seconds_left is not None and self.seconds_left < FINISHING_SECONDS


def _per_minute(count: float, noun: str) -> str:
    return f"{count:.1f} {noun} a minute"


def run_progress(run: TuningRun, now) -> Progress:  # noqa: ANN001 - a datetime
    """A training run: steps done of the total, steps a minute at the recent pace, the forecast from that pace."""
    pace = run.step_pace()
    waiting = ""
    if run.status == TuningRun.Status.QUEUED:
        waiting = "waiting for a worker"
    elif run.status == TuningRun.Status.RUNNING and pace is None:
        waiting = "time left once two steps are logged" if run.step else "loading the model"
    return Progress(
        label=f"Training run {run.pk}",
        status=run.status,
        active=run.is_active,
        percent=run.percent,
        done=f"step {run.step} of {run.total_steps}" if run.total_steps else "",
        rate=_per_minute(60 / pace[0], "steps") if pace and pace[0] > 0 else "",
        seconds_left=run.seconds_left_at(pace, now),
        waiting=waiting,
        cancel_url=reverse("training:run_cancel", args=[run.pk]) if run.is_active else "",
        cancelling="Cancelling: training stops after the current step." if run.cancel_requested and run.is_active else "",
        cancel_label="Cancel run",
    )


def generation_progress(job: GenerationJob) -> Progress:
    """A generation job: answers made or reused of those it has to make, answers a minute, the forecast."""
    noun = "answers scored" if job.purpose == "scores" else "answers"
    waiting = ""
    if job.status == GenerationJob.Status.QUEUED:
        waiting = "waiting for a worker"
    elif job.status == GenerationJob.Status.RUNNING and job.seconds_left is None:
        waiting = "time left once the first batch is stored"
    rate = job.per_minute
    return Progress(
        label=f"Job {job.pk}",
        status=job.status,
        active=job.is_active,
        percent=job.percent,
        done=f"{job.completions_created + job.completions_skipped} of {job.completions_total} {noun}"
        if job.completions_total else "",
        rate=_per_minute(rate, noun) if rate is not None else "",
        seconds_left=job.seconds_left,
        waiting=waiting,
        cancel_url=reverse("training:generation_job_cancel", args=[job.pk]) if job.is_active else "",
        cancelling="",
    )


def export_progress(export: VersionExport) -> Progress:
    """A version export: bytes zipped of the total, bytes a second, the forecast."""
    waiting = ""
    if export.status == VersionExport.Status.QUEUED:
        waiting = "waiting for a worker on queue gpu"
    elif export.is_active and export.eta_seconds is None:
        waiting = f"{export.stage or 'working'}…"
    return Progress(
        label=f"{export.get_kind_display()} export",
        status=export.status,
        active=export.is_active,
        percent=export.percent,
        done=f"{filesizeformat(export.bytes_done)} of {filesizeformat(export.bytes_total)}" if export.bytes_total else "",
        rate=f"{filesizeformat(export.bytes_per_second)}/s" if export.bytes_per_second else "",
        seconds_left=export.eta_seconds if export.is_active else None,
        waiting=waiting,
        cancel_url=reverse("training:version_export_cancel", args=[export.version_id, export.kind])
        if export.is_active else "",
        cancelling="Cancelling: it stops at the next chunk of the zip." if export.cancel_requested else "",
    )
