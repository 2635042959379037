"""Create blind review battles: a run's tuned version against its base, or any two model versions. Only
outputs made with identical settings are paired (one pair per prompt and sample); identical texts never are.

    manage.py create_battles --run 7
    manage.py create_battles --run 7 --generation-settings '{"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 256, "seed": 0}'
    manage.py create_battles --project 3 --versions 4,5
"""
from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from labeling.models import Project
from training.management.runs import run_with_review_versions
from training.models import ModelVersion
from training.review import battles as review_battles
from training.review import versions as review_versions
from training.review.comparisons import describe_settings


class Command(BaseCommand):
    help = "Create review pair tasks on held-out prompts from generated outputs of two versions; sides random."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--run", type=int)
        parser.add_argument("--project", type=int)
        parser.add_argument("--versions", help="Two comma-separated model version ids (with --project).")
        parser.add_argument("--seed", type=int, default=None, help="Seed for the side order (default: random).")
        parser.add_argument(
            "--generation-settings",
            help="The comparison: the generation settings both outputs were made with, as JSON (the sample index "
            "left out). Default: the newest settings both versions have outputs for.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        run = None
        if options["run"]:
            run, base, tuned = run_with_review_versions(options["run"])
            project = run.project
            first, second = tuned, base
        else:
            project = Project.objects.filter(pk=options["project"]).first() if options["project"] else None
            try:
                ids = [int(part) for part in (options["versions"] or "").split(",") if part.strip()]
            except ValueError as exc:
                raise CommandError("--versions must be two comma-separated ids.") from exc
            if project is None or len(ids) != 2:
                raise CommandError("Give --run, or --project and --versions A,B.")
            found = ModelVersion.objects.in_bulk(ids)
            if len(found) != 2:
                raise CommandError(f"Unknown model version id(s) in {options['versions']!r}.")
            first, second = found[ids[0]], found[ids[1]]
        settings = None
        if options["generation_settings"]:
            try:
                settings = json.loads(options["generation_settings"])
            except json.JSONDecodeError as exc:
                raise CommandError(f"--generation-settings must be a JSON object: {exc}") from exc
            if not isinstance(settings, dict):
                raise CommandError("--generation-settings must be a JSON object.")
        try:
            battle = review_battles.battles_create(
                project=project, version_a=first, version_b=second, run=run, seed=options["seed"], settings=settings
            )
        except review_versions.ReviewError as error:
            raise CommandError(error.message) from error
        self.stdout.write(
            f"Created {battle.tasks_created} battles between {first.name} and {second.name} with "
            f"{describe_settings(battle.settings)} ({battle.identical_skipped} matched pairs left out as identical; "
            f"{battle.prompts_missing_outputs} held-out prompts lack a matched output)."
        )
