"""Did the tuned model move? Identical-output counts, and the per-token KL(tuned ‖ base) on a tiny model with
one loaded base and the adapter switched on and off (no database)."""

from __future__ import annotations

import pytest

from training.trainer.movement import Movement, adapter_kl_per_token, identical_counts, mean_token_kl

ITEMS = [
    ([{"role": "user", "content": "Say hello."}], "Hello there, friend."),
    ([{"role": "user", "content": "Name a colour."}], "Blue."),
    ([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Count to three."}], "One, two, three."),
]


@pytest.fixture(scope="module")
def fresh_adapter(tiny_model_dir, tmp_path_factory):
    """PEFT's default initialisation: LoRA B = 0, so the adapter changes nothing."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dest = tmp_path_factory.mktemp("fresh-adapter")
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    peft_model.save_pretrained(str(dest))
    AutoTokenizer.from_pretrained(str(tiny_model_dir)).save_pretrained(str(dest))
    return dest


def test_identical_counts_ignore_surrounding_whitespace_only():
    pairs = [("Same.", "Same."), (" Same.\n", "Same."), ("Same.", "same."), ("Longer answer.", "Short.")]
    assert identical_counts(pairs) == (2, 4)
    assert identical_counts([]) == (0, 0)


def test_the_identical_share_decides_whether_the_model_moved():
    stuck = Movement(pairs=6, identical=6, kl_per_token=0.0003, tokens=40)
    assert stuck.identical_share == 1.0 and stuck.did_not_move
    assert Movement(pairs=4, identical=2).did_not_move, "half identical is already a warning"
    assert not Movement(pairs=4, identical=1).did_not_move
    assert Movement(pairs=0, identical=0).identical_share is None and not Movement(pairs=0, identical=0).did_not_move
    assert stuck.to_dict() == {"pairs": 6, "identical": 6, "identical_share": 1.0, "kl_per_token": 0.0003, "tokens": 40}


def test_a_freshly_initialised_adapter_has_zero_kl(tiny_model_dir, fresh_adapter):
    kl, tokens = adapter_kl_per_token(str(tiny_model_dir), str(fresh_adapter), ITEMS, batch_size=2, device="cpu")
    assert tokens > len(ITEMS), "every completion token counts, the end-of-turn token included"
    assert kl == pytest.approx(0.0, abs=1e-6)


def test_a_perturbed_adapter_has_positive_kl_the_same_in_any_batch_size(tiny_model_dir, fresh_adapter):
    import torch

    from training.trainer import load_for_generation

    model, tokenizer = load_for_generation(str(tiny_model_dir), str(fresh_adapter), device="cpu")
    with torch.no_grad():
        generator = torch.Generator().manual_seed(0)
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    kl, tokens = mean_token_kl(model, tokenizer, ITEMS, batch_size=3)
    one_by_one, same_tokens = mean_token_kl(model, tokenizer, ITEMS, batch_size=1)
    assert kl > 1e-4
    assert tokens == same_tokens and kl == pytest.approx(one_by_one, rel=1e-4), "right padding changes nothing"


def test_kl_matches_a_hand_computation_on_one_item(tiny_model_dir, fresh_adapter):
    import torch

    from training.trainer import load_for_generation
    from training.trainer.generation import adapter_disabled

    model, tokenizer = load_for_generation(str(tiny_model_dir), str(fresh_adapter), device="cpu")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.fill_(0.05)
    messages, text = ITEMS[0]
    prompt = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"]
    full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": text}], tokenize=True, return_dict=True)["input_ids"]
    start = next(i for i, (a, b) in enumerate(zip(prompt, full, strict=False)) if a != b) if full[: len(prompt)] != prompt else len(prompt)
    ids = torch.tensor([full])
    with torch.no_grad():
        p = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
        with adapter_disabled(model):
            q = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
    per_token = [float((p[t].exp() * (p[t] - q[t])).sum()) for t in range(start - 1, len(full) - 1)]
    kl, tokens = mean_token_kl(model, tokenizer, [ITEMS[0]])
    assert tokens == len(per_token)
    assert kl == pytest.approx(sum(per_token) / len(per_token), rel=1e-5)


def test_nothing_to_measure_is_an_error(tiny_model_dir, fresh_adapter):
    from training.trainer import load_for_generation

    model, tokenizer = load_for_generation(str(tiny_model_dir), str(fresh_adapter), device="cpu")
    with pytest.raises(ValueError, match="No completion tokens"):
        mean_token_kl(model, tokenizer, [])
