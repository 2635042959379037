"""Forms for labeling pages. Each section belongs to one screen; keep additions in their own section."""
from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model

from labeling.models import Project

# ---------------------------------------------------------------- project settings (views/projects.py)


class ProjectForm(forms.ModelForm):
    members = forms.ModelMultipleChoiceField(
        queryset=get_user_model().objects.filter(is_active=True).order_by("username"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Annotators who may work this project. Admins can always open it.",
    )

    label_order = forms.ChoiceField(
        choices=Project.LabelOrder.choices, required=False, initial=Project.LabelOrder.IN_ORDER,
        label="Label order (compare projects)", help_text=Project._meta.get_field("label_order").help_text,
    )

    class Meta:
        model = Project
        fields = ["name", "description", "mode", "overlap", "guidelines", "label_order", "members", "playground_for_annotators"]
        widgets = {"guidelines": forms.Textarea(attrs={"rows": 10}), "description": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            # Tasks already exist in the project's mode; switching it would orphan them.
            self.fields["mode"].disabled = True

    def clean_label_order(self) -> str:
        return self.cleaned_data.get("label_order") or self.instance.label_order or Project.LabelOrder.IN_ORDER


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
    keep_cut_off_chosen = forms.BooleanField(required=False, label="Keep pairs whose chosen answer was cut off")


# ---------------------------------------------------------------- end of import and export
