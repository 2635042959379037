from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model

from labeling.models import Project


class ProjectForm(forms.ModelForm):
    members = forms.ModelMultipleChoiceField(
        queryset=get_user_model().objects.filter(is_active=True).order_by("username"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Annotators who may work this project. Admins can always open it.",
    )

    class Meta:
        model = Project
        fields = ["name", "description", "mode", "overlap", "guidelines", "members"]
        widgets = {"guidelines": forms.Textarea(attrs={"rows": 10}), "description": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            # Tasks already exist in the project's mode; switching it would orphan them.
            self.fields["mode"].disabled = True
