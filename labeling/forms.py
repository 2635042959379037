"""Forms for labeling pages. Each section belongs to one screen; keep additions in their own section."""
from __future__ import annotations

from django import forms
from django.conf import settings

# ---------------------------------------------------------------- import and export (views/transfer.py)


class ImportForm(forms.Form):
    file = forms.FileField(
        label="File",
        allow_empty_file=True,  # the importer says "The file is empty", like the command and the API
        help_text="A .jsonl (JSON Lines) or .csv file, UTF-8.",
        widget=forms.ClearableFileInput(attrs={"accept": ".jsonl,.json,.ndjson,.csv"}),
    )

    def clean_file(self):  # noqa: ANN201
        upload = self.cleaned_data["file"]
        max_bytes = settings.PREFTUNE_IMPORT_MAX_BYTES
        # Checked on the upload's size, before its contents are read into memory.
        if upload.size > max_bytes:
            raise forms.ValidationError(
                f"The file is {upload.size:,} bytes, over the {max_bytes:,}-byte limit; split it into smaller files.",
                code="too_large",
            )
        return upload


class ExportForm(forms.Form):
    format = forms.ChoiceField(choices=[("dpo", "DPO pairs"), ("kto", "KTO labels")])
    include_review = forms.BooleanField(required=False, label="Include blind review battles")


# ---------------------------------------------------------------- end of import and export
