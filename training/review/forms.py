"""Forms for review: generation settings for a run's review outputs, the side-by-side filter and comparison
picker, two versions to battle, and candidates for labeling."""
from __future__ import annotations

from typing import Any

from django import forms

from training.review.generation import PAIRING_CHOICES, PAIRINGS
from training.review.selectors import TARGET_MATCHED_PAIRS, samples_for_target
from training.trainer.candidates import AGAINST_FINISHED, LEFT_OUT, MIXED_TEMPERATURES, PAIRED
from training.trainer.generation_settings import GenerationSettings

_DEFAULTS = GenerationSettings()

# Candidates are paired for annotators, and an answer cut off at the token limit carries little signal, so the
# default should let most answers end on their own. Measured once on the bundled SmolLM2-135M-Instruct (32 prompts:
# 16 from labeling/demo/compare.jsonl, 16 from bench/alignment_prompts.py; temperature 0.7, top_p 0.9), the share
# of answers that ended within the limit: 128 tokens → 47%, 256 → 56%, 384 → 72%. Most of the rest loop (one
# sentence over and over) and never end: sampled again up to 768 tokens, 4 of those 9 ended (one at 388, 533 and
# 706 tokens) and 5 still looped. So with this model no limit reaches ~85%, and past 384 tokens each step buys
# little while costing the most: a batch runs as long as its longest answer, and a looping answer always runs to
# the limit (32 prompts × 384 tokens took about 3 minutes on a shared 2-core CPU). The answers that are cut off
# are marked, and by default paired only against finished ones (training.trainer.candidates).
CANDIDATE_MAX_NEW_TOKENS = 384


class GenerationForm(forms.Form):
    """GenerationSettings' fields; GenerationSettings itself validates them in the service (temperature 0 with
    more than one sample is refused there).

    ``heldout_prompts`` sets the default samples per prompt so that the run gets at least
    ``TARGET_MATCHED_PAIRS`` matched pairs (at most 8 samples); ``rate_project`` offers held-out thumbs instead of
    blind battles, which a thumbs project cannot vote on."""

    n = forms.IntegerField(initial=1, min_value=1, max_value=8, label="Samples per prompt")
    # The candidates' limit: a review that cut answers off shorter than the training data's compares unfinished
    # answers (at 256 against candidates' 384, 137 of 180 review outputs were cut off).
    max_new_tokens = forms.IntegerField(
        initial=CANDIDATE_MAX_NEW_TOKENS, min_value=1, max_value=2048,
        help_text="The same limit as the candidates' by default; answers still going at it are cut off and marked.",
    )
    temperature = forms.FloatField(initial=_DEFAULTS.temperature, min_value=0, max_value=2, help_text="0 is greedy.")
    top_p = forms.FloatField(initial=_DEFAULTS.top_p, min_value=0, max_value=1)
    seed = forms.IntegerField(initial=_DEFAULTS.seed, min_value=0)
    create_review_tasks = forms.BooleanField(required=False, initial=True, label="Create blind battles when done")
    reuse_other_engines = forms.BooleanField(
        required=False, initial=False, label="Reuse answers another engine wrote",
        help_text="Off: base and tuned answers are compared only when one engine wrote both in one precision, and the "
        "worker writes what is missing. On: answers another engine or precision wrote (vLLM in bf16, transformers in "
        "fp32) are reused and compared across engines, and the figures are labelled mixed engines: they then measure "
        "the engine as well as the adapter.",
    )

    def __init__(self, *args: Any, heldout_prompts: int = 0, rate_project: bool = False, **kwargs: Any) -> None:  # noqa: ANN401
        super().__init__(*args, **kwargs)
        self.heldout_prompts = heldout_prompts
        self.fields["n"].initial = samples_for_target(heldout_prompts)
        self.fields["n"].help_text = self.samples_sentence
        if rate_project:
            self.fields["create_review_tasks"].label = "Ask annotators for held-out thumbs when done"

    @property
    def samples_sentence(self) -> str:
        """"30 held-out prompts × 3 samples = 90 matched pairs"."""
        prompts, n = self.heldout_prompts, self.fields["n"].initial
        if prompts <= 0:
            return "This project has no held-out prompts yet."
        sentence = f"{prompts} held-out prompt{'s' if prompts != 1 else ''} × {n} sample{'s' if n != 1 else ''} = {prompts * n} matched pairs"
        if prompts * n < TARGET_MATCHED_PAIRS:
            sentence += f" (fewer than {TARGET_MATCHED_PAIRS}: more held-out prompts would narrow the intervals)"
        return sentence + "."

    def settings_data(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {name: data[name] for name in ("max_new_tokens", "temperature", "top_p", "seed", "n")}


class SideBySideFilter(forms.Form):
    q = forms.CharField(required=False, max_length=200, label="Search")
    differ = forms.BooleanField(required=False, label="Only where the outputs differ")
    # A comparison's key (training.review.comparisons.comparison_key); an unknown one falls back to the default.
    settings = forms.CharField(required=False, max_length=64, label="Comparison")


class VersionPairForm(forms.Form):
    """Two model versions to battle, chosen from those that have generated outputs in the project. The menus
    start on two different versions: the newest tuned one against a base."""

    version_a = forms.TypedChoiceField(coerce=int, label="Model version")
    version_b = forms.TypedChoiceField(coerce=int, label="against")

    def __init__(self, *args: Any, versions: list, **kwargs: Any) -> None:  # noqa: ANN401
        super().__init__(*args, **kwargs)
        choices = [(v.pk, v.name) for v in versions]
        self.fields["version_a"].choices = choices
        self.fields["version_b"].choices = choices
        if len(versions) >= 2:
            newest = max(versions, key=lambda v: (bool(v.adapter_path), v.pk))
            others = [v for v in versions if v.pk != newest.pk]
            bases = [v for v in others if not v.adapter_path]
            same_base = [v for v in bases if v.base_model_id == newest.base_model_id]
            opponent = (same_base or bases or others)[0]
            self.fields["version_a"].initial = newest.pk
            self.fields["version_b"].initial = opponent.pk

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("version_a") is not None and data.get("version_a") == data.get("version_b"):
            raise forms.ValidationError("Choose two different model versions.")
        return data




CUT_OFF_FORM_CHOICES = [
    (AGAINST_FINISHED, "Paired only against a finished answer"),
    (LEFT_OUT, "Left out of pairs"),
    (PAIRED, "Paired like any other answer"),
]


class CandidatesForm(forms.Form):
    """Candidates for labeling: N completions per prompt from one or more model versions, paired for annotators."""

    versions = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple, label="Model versions")
    split = forms.ChoiceField(choices=[("train", "Train prompts"), ("heldout", "Held-out prompts")], initial="train")
    # Three, not two: at the bundled model's 72% finished share two answers give a pair for half the prompts
    # (0.72²) and three for four in five (training.trainer.candidates.expected_pairs).
    n = forms.IntegerField(
        initial=3, min_value=1, max_value=8, label="Completions per prompt and version",
        help_text="Each extra answer makes a pair likelier: at 72% finished, with cut-off answers paired only against "
        "finished ones, 2 answers give 92% of the prompts a pair and 3 give 98% (left out of pairs: half and four in five).",
    )
    # Not required: a client that leaves it out (a script, an older form) gets all against all, as before.
    pairing = forms.ChoiceField(
        choices=PAIRING_CHOICES, initial=PAIRING_CHOICES[0][0], required=False, label="Pairs",
        help_text=" ".join(f"{label}: {help_text}" for _, label, help_text in PAIRINGS),
    )
    temperature = forms.FloatField(initial=_DEFAULTS.temperature, min_value=0, max_value=2)
    alt_temperature = forms.FloatField(
        required=False, min_value=0, max_value=2, initial=1.1, label="Second temperature",
        help_text="Two temperatures only: every other sample is drawn at this one (e.g. 0.3 against 1.1).",
    )
    top_p = forms.FloatField(initial=_DEFAULTS.top_p, min_value=0, max_value=1)
    max_new_tokens = forms.IntegerField(
        initial=CANDIDATE_MAX_NEW_TOKENS, min_value=1, max_value=2048,
        help_text="Answers still going at this many tokens are cut off. Measured on SmolLM2-135M: 128 tokens → 47% "
        "of answers complete, 256 → 56%, 384 → 72%; most of the rest repeat themselves and never end.",
    )
    style_hints = forms.BooleanField(
        required=False, initial=False, label="Vary the style of the samples",
        help_text="Each sample of a prompt is written under a different style hint (none, brief, a list, a friendly "
        "opening, detailed) that the stored answer does not show, so pairs differ in length, format and tone and a "
        "vote says which of those the annotators prefer. Training then teaches the preferred style without the hint.",
    )
    # Not required: a client that leaves it out gets the default.
    cut_off = forms.ChoiceField(
        choices=CUT_OFF_FORM_CHOICES, initial=AGAINST_FINISHED, required=False, label="Cut-off answers",
        help_text="An answer that hit the token limit is unfinished. Against a finished answer it is a fair question "
        "(most people prefer the answer that ends, or write a better one) and most prompts get a pair; between two "
        "cut-off answers a vote mostly judges where each stops. Training never learns from a cut-off answer as the "
        "chosen one unless an annotator rewrote it.",
    )
    seed = forms.IntegerField(initial=_DEFAULTS.seed, min_value=0)

    def __init__(self, *args: Any, choices: list[tuple[str, str]], **kwargs: Any) -> None:  # noqa: ANN401
        super().__init__(*args, **kwargs)
        self.fields["versions"].choices = choices
        # The base model writes the first candidates (what the dashboard's empty state promises), so the defaults
        # submit as they are; tuned versions are ticked by hand.
        bases = [value for value, _ in choices if value.startswith("base:")]
        self.fields["versions"].initial = bases[:1]

    def clean_pairing(self) -> str:
        return self.cleaned_data["pairing"] or PAIRING_CHOICES[0][0]

    def clean_cut_off(self) -> str:
        return self.cleaned_data["cut_off"] or AGAINST_FINISHED

    def expectation_values(self) -> dict[str, Any] | None:
        """The values ``candidate_expectation`` needs, from the submitted form (or its initial values before a
        submit); None while one of them is missing or invalid."""
        names = ("versions", "split", "n", "max_new_tokens", "pairing", "cut_off")
        if self.is_bound:
            if any(name in self.errors for name in names):
                return None
            values = {name: self.cleaned_data.get(name) for name in names}
        else:
            values = {name: self.get_initial_for_field(self.fields[name], name) for name in names}
        if not values["versions"] or not values["n"] or not values["max_new_tokens"]:
            return None
        return {
            "choices": list(values["versions"]), "split": values["split"], "n": values["n"],
            "token_limit": values["max_new_tokens"], "pairing": values["pairing"] or PAIRING_CHOICES[0][0],
            "cut_off": values["cut_off"] or AGAINST_FINISHED,
        }

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("pairing") == MIXED_TEMPERATURES and data.get("alt_temperature") is None:
            self.add_error("alt_temperature", "Two temperatures need a second temperature.")
        return data

    def settings_data(self) -> dict[str, Any]:
        data = self.cleaned_data
        settings = {name: data[name] for name in ("max_new_tokens", "temperature", "top_p", "seed", "n")}
        # The second temperature applies only to the pairing that uses it; its field keeps an initial value.
        if data["pairing"] == MIXED_TEMPERATURES:
            settings["alt_temperature"] = data["alt_temperature"]
        if data.get("style_hints"):
            settings["style_hints"] = True
        return settings
