"""Launch a tuning run from a script: the same validation and frozen snapshot as the dashboard form."""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from labeling.models import Project
from training.models import BaseModel, TuningRun
from training.services import NOISE_HANDLING, LaunchError, run_launch


def _setting(raw: str) -> tuple[str, object]:
    key, sep, value = raw.partition("=")
    if not sep or not key:
        raise CommandError(f"--set takes KEY=VALUE (a JSON value), got {raw!r}.")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


class Command(BaseCommand):
    help = "Launch a DPO or KTO run on a project's current preferences; prints the run id."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", required=True, help="Project name.")
        parser.add_argument("--method", choices=list(TuningRun.Method.values), required=True)
        parser.add_argument("--base-model", default="SmolLM2-135M-Instruct", help="Base model name in the registry.")
        parser.add_argument("--name", default="")
        parser.add_argument("--no-review", action="store_true", help="Leave out blind-battle (review) votes.")
        parser.add_argument(
            "--include-heldout", action="store_true",
            help="Also train on votes about held-out prompts (the version is then flagged as contaminated).",
        )
        parser.add_argument(
            "--keep-cut-off-chosen", action="store_true",
            help="Keep pairs whose chosen answer was cut off at the token limit (left out by default).",
        )
        parser.add_argument("--noise", choices=list(NOISE_HANDLING), default="none", help="How to handle annotator noise.")
        parser.add_argument(
            "--set", action="append", default=[], metavar="KEY=VALUE",
            help='Training settings, e.g. --set max_steps=20 --set lora=\'{"r": 8}\' (JSON values).',
        )

    def handle(self, *args: object, **options: object) -> None:
        project = Project.objects.filter(name=options["project"]).first()
        if project is None:
            raise CommandError(f"No project named {options['project']!r}.")
        base = BaseModel.objects.filter(name=options["base_model"]).first()
        if base is None:
            names = ", ".join(BaseModel.objects.values_list("name", flat=True)) or "none (run prepare_base_model)"
            raise CommandError(f"No base model named {options['base_model']!r}; registered: {names}.")
        try:
            run = run_launch(
                project=project,
                base_model_id=base.pk,
                method=options["method"],
                settings_data=dict(_setting(raw) for raw in options["set"]),
                created_by=None,
                name=options["name"],
                include_review=not options["no_review"],
                include_heldout=options["include_heldout"],
                noise_handling=options["noise"],
                keep_cut_off_chosen=options["keep_cut_off_chosen"],
            )
        except LaunchError as error:
            raise CommandError(error.message) from error
        self.stdout.write(
            f"Queued run {run.pk} ({run.name}): {run.train_rows} training rows, {run.validation_rows} validation, "
            f"snapshot {run.snapshot.rows_hash[:12]}."
        )
