"""Export a tuned version: its LoRA adapter, or the adapter merged into the base model (safetensors). Run it where
the models are (a worker): it builds the zip here and now, as an export job does, or reuses the one already built."""
from __future__ import annotations

import zipfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from training.exports import ExportError, version_export_build
from training.models import ModelVersion


class Command(BaseCommand):
    help = "Write a model version's adapter (or, with --merged, a merged safetensors model) to a folder."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("version", help="The version's id or name.")
        parser.add_argument("--out", required=True, help="Folder to write into (created if missing).")
        parser.add_argument("--merged", action="store_true", help="Merge the adapter into the base weights.")

    def handle(self, *args: object, **options: object) -> None:
        key = str(options["version"])
        versions = ModelVersion.objects.select_related("base_model")
        version = versions.filter(pk=int(key)).first() if key.isdigit() else versions.filter(name=key).first()
        if version is None:
            raise CommandError(f"No model version with id or name {key!r}.")
        try:
            zip_path = version_export_build(version=version, kind="merged" if options["merged"] else "adapter")
        except ExportError as exc:
            raise CommandError(str(exc)) from exc
        out = Path(str(options["out"]))
        out.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(out)
        written = out / archive.namelist()[0].split("/", 1)[0]
        self.stdout.write(f"Wrote {written}")
