"""Forms for review: generation settings for a run's review outputs, and the side-by-side filter."""
from __future__ import annotations

from typing import Any

from django import forms

from training.trainer.review import GenerationSettings

_DEFAULTS = GenerationSettings()


class GenerationForm(forms.Form):
    """GenerationSettings' fields; GenerationSettings itself validates them in the service."""

    max_new_tokens = forms.IntegerField(initial=_DEFAULTS.max_new_tokens, min_value=1, max_value=2048)
    temperature = forms.FloatField(initial=_DEFAULTS.temperature, min_value=0, max_value=2, help_text="0 is greedy.")
    top_p = forms.FloatField(initial=_DEFAULTS.top_p, min_value=0, max_value=1)
    seed = forms.IntegerField(initial=_DEFAULTS.seed, min_value=0)
    create_review_tasks = forms.BooleanField(required=False, initial=True, label="Create blind battles when done")

    def settings_data(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {name: data[name] for name in ("max_new_tokens", "temperature", "top_p", "seed")}


class SideBySideFilter(forms.Form):
    q = forms.CharField(required=False, max_length=200, label="Search")
    differ = forms.BooleanField(required=False, label="Only where the outputs differ")


class VersionPairForm(forms.Form):
    """Two model versions to battle, chosen from those that have generated outputs in the project."""

    version_a = forms.TypedChoiceField(coerce=int, label="Model version")
    version_b = forms.TypedChoiceField(coerce=int, label="against")

    def __init__(self, *args: Any, versions: list, **kwargs: Any) -> None:  # noqa: ANN401
        super().__init__(*args, **kwargs)
        choices = [(v.pk, v.name) for v in versions]
        self.fields["version_a"].choices = choices
        self.fields["version_b"].choices = choices

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("version_a") is not None and data.get("version_a") == data.get("version_b"):
            raise forms.ValidationError("Choose two different model versions.")
        return data


class CandidatesForm(forms.Form):
    """Candidates for labeling: N completions per prompt from one or more model versions, paired for annotators."""

    versions = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple, label="Model versions")
    split = forms.ChoiceField(choices=[("train", "Train prompts"), ("heldout", "Held-out prompts")], initial="train")
    n = forms.IntegerField(initial=2, min_value=1, max_value=8, label="Completions per prompt and version")
    max_new_tokens = forms.IntegerField(initial=_DEFAULTS.max_new_tokens, min_value=1, max_value=2048)
    temperature = forms.FloatField(initial=_DEFAULTS.temperature, min_value=0, max_value=2)
    top_p = forms.FloatField(initial=_DEFAULTS.top_p, min_value=0, max_value=1)
    seed = forms.IntegerField(initial=_DEFAULTS.seed, min_value=0)

    def __init__(self, *args: Any, choices: list[tuple[str, str]], **kwargs: Any) -> None:  # noqa: ANN401
        super().__init__(*args, **kwargs)
        self.fields["versions"].choices = choices

    def settings_data(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {name: data[name] for name in ("max_new_tokens", "temperature", "top_p", "seed", "n")}
