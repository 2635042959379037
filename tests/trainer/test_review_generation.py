"""generate_for_versions on the tiny model: one loaded base, adapters switched on and off, same texts as
loading each version separately."""

from __future__ import annotations

import pytest

from training.base_models import random_lora_adapter
from training.trainer import generate, load_for_generation
from training.trainer.generation_settings import GenerationSettings
from training.trainer.version_generation import generate_for_versions

PROMPTS = [
    [{"role": "user", "content": "Say hello."}],
    [{"role": "user", "content": "Name a colour."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Count to three."}],
]


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("adapters")
    return {
        "one": str(random_lora_adapter(tiny_model_dir, folder / "one", seed=1, scale=20.0)),
        "two": str(random_lora_adapter(tiny_model_dir, folder / "two", seed=2, scale=20.0)),
    }


def _alone(model_dir, adapter_dir, settings: GenerationSettings) -> list[str]:
    model, tokenizer = load_for_generation(str(model_dir), adapter_dir)
    return generate(
        model, tokenizer, PROMPTS, max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
        top_p=settings.top_p, seed=settings.seed, batch_size=2,
    )


def test_one_loaded_base_gives_the_same_texts_as_loading_each_version(tiny_model_dir, adapters):
    settings = GenerationSettings(temperature=0, max_new_tokens=6, seed=0)
    done = []
    texts = generate_for_versions(
        str(tiny_model_dir), {"base": None, "one": adapters["one"], "two": adapters["two"]}, PROMPTS, settings,
        batch_size=2, on_version_done=lambda name, _: done.append(name),
    )
    assert done == ["base", "one", "two"]
    assert [t[0] for t in texts["base"]] == _alone(tiny_model_dir, None, settings)
    assert [t[0] for t in texts["one"]] == _alone(tiny_model_dir, adapters["one"], settings)
    assert [t[0] for t in texts["two"]] == _alone(tiny_model_dir, adapters["two"], settings)
    # The random adapters really change what the model says, so the comparison above means something.
    assert texts["one"] != texts["base"] and texts["two"] != texts["one"]


def test_n_samples_use_consecutive_seeds(tiny_model_dir, adapters):
    settings = GenerationSettings(temperature=1.0, top_p=1.0, max_new_tokens=5, seed=3, n=2)
    texts = generate_for_versions(str(tiny_model_dir), {"base": None}, PROMPTS, settings, batch_size=3)
    assert [len(samples) for samples in texts["base"]] == [2, 2, 2]
    first = GenerationSettings(temperature=1.0, top_p=1.0, max_new_tokens=5, seed=3)
    second = GenerationSettings(temperature=1.0, top_p=1.0, max_new_tokens=5, seed=4)
    model, tokenizer = load_for_generation(str(tiny_model_dir))
    for k, s in enumerate((first, second)):
        alone = generate(model, tokenizer, PROMPTS, max_new_tokens=5, temperature=1.0, top_p=1.0, seed=s.seed, batch_size=3)
        assert [samples[k] for samples in texts["base"]] == alone


def test_each_batch_is_reported_with_finish_reasons_prompt_by_prompt(tiny_model_dir, adapters):
    settings = GenerationSettings(temperature=1.0, top_p=1.0, max_new_tokens=4, seed=0, n=2)
    calls = []

    texts = generate_for_versions(
        str(tiny_model_dir), {"base": None, "one": adapters["one"]}, PROMPTS, settings, batch_size=2,
        on_batch_done=lambda *args: calls.append(args),
    )

    # A batch of prompts gets every version and every sample before the next batch starts.
    assert [(name, indices, k) for name, indices, k, _, _ in calls] == [
        ("base", [0, 1], 0), ("base", [0, 1], 1), ("one", [0, 1], 0), ("one", [0, 1], 1),
        ("base", [2], 0), ("base", [2], 1), ("one", [2], 0), ("one", [2], 1),
    ]
    for name, indices, k, batch_texts, reasons in calls:
        assert batch_texts == [texts[name][i][k] for i in indices]
        assert reasons == ["length"] * len(indices), "a random model never ends within 4 tokens"


def test_a_second_temperature_draws_every_other_sample_and_samples_can_be_chosen(tiny_model_dir):
    from training.trainer.generation import generate_outputs

    settings = GenerationSettings(temperature=0.3, alt_temperature=1.5, top_p=1.0, max_new_tokens=5, seed=2, n=2)
    texts = generate_for_versions(str(tiny_model_dir), {"base": None}, PROMPTS, settings, batch_size=3, samples=[1])

    model, tokenizer = load_for_generation(str(tiny_model_dir))
    hot = generate_outputs(model, tokenizer, PROMPTS, max_new_tokens=5, temperature=1.5, top_p=1.0, seed=3, batch_size=3)
    assert [samples[1] for samples in texts["base"]] == [o.text for o in hot]
    assert [samples[0] for samples in texts["base"]] == ["", "", ""], "sample 0 was not asked for"
    with pytest.raises(ValueError, match="samples must be among"):
        generate_for_versions(str(tiny_model_dir), {"base": None}, PROMPTS, settings, samples=[2])
