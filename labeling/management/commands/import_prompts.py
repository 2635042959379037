"""Import prompts and completions into a project from a JSON Lines or CSV file."""
from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from labeling.importing import FORMAT_HELP, ImportFailed, project_import
from labeling.models import Project


class Command(BaseCommand):
    help = "Import prompts and completions into a project and create its tasks. " + FORMAT_HELP

    def add_arguments(self, parser) -> None:  # noqa: ANN001
        parser.add_argument("--project", required=True, help="The project's name.")
        parser.add_argument("file", type=Path, help="A .jsonl or .csv file.")

    def handle(self, *args, **options) -> None:  # noqa: ANN002, ANN003
        project = Project.objects.filter(name=options["project"]).first()
        if project is None:
            raise CommandError(f"No project named {options['project']!r}.")
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"{path} is not a file.")
        max_bytes = settings.PREFTUNE_IMPORT_MAX_BYTES
        if path.stat().st_size > max_bytes:
            raise CommandError(f"{path} is {path.stat().st_size:,} bytes, over the {max_bytes:,}-byte import limit.")
        try:
            report = project_import(project=project, filename=path.name, data=path.read_bytes())
        except ImportFailed as exc:
            for error in exc.errors:
                self.stderr.write(error)
            raise CommandError(exc.message) from exc
        self.stdout.write(f"Imported {path.name} into {project.name!r}: {report}.")
