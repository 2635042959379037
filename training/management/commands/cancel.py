"""Cancel a tuning run or a generation job from a shell, as the Cancel buttons do.

    manage.py cancel --run 7      # queued: cancelled at once; running: stops after its current step
    manage.py cancel --job 12     # queued: never starts; running: stops after the batch it is writing
"""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from training import services
from training.models import GenerationJob, TuningRun
from training.review import generation as review_generation


class Command(BaseCommand):
    help = "Cancel a tuning run (--run) or a generation job (--job), as the Cancel buttons do."

    def add_arguments(self, parser: CommandParser) -> None:
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--run", type=int, help="A tuning run's id.")
        which.add_argument("--job", type=int, help="A generation job's id (candidates, review outputs, scores).")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["run"] is not None:
            run = TuningRun.objects.filter(pk=options["run"]).first()
            if run is None:
                raise CommandError(f"No run with id {options['run']}.")
            self.stdout.write(services.run_cancel_outcome(services.run_cancel(run=run)))
            return
        job = GenerationJob.objects.filter(pk=options["job"]).first()
        if job is None:
            raise CommandError(f"No generation job with id {options['job']}.")
        self.stdout.write(review_generation.generation_job_cancel(job=job))
