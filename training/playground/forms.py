"""The playground's question form: the prompt, an optional system message, the versions, and the review form's
sampling settings with its defaults (so an answer here is the one the review would write)."""
from __future__ import annotations

from typing import Any

from django import forms

from training.playground.services import MAX_PROMPT_CHARS
from training.review.forms import CANDIDATE_MAX_NEW_TOKENS
from training.trainer.generation_settings import GenerationSettings

_DEFAULTS = GenerationSettings()


class PlaygroundForm(forms.Form):
    # No max_length on the text fields: the service refuses an over-long prompt with a sentence that says the limit,
    # rather than the browser cutting a paste short without a word.
    prompt = forms.CharField(widget=forms.Textarea(attrs={"rows": 5, "data-testid": "playground-prompt"}), strip=False,
                             help_text=f"Up to {MAX_PROMPT_CHARS:,} characters.")
    system = forms.CharField(required=False, strip=False, label="System message (optional)",
                             widget=forms.Textarea(attrs={"rows": 2}))
    versions = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple, label="Versions to compare",
                                         help_text="One column each, left to right; at most 4.")
    max_new_tokens = forms.IntegerField(initial=CANDIDATE_MAX_NEW_TOKENS, min_value=1, max_value=2048)
    temperature = forms.FloatField(initial=_DEFAULTS.temperature, min_value=0, max_value=2, help_text="0 is greedy.")
    top_p = forms.FloatField(initial=_DEFAULTS.top_p, min_value=0, max_value=1)
    seed = forms.IntegerField(initial=_DEFAULTS.seed, min_value=0,
                              help_text="The review's sample 1 uses this seed: the same settings give its answer.")

    def __init__(self, *args: Any, choices: list[tuple[str, str]], **kwargs: Any) -> None:  # noqa: ANN401
        super().__init__(*args, **kwargs)
        self.fields["versions"].choices = choices
        # The base and the newest tuned version, side by side.
        bases = [value for value, _ in choices if value.startswith("base:")]
        tuned = [value for value, _ in choices if value.startswith("version:")]
        self.fields["versions"].initial = bases[:1] + tuned[:1]

    def settings_data(self) -> dict[str, Any]:
        return {name: self.cleaned_data[name] for name in ("max_new_tokens", "temperature", "top_p", "seed")}
