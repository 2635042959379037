"""`{{ job|progress }}`: any long job (a run, a generation job, an export) as the one `Progress` the pages draw."""
from __future__ import annotations

from django import template
from django.utils import timezone

from training.models import GenerationJob, TuningRun, VersionExport
from training.presenters.progress import Progress, export_progress, generation_progress, run_progress

register = template.Library()


@register.filter
def progress(job: TuningRun | GenerationJob | VersionExport) -> Progress:
    if isinstance(job, TuningRun):
        return run_progress(job, timezone.now())
    if isinstance(job, GenerationJob):
        return generation_progress(job)
    if isinstance(job, VersionExport):
        return export_progress(job)
    raise TypeError(f"No progress for a {type(job).__name__}.")
