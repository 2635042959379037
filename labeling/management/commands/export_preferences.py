"""Export a project's preference data as TRL rows (DPO pairs or KTO labels), one JSON object per line."""
from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from labeling.models import Project
from labeling.selectors import EXPORT_FORMATS, export_jsonl, project_export


class Command(BaseCommand):
    help = "Export preference data as JSON Lines for TRL (DPO or KTO). The summary goes to stderr."

    def add_arguments(self, parser) -> None:  # noqa: ANN001
        parser.add_argument("--project", required=True, help="The project's name.")
        parser.add_argument("--format", required=True, choices=EXPORT_FORMATS, dest="fmt")
        parser.add_argument("--out", type=Path, help="The file to write; standard output when left out.")
        parser.add_argument(
            "--purpose",
            choices=("label", "review", "all"),
            default="label",
            help="Which pair tasks to use: labeling pairs (default), blind review battles, or all.",
        )

        parser.add_argument(
            "--keep-cut-off-chosen", action="store_true",
            help="Keep DPO pairs whose chosen answer was cut off at the token limit (left out by default).",
        )

    def handle(self, *args, **options) -> None:  # noqa: ANN002, ANN003
        project = Project.objects.filter(name=options["project"]).first()
        if project is None:
            raise CommandError(f"No project named {options['project']!r}.")
        purpose = None if options["purpose"] == "all" else options["purpose"]
        rows, summary = project_export(
            project=project, fmt=options["fmt"], purpose=purpose, keep_cut_off_chosen=options["keep_cut_off_chosen"]
        )
        data = export_jsonl(rows)
        if options["out"] is None:
            self.stdout.write(data.decode("utf-8"), ending="")
        else:
            options["out"].write_bytes(data)
        counts = ", ".join(f"{name.replace('_', ' ')} {value}" for name, value in summary.as_dict().items())
        where = f" to {options['out']}" if options["out"] else ""
        self.stderr.write(f"Exported {summary.rows} {options['fmt'].upper()} rows{where} ({counts}).")
