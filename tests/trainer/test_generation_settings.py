"""GenerationSettings' second temperature: validated, recorded per sample, and invisible when unused."""

from __future__ import annotations

import pytest

from training.trainer.generation_settings import GenerationSettings, GenerationSettingsError


def test_without_a_second_temperature_the_stored_shapes_are_unchanged():
    settings = GenerationSettings.from_dict({"temperature": 0.7, "max_new_tokens": 16, "seed": 4, "n": 2})

    assert settings.to_dict() == {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 16, "seed": 4, "n": 2}
    assert settings.for_sample(1) == {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 16, "seed": 4, "sample": 1}


def test_a_second_temperature_draws_every_other_sample_and_each_sample_records_its_own():
    settings = GenerationSettings.from_dict({"temperature": 0.3, "alt_temperature": 1.1, "n": 4})

    assert [settings.temperature_for(k) for k in range(4)] == [0.3, 1.1, 0.3, 1.1]
    assert settings.for_sample(1)["temperature"] == 1.1 and settings.for_sample(2)["temperature"] == 0.3
    assert "alt_temperature" not in settings.for_sample(1)
    assert GenerationSettings.from_dict(settings.to_dict()) == settings
    # A sample drawn the same way by a job without a second temperature is the same sample, and is reused.
    plain = GenerationSettings(temperature=1.1, n=2)
    assert plain.for_sample(1) == settings.for_sample(1)


def test_greedy_is_allowed_once_per_prompt():
    assert GenerationSettings(temperature=0, alt_temperature=1.0, n=2).validate().temperature_for(0) == 0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"alt_temperature": 2.5, "n": 2}, "second temperature must be between"),
        ({"alt_temperature": "hot", "n": 2}, "second temperature must be between"),
        ({"alt_temperature": 0.7, "n": 2}, "must differ"),
        ({"alt_temperature": 1.1, "n": 1}, "at least two completions"),
        ({"temperature": 0, "alt_temperature": 1.0, "n": 3}, "Greedy"),
    ],
)
def test_a_second_temperature_that_cannot_work_is_refused(data, message):
    with pytest.raises(GenerationSettingsError, match=message):
        GenerationSettings.from_dict(data)


def test_style_hints_write_each_sample_under_its_own_hint_and_record_its_name():
    settings = GenerationSettings.from_dict({"n": 5, "style_hints": True})
    prompt = [{"role": "user", "content": "What is rain?"}]

    assert settings.messages_for(prompt, 0) == prompt, "the first sample is the model as it is"
    assert settings.messages_for(prompt, 2) == [
        {"role": "system", "content": "Answer as a short list of points."}, *prompt
    ]
    assert [settings.for_sample(k)["style"] for k in range(5)] == ["plain", "brief", "list", "warm", "detailed"]
    assert settings.to_dict()["style_hints"] is True
    assert "style_hints" not in GenerationSettings(n=2).to_dict() and "style" not in GenerationSettings(n=2).for_sample(1)
    # A prompt with its own system message keeps it: the hint never overrides what the project wrote.
    own = [{"role": "system", "content": "You are a pirate."}, *prompt]
    assert settings.messages_for(own, 3) == own


@pytest.mark.parametrize(
    ("data", "message"),
    [({"n": 1, "style_hints": True}, "at least two"), ({"n": 2, "style_hints": "yes"}, "true or false")],
)
def test_style_hints_that_cannot_work_are_refused(data, message):
    with pytest.raises(GenerationSettingsError, match=message):
        GenerationSettings.from_dict(data)
