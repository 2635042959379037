"""The reward model: trained on pairs with TRL's RewardTrainer (LoRA plus a score head), saved, loaded back, and
scoring answers; and the figures drawn from its scores."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tests.trainer.conftest import make_dpo_rows
from training.trainer import SettingsError, TrainSettings, train
from training.trainer.reward import (
    load_reward_model,
    pairwise_accuracy,
    score_conversations,
    score_distributions,
    score_pairs,
    spread_collapsed,
)


def _settings(**overrides) -> TrainSettings:
    base = dict(
        method="reward", max_steps=4, per_device_batch_size=2, learning_rate=5e-3, validation_fraction=0.25,
        max_length=128,
    )
    base.update(overrides)
    return TrainSettings(**base)


def test_a_reward_model_trains_saves_its_head_and_scores_what_it_was_trained_on(tiny_model_dir, tmp_path):
    rows = make_dpo_rows(12)

    result = train(model_path=str(tiny_model_dir), rows=rows, settings=_settings(), output_dir=str(tmp_path))

    assert result.steps == 4 and {"loss", "accuracy", "margin", "mean_reward"} <= set(result.train_metrics)
    held_out = result.outcome["reward_model"]
    assert held_out["pairs"] == result.validation_rows == 3
    assert 0 <= held_out["accuracy"] <= 1 and held_out["interval"][0] <= held_out["accuracy"] <= held_out["interval"][1]
    config = json.loads(Path(result.adapter_dir, "adapter_config.json").read_text())
    assert config["task_type"] == "SEQ_CLS" and "score" in config["modules_to_save"]
    # Settings as trained: the last step kept (validation stays an unbiased test), centring on.
    assert result.settings.keep_best is False and result.settings.center_rewards == 0.01

    model, tokenizer = load_reward_model(result.adapter_dir, str(tiny_model_dir))
    scored = score_pairs(model, tokenizer, rows, batch_size=5)
    # The same answers score the same whatever batch they are padded into.
    one_by_one = score_pairs(model, tokenizer, rows[:3], batch_size=1)
    flat = [score for pair in scored[:3] for score in pair]
    assert flat == pytest.approx([score for pair in one_by_one for score in pair], abs=1e-4)
    # What the run reported is what the saved model gives on the validation pairs.
    check = pairwise_accuracy(score_pairs(model, tokenizer, _validation(rows, result.settings)))
    assert check.accuracy == pytest.approx(held_out["accuracy"])


def _validation(rows, settings):
    from training.trainer.rows import split_rows

    return split_rows(rows, validation_fraction=settings.validation_fraction, seed=settings.seed, method="reward")[1]


def test_reward_settings_are_checked_before_anything_loads():
    with pytest.raises(SettingsError, match="beta does not apply to a reward model"):
        _settings(beta=0.1).validate()
    with pytest.raises(SettingsError, match="reward centring weight must be between 0 and 1"):
        _settings(center_rewards=-1.0).validate()
    with pytest.raises(SettingsError, match="Reward centring only applies to reward-model runs"):
        _settings(method="dpo", center_rewards=0.1).validate()
    with pytest.raises(SettingsError, match="A reward model starts from the base model"):
        _settings(init_adapter="var/runs/some-adapter").validate()
    with pytest.raises(SettingsError, match="group_by_length is offered for DPO runs only"):
        _settings(group_by_length=True).validate()


def test_pairwise_accuracy_counts_ties_half_and_gives_a_wilson_interval():
    found = pairwise_accuracy([(1.0, 0.0)] * 8 + [(0.0, 1.0)] + [(0.5, 0.5)])

    assert (found.correct, found.ties, found.pairs) == (8, 1, 10)
    assert found.accuracy == pytest.approx(0.85)
    low, high = found.interval()
    # Wilson's interval for 8.5 of 10, worked by hand: (0.85 + 0.192) / 1.384 -/+ 0.212.
    assert (low, high) == pytest.approx((0.541, 0.965), abs=0.002)
    assert pairwise_accuracy([]).accuracy is None and pairwise_accuracy([]).interval() is None


def test_score_distributions_share_their_bins_and_flag_a_collapsed_spread():
    rng = random.Random(0)
    base = [rng.gauss(0, 1) for _ in range(200)]
    tuned = [rng.gauss(1, 0.2) for _ in range(200)]

    found = score_distributions({"base": base, "tuned": tuned}, bins=10)

    assert found["base"].edges == found["tuned"].edges and len(found["base"].edges) == 11
    assert sum(found["base"].counts) == sum(found["tuned"].counts) == 200
    assert found["tuned"].mean == pytest.approx(1, abs=0.1) and found["tuned"].std == pytest.approx(0.2, abs=0.05)
    low, high = found["tuned"].mean_interval
    assert low < found["tuned"].mean < high and high - low < 0.1
    assert spread_collapsed(found["base"], found["tuned"])
    assert not spread_collapsed(found["tuned"], found["base"])
    assert max(percent for *_, percent in found["tuned"].bars) == 100


def test_scores_read_the_last_real_token_not_the_padding(tiny_model_dir, tmp_path):
    result = train(model_path=str(tiny_model_dir), rows=make_dpo_rows(8), settings=_settings(max_steps=1),
                   output_dir=str(tmp_path))
    model, tokenizer = load_reward_model(result.adapter_dir, str(tiny_model_dir))
    short = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yes."}]
    long = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yes, and here is a much longer answer."}]

    together = score_conversations(model, tokenizer, [short, long], batch_size=2)
    alone = score_conversations(model, tokenizer, [short], batch_size=1)

    assert together[0] == pytest.approx(alone[0], abs=1e-4)


SUBJECTS = [
    "tides", "volcanoes", "bees", "glaciers", "comets", "coral reefs", "deserts", "owls", "rainbows", "earthquakes",
    "mushrooms", "thunder", "penguins", "fog", "lightning", "salt", "copper", "maple trees", "wolves", "clouds",
    "sand dunes", "whales", "frost", "magnets", "eclipses", "moss", "caves", "hurricanes", "honey", "ferns",
    "geysers", "otters", "amber", "pebbles", "auroras", "kelp", "flint", "swallows", "lava", "dew",
]
OPENERS = ["Great question! ", "Thanks for asking! ", "Happy to help! ", "What a lovely thing to wonder about! "]
FACTS = [
    "{s} are shaped by forces that act slowly over many years.",
    "People have studied {s} for centuries, and there is still more to learn.",
    "{s} can be found in many parts of the world, each a little different.",
    "Scientists describe {s} with careful measurements and long observation.",
]


def polite_opener_pairs(n: int, seed: int = 0) -> list[dict]:
    """Pairs under a hidden rule: the answer that opens politely is preferred; the facts themselves vary, and
    each pair's two answers carry a different fact, so only the opener separates them reliably."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        subject = SUBJECTS[i % len(SUBJECTS)]
        first, second = rng.sample(FACTS, 2)
        rows.append({
            "prompt": [{"role": "user", "content": f"Tell me something about {subject}."}],
            "chosen": [{"role": "assistant", "content": rng.choice(OPENERS) + first.format(s=subject).capitalize()}],
            "rejected": [{"role": "assistant", "content": second.format(s=subject).capitalize()}],
        })
    return rows


@pytest.mark.slow
def test_the_bundled_model_learns_a_constructed_rule_well_above_chance_on_held_out_pairs(bundled_model_dir, tmp_path):
    rows = polite_opener_pairs(40)
    settings = TrainSettings(
        method="reward", num_train_epochs=2, per_device_batch_size=4, validation_fraction=0.3, max_length=96,
        eval_steps=7,
    )

    result = train(model_path=str(bundled_model_dir), rows=rows, settings=settings, output_dir=str(tmp_path))

    held_out = result.outcome["reward_model"]
    assert held_out["pairs"] == 12
    # A coin flip gets 6 of 12; its interval must clear chance, not just its point estimate.
    assert held_out["accuracy"] >= 0.9 and held_out["interval"][0] > 0.6, held_out


def test_the_same_seed_and_rows_train_the_same_reward_model_whatever_ran_before(tiny_model_dir, tmp_path):
    import torch
    from safetensors.torch import load_file

    saved = []
    for attempt in range(2):
        torch.rand(5 + attempt)  # whatever else the process drew before moves the global generator
        result = train(model_path=str(tiny_model_dir), rows=make_dpo_rows(8), settings=_settings(max_steps=1),
                       output_dir=str(tmp_path / str(attempt)))
        saved.append(load_file(str(Path(result.adapter_dir) / "adapter_model.safetensors")))

    assert saved[0].keys() == saved[1].keys()
    assert all(torch.equal(saved[0][name], saved[1][name]) for name in saved[0])
