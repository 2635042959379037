"""The SFT stage and runs that start from a trained version (SFT, then DPO), on a tiny random Llama."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.trainer.conftest import make_dpo_rows, make_kto_rows
from training.trainer import RowsError, SettingsError, TrainSettings, train
from training.trainer.generation import adapter_disabled, load_for_generation, sequence_logprob
from training.trainer.model_loading import chain_adapters
from training.trainer.rows import sft_rows_from, validate_sft_rows


def _settings(**overrides) -> TrainSettings:
    base = dict(max_steps=3, per_device_batch_size=2, learning_rate=5e-3, validation_fraction=0.25, max_length=128)
    base.update(overrides)
    return TrainSettings(**base)


def _chosen_logprob(model, tokenizer, rows) -> float:
    return sum(sequence_logprob(model, tokenizer, r["prompt"], r["completion"][0]["content"]) for r in rows)


def _logits(model, tokenizer) -> torch.Tensor:
    batch = tokenizer("Write one sentence about the sea.", return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits


def test_sft_rows_are_the_chosen_and_thumbs_up_answers():
    pairs, thumbs = make_dpo_rows(3), make_kto_rows(4)

    rows = sft_rows_from(pairs + thumbs)

    assert [r["completion"] for r in rows[:3]] == [p["chosen"] for p in pairs]
    assert len(rows) == 3 + sum(1 for t in thumbs if t["label"])
    validate_sft_rows(rows)
    with pytest.raises(RowsError, match="Row 0 is not an SFT row: missing completion"):
        validate_sft_rows([{"prompt": pairs[0]["prompt"]}])


def test_sft_trains_the_chosen_answers_likelihood_up(tiny_model_dir, tmp_path):
    rows = sft_rows_from(make_dpo_rows(10))

    result = train(model_path=str(tiny_model_dir), rows=rows, settings=_settings(method="sft"), output_dir=str(tmp_path))

    assert result.steps == 3 and {"loss", "mean_token_accuracy"} <= set(result.train_metrics)
    assert "eval_loss" in result.eval_metrics and result.outcome["best_metric"] == "loss"
    tuned, tok = load_for_generation(str(tiny_model_dir), result.adapter_dir)
    with adapter_disabled(tuned):
        before = _chosen_logprob(tuned, tok, rows[:4])
    assert _chosen_logprob(tuned, tok, rows[:4]) > before + 1e-3


def test_two_chained_adapters_are_one_adapter_equal_to_merging_both(tiny_model_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    first = train(model_path=str(tiny_model_dir), rows=sft_rows_from(make_dpo_rows(8)), output_dir=str(tmp_path / "a"),
                  settings=_settings(method="sft", validation_fraction=0.0)).adapter_dir
    second = tmp_path / "b"
    shutil.copytree(first, second)

    chain_adapters(str(tiny_model_dir), first, str(second), out=str(tmp_path / "chain-out"))

    config = json.loads((tmp_path / "chain-out" / "adapter_config.json").read_text())
    first_r = json.loads(Path(first, "adapter_config.json").read_text())["r"]
    assert config["r"] == 2 * first_r
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    chained = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tmp_path / "chain-out")
    twice = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), first).merge_and_unload()
    twice = PeftModel.from_pretrained(twice, str(second)).merge_and_unload()
    assert torch.allclose(_logits(chained, tokenizer), _logits(twice, tokenizer), atol=1e-4)


def test_dpo_from_an_sft_version_measures_itself_against_that_version(tiny_model_dir, tmp_path):
    pairs = make_dpo_rows(10)
    sft = train(model_path=str(tiny_model_dir), rows=sft_rows_from(pairs), output_dir=str(tmp_path / "sft"),
                settings=_settings(method="sft"))

    dpo = train(model_path=str(tiny_model_dir), rows=pairs, output_dir=str(tmp_path / "dpo"),
                settings=_settings(init_adapter=sft.adapter_dir))

    assert dpo.steps == 3 and dpo.settings.init_adapter == sft.adapter_dir
    # The DPO rewards start at 0: its reference is the SFT version, not the bare base.
    first_eval = next(e for e in dpo.history if e.kind == "eval")
    assert first_eval.step >= 1 and "eval_rewards/margins" in first_eval.metrics
    chained_r = json.loads(Path(dpo.adapter_dir, "adapter_config.json").read_text())["r"]
    assert chained_r == 2 * 16, "one adapter holding the SFT and the DPO update"
    model, tok = load_for_generation(str(tiny_model_dir), dpo.adapter_dir)
    sft_model, _ = load_for_generation(str(tiny_model_dir), sft.adapter_dir)
    assert not torch.allclose(_logits(model, tok), _logits(sft_model, tok), atol=1e-4), "DPO moved it past SFT"


def test_a_chain_cannot_start_from_a_missing_adapter_or_use_4bit(tiny_model_dir, tmp_path):
    with pytest.raises(SettingsError, match="has no adapter at /nowhere"):
        train(model_path=str(tiny_model_dir), rows=make_dpo_rows(4), output_dir=str(tmp_path),
              settings=_settings(init_adapter="/nowhere"))
    with pytest.raises(SettingsError, match="cannot use 4-bit base weights"):
        _settings(init_adapter="/some/adapter", quantization="4bit").validate()
