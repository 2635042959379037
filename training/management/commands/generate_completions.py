"""Generate completions from model versions: review outputs for a run, or candidates for labeling.

    manage.py generate_completions --run 7 --max-new-tokens 128 --create-battles
    manage.py generate_completions --project 3 --versions 4,5 --purpose candidates --n 2 --split train
    manage.py generate_completions --run 7 --inline --backend vllm
    manage.py generate_completions --run 7 --reuse-other-engines   # reuse and match across engines (mixed)
"""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from labeling.models import Project
from training.management.runs import run_with_review_versions
from training.models import GenerationJob, ModelVersion
from training.review import generation as review_generation
from training.review import versions as review_versions
from training.templatetags.numbers import format_number
from training.trainer.generation_backends import BACKENDS, GenerationBackendError, resolve_backend


def _ids(raw: str | None) -> list[int] | None:
    if not raw:
        return None
    try:
        return [int(part) for part in raw.split(",") if part.strip()]
    except ValueError as exc:
        raise CommandError(f"Expected comma-separated ids, got {raw!r}.") from exc


class Command(BaseCommand):
    help = "Queue (or, with --inline, run here) a generation job; prints the job id and, inline, its outcome."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--run", type=int, help="A succeeded run: generate with its base and its tuned adapter.")
        parser.add_argument("--project", type=int, help="The project whose prompts to complete (with --versions).")
        parser.add_argument("--versions", help="Comma-separated model version ids (with --project).")
        parser.add_argument("--prompts", help="Comma-separated prompt ids; default: every prompt in --split.")
        parser.add_argument("--split", default="heldout", choices=["heldout", "train"])
        parser.add_argument("--purpose", default="review", choices=GenerationJob.Purpose.values)
        parser.add_argument("--temperature", type=float, default=0.7)
        parser.add_argument("--top-p", type=float, default=0.9)
        parser.add_argument("--max-new-tokens", type=int, default=256)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--n", type=int, default=1, help="Completions (samples) per prompt and version (1-8).")
        parser.add_argument(
            "--create-battles", "--create-review-tasks", dest="create_battles", action="store_true",
            help="Review jobs of two versions: when done, blind battles of the matched outputs (compare project) or "
            "held-out thumbs tasks (rate project).",
        )
        parser.add_argument("--inline", action="store_true", help="Generate in this process instead of on a gpu worker.")
        parser.add_argument(
            "--backend", choices=BACKENDS,
            help="With --inline: the engine to generate with (default: PREFTUNE_GENERATION_BACKEND). A queued job "
            "uses its worker's setting.",
        )
        parser.add_argument(
            "--reuse-other-engines", action="store_true",
            help="Reuse outputs another engine or precision wrote and match across engines; the figures are then "
            "labelled mixed engines. Default: only the job's own engine and precision.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        backend = options["backend"]
        if backend and not options["inline"]:
            raise CommandError("--backend picks the engine of an --inline job; a queued job uses its gpu worker's "
                               "PREFTUNE_GENERATION_BACKEND.")
        if options["inline"]:
            backend = backend or settings.PREFTUNE_GENERATION_BACKEND
            try:
                # Refused here, before a job exists, rather than failing the job after it is made.
                resolve_backend(backend)
            except GenerationBackendError as error:
                raise CommandError(str(error)) from error
        run = None
        if options["run"]:
            run, base, tuned = run_with_review_versions(options["run"])
            project = run.project
            versions = [base, tuned]
        else:
            project = Project.objects.filter(pk=options["project"]).first() if options["project"] else None
            version_ids = _ids(options["versions"])
            if project is None or not version_ids:
                raise CommandError("Give --run, or --project and --versions.")
            versions = list(ModelVersion.objects.filter(pk__in=version_ids).order_by("id"))
            if len(versions) != len(set(version_ids)):
                raise CommandError(f"Unknown model version id(s) in {options['versions']!r}.")
        settings_data = {
            "temperature": options["temperature"], "top_p": options["top_p"], "max_new_tokens": options["max_new_tokens"],
            "seed": options["seed"], "n": options["n"],
        }
        try:
            job = review_generation.generation_job_create(
                project=project, versions=versions, settings_data=settings_data, purpose=options["purpose"],
                prompt_ids=_ids(options["prompts"]), split=options["split"], run=run,
                create_review_tasks=options["create_battles"], reuse_other_engines=options["reuse_other_engines"],
                enqueue=not options["inline"],
            )
        except review_versions.ReviewError as error:
            raise CommandError(error.message) from error
        if not options["inline"]:
            self.stdout.write(f"Queued generation job {job.pk}: {job.prompt_count} prompts × {len(versions)} versions.")
            return
        review_generation.generation_job_claim(job_id=job.pk, worker="manage.py generate_completions")
        job = review_generation.generation_job_execute(job_id=job.pk, backend=backend)
        if job.status != GenerationJob.Status.SUCCEEDED:
            raise CommandError(f"Generation job {job.pk} failed: {job.error}")
        self.stdout.write(
            f"Generation job {job.pk} succeeded: {job.completions_created} completions created, "
            f"{job.completions_skipped} already there, {job.tasks_created} tasks created."
        )
        movement = job.movement or {}
        if movement.get("pairs"):
            kl = movement.get("kl_per_token")
            self.stdout.write(
                f"Did the tuned model move? {movement['identical']} of {movement['pairs']} matched outputs are identical "
                f"to the base's; KL {'not measured' if kl is None else format_number(kl)} per token; "
                f"written by {movement.get('engines') or job.engine}."
            )
        for note in job.notes or []:
            self.stdout.write(f"  note: {note}")
