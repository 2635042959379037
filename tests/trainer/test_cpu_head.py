"""The CPU log-probability head gives what TRL's fused head gives (values and gradients), on the tiny model with
padding and masked prompt tokens, and a CPU run trains through it."""
from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from training.trainer.cpu_head import add_plain_lm_head, plain_lm_head_on_cpu

OUTPUTS = ("log_probs", "entropy", "mean_logits", "is_top1", "log_sum_sq_probs")


def _scored(model_dir, head, labels, input_ids, attention_mask, temperature):  # noqa: ANN001, ANN202
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    head(model, temperature=temperature, outputs=OUTPUTS)
    out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, fused_lm_head=True)
    (out.log_probs.sum() + out.loss).backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return out, grads


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_it_scores_and_differentiates_like_trls_fused_head(tiny_model_dir, temperature):
    from trl.trainer.utils import add_fused_lm_head

    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(0, 1000, (3, 12), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[2, 8:] = 0  # a padded row
    labels = input_ids.clone()
    labels[:, :4] = -100  # the prompt is not scored
    labels[2, 8:] = -100

    trl, trl_grads = _scored(tiny_model_dir, add_fused_lm_head, labels, input_ids, attention_mask, temperature)
    plain, plain_grads = _scored(tiny_model_dir, add_plain_lm_head, labels, input_ids, attention_mask, temperature)

    for name in OUTPUTS:
        expected, got = getattr(trl, name), getattr(plain, name)
        assert got.shape == expected.shape, name
        if name == "is_top1":
            assert torch.equal(got, expected)
        else:
            assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5), (name, (got - expected).abs().max())
    assert torch.equal(plain.label_mask, trl.label_mask)
    assert torch.allclose(plain.loss, trl.loss, atol=1e-6)
    assert trl_grads.keys() == plain_grads.keys() and trl_grads
    for name, grad in trl_grads.items():
        assert torch.allclose(plain_grads[name], grad, atol=1e-5, rtol=1e-4), name


def test_without_fused_lm_head_the_model_runs_as_before(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    input_ids = torch.randint(0, 1000, (2, 6), generator=torch.Generator().manual_seed(2))
    before = model(input_ids=input_ids, labels=input_ids)

    add_plain_lm_head(model)
    after = model(input_ids=input_ids, labels=input_ids)

    assert torch.allclose(after.logits, before.logits) and torch.allclose(after.loss, before.loss)


def test_the_swap_lasts_only_while_a_trainer_is_built():
    import trl.trainer.dpo_trainer as dpo_trainer
    import trl.trainer.kto_trainer as kto_trainer

    original = dpo_trainer.add_fused_lm_head
    with plain_lm_head_on_cpu(True):
        assert dpo_trainer.add_fused_lm_head is add_plain_lm_head is kto_trainer.add_fused_lm_head
    with plain_lm_head_on_cpu(False):
        assert dpo_trainer.add_fused_lm_head is original
    assert dpo_trainer.add_fused_lm_head is original is kto_trainer.add_fused_lm_head
