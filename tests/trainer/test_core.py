"""The training core on a tiny random Llama: no database, a few optimizer steps per test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.trainer.conftest import make_dpo_rows, make_kto_rows
from training.trainer import (
    RowsError,
    SettingsError,
    TrainSettings,
    adapter_disabled,
    choose_device,
    latest_checkpoint,
    load_for_generation,
    sequence_logprob,
    train,
)
from training.trainer.checkpoints import checkpoint_is_final
from training.trainer.progress import NEVER_KEPT, first_keepable_step

DPO_KEYS = {"loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen"}


def _settings(**overrides) -> TrainSettings:
    # A high learning rate so a couple of steps visibly move the adapter of a random model.
    base = dict(max_steps=3, per_device_batch_size=2, learning_rate=5e-3, validation_fraction=0.2, max_length=128)
    base.update(overrides)
    return TrainSettings(**base)


def _margin(model, tokenizer, rows) -> float:
    """Summed log p(chosen) - log p(rejected) over rows."""
    return sum(
        sequence_logprob(model, tokenizer, r["prompt"], r["chosen"][0]["content"])
        - sequence_logprob(model, tokenizer, r["prompt"], r["rejected"][0]["content"])
        for r in rows
    )


def test_it_trains_dpo_and_saves_a_loadable_adapter(tiny_model_dir, tmp_path):
    rows = make_dpo_rows(10)
    events = []

    result = train(
        model_path=str(tiny_model_dir),
        rows=rows,
        settings=_settings(),
        output_dir=str(tmp_path),
        progress=events.append,
    )

    assert not result.cancelled
    assert (result.steps, result.total_steps) == (3, 3)
    assert (result.train_rows, result.validation_rows) == (8, 2)
    train_events = [e for e in events if e.kind == "train"]
    assert [e.step for e in train_events] == [1, 2, 3]
    assert all(e.total_steps == 3 for e in train_events)
    assert set(train_events[-1].metrics) >= DPO_KEYS
    assert any(e.kind == "eval" and "eval_rewards/margins" in e.metrics for e in events)
    assert "eval_loss" in result.eval_metrics
    assert "train_loss" in result.train_metrics and "rewards/margins" in result.train_metrics
    assert result.tokens_seen and result.tokens_seen > 0
    assert result.duration_s > 0

    adapter = Path(result.adapter_dir)
    assert (adapter / "adapter_model.safetensors").is_file() and (adapter / "tokenizer_config.json").is_file()
    assert latest_checkpoint(tmp_path) == str(tmp_path / "checkpoints" / "checkpoint-3")

    # The adapter is loadable and moves the preference margin in the chosen direction.
    tuned, tok = load_for_generation(str(tiny_model_dir), result.adapter_dir)
    with adapter_disabled(tuned):
        base_margin = _margin(tuned, tok, rows[:4])
    tuned_margin = _margin(tuned, tok, rows[:4])
    assert tuned_margin > base_margin + 1e-3


@pytest.mark.parametrize(
    ("method", "own_metrics"),
    [("simpo", {"nll_loss"}), ("cpo", {"nll_loss"}), ("orpo", {"log_odds_ratio", "nll_loss"})],
)
def test_it_trains_each_reference_free_method_and_logs_its_metrics(tiny_model_dir, tmp_path, method, own_metrics):
    rows = make_dpo_rows(10)

    result = train(
        model_path=str(tiny_model_dir), rows=rows, settings=_settings(method=method), output_dir=str(tmp_path),
    )

    assert not result.cancelled and result.steps == 3
    assert {"loss", "rewards/accuracies", "rewards/margins", "logps/chosen"} | own_metrics <= set(result.train_metrics)
    assert "eval_rewards/accuracies" in result.eval_metrics, "the validation split is scored like DPO's"
    assert result.settings.beta == (2.0 if method == "simpo" else 0.1)
    tuned, tok = load_for_generation(str(tiny_model_dir), result.adapter_dir)
    with adapter_disabled(tuned):
        base_margin = _margin(tuned, tok, rows[:4])
    assert _margin(tuned, tok, rows[:4]) > base_margin + 1e-3, "the adapter moved the preference the chosen way"


def test_it_trains_with_the_ipo_loss(tiny_model_dir, tmp_path):
    result = train(
        model_path=str(tiny_model_dir),
        rows=make_dpo_rows(6),
        settings=_settings(loss_type="ipo", max_steps=2, validation_fraction=0.0),
        output_dir=str(tmp_path),
    )
    assert result.steps == 2 and result.eval_metrics == {} and result.validation_rows == 0
    assert "loss" in result.history[0].metrics


def test_it_trains_kto_with_balanced_weights(tiny_model_dir, tmp_path):
    rows = make_kto_rows(12, desirable_every=3)  # 4 desirable, 8 undesirable
    events = []

    result = train(
        model_path=str(tiny_model_dir),
        rows=rows,
        settings=_settings(method="kto", max_steps=2, per_device_batch_size=4, validation_fraction=0.25),
        output_dir=str(tmp_path),
        progress=events.append,
    )

    assert result.steps == 2 and result.adapter_dir
    assert result.undesirable_weight == 1.0 and result.desirable_weight > 1.0
    train_metrics = [e.metrics for e in events if e.kind == "train"]
    assert all("kl" in m and "loss" in m for m in train_metrics)
    assert any("rewards/chosen" in m for m in train_metrics)
    assert "eval_loss" in result.eval_metrics


def test_should_stop_ends_training_after_the_current_step(tiny_model_dir, tmp_path):
    steps_seen = []

    def should_stop() -> bool:
        return len(steps_seen) >= 1

    result = train(
        model_path=str(tiny_model_dir),
        rows=make_dpo_rows(8),
        settings=_settings(max_steps=10, validation_fraction=0.0),
        output_dir=str(tmp_path),
        progress=lambda e: steps_seen.append(e.step) if e.kind == "train" else None,
        should_stop=should_stop,
    )

    assert result.cancelled
    # Step N's log is emitted after step N's stop poll, so the stop lands on step 2 here.
    assert result.steps == 2 and result.total_steps == 10
    assert result.adapter_dir is None and not (tmp_path / "adapter").exists()


def test_a_stop_requested_before_start_trains_nothing(tiny_model_dir, tmp_path):
    result = train(
        model_path=str(tiny_model_dir),
        rows=make_dpo_rows(4),
        settings=_settings(),
        output_dir=str(tmp_path),
        should_stop=lambda: True,
    )
    assert result.cancelled and result.steps == 0


def test_it_resumes_from_a_checkpoint(tiny_model_dir, tmp_path):
    rows = make_dpo_rows(8)
    first = train(
        model_path=str(tiny_model_dir),
        rows=rows,
        output_dir=str(tmp_path),
        settings=_settings(max_steps=4, save_steps=2, validation_fraction=0.0),
        should_stop=lambda: (tmp_path / "checkpoints" / "checkpoint-2").exists(),
    )
    assert first.cancelled and latest_checkpoint(tmp_path).endswith("checkpoint-2")

    events = []
    second = train(
        model_path=str(tiny_model_dir),
        rows=rows,
        output_dir=str(tmp_path),
        settings=_settings(max_steps=4, save_steps=2, validation_fraction=0.0),
        progress=events.append,
        resume_from_checkpoint=latest_checkpoint(tmp_path),
    )
    assert second.steps == 4 and not second.cancelled
    assert [e.step for e in events if e.kind == "train"] == [3, 4]


def test_resuming_from_the_last_steps_checkpoint_trains_no_step_past_the_end(tiny_model_dir, tmp_path):
    # A worker stopped after the last step's checkpoint but before the adapter was saved: the retry resumes from that
    # checkpoint. transformers checks the step limit only after a step, so it used to train step 4 of 3.
    rows = make_dpo_rows(12)  # 6 steps an epoch at batch 2: the limit falls inside the epoch
    settings = _settings(max_steps=3, save_steps=3, validation_fraction=0.0)
    first = train(model_path=str(tiny_model_dir), rows=rows, output_dir=str(tmp_path), settings=settings)
    checkpoint = latest_checkpoint(tmp_path)
    assert first.steps == 3 and checkpoint.endswith("checkpoint-3") and checkpoint_is_final(checkpoint)
    first_adapter = (Path(first.adapter_dir) / "adapter_model.safetensors").read_bytes()
    shutil.rmtree(first.adapter_dir)

    events = []
    second = train(model_path=str(tiny_model_dir), rows=rows, output_dir=str(tmp_path), settings=settings,
                   progress=events.append, resume_from_checkpoint=checkpoint)

    assert (second.steps, second.total_steps, second.cancelled) == (3, 3, False)
    assert [e.step for e in events if e.kind == "train"] == []
    assert (Path(second.adapter_dir) / "adapter_model.safetensors").read_bytes() == first_adapter


def test_it_trains_with_precomputed_reference_and_length_grouping(tiny_model_dir, tmp_path):
    result = train(
        model_path=str(tiny_model_dir),
        rows=make_dpo_rows(8),
        settings=_settings(max_steps=2, precompute_ref_log_probs=True, group_by_length=True),
        output_dir=str(tmp_path),
    )
    assert result.steps == 2 and "eval_loss" in result.eval_metrics


def test_it_names_real_modules_when_lora_targets_are_wrong(tiny_model_dir, tmp_path):
    settings = _settings()
    settings.lora.target_modules = ["query_key_value"]
    with pytest.raises(
        SettingsError, match="query_key_value do not exist in this model; its linear layers are: .*q_proj"
    ):
        train(model_path=str(tiny_model_dir), rows=make_dpo_rows(4), settings=settings, output_dir=str(tmp_path))


def test_qlora_is_refused_on_a_cpu_worker_with_the_reason(tiny_model_dir, tmp_path):
    with pytest.raises(SettingsError, match=r"^QLoRA \(4-bit base weights\) needs a CUDA GPU.*Launch without 4-bit"):
        train(
            model_path=str(tiny_model_dir), rows=make_dpo_rows(4), settings=_settings(quantization="4bit"),
            output_dir=str(tmp_path), device=choose_device(force_cpu=True),
        )
    assert not (tmp_path / "checkpoints").exists()


def test_it_rejects_rows_for_the_wrong_method(tiny_model_dir, tmp_path):
    with pytest.raises(RowsError, match="not a KTO row"):
        train(
            model_path=str(tiny_model_dir),
            rows=make_dpo_rows(4),
            settings=_settings(method="kto"),
            output_dir=str(tmp_path),
        )


@pytest.mark.parametrize("method", ["dpo", "simpo"])
def test_a_checkpoint_before_any_real_update_is_never_the_one_kept(tiny_model_dir, tmp_path, method):
    # Linear warm-up gives the first optimizer step a learning rate of 0, so checkpoint 1 is the untouched adapter.
    # A reference-free method's base can already rank validation pairs well; it must still not be kept.
    events = []
    result = train(
        model_path=str(tiny_model_dir), rows=make_dpo_rows(12), output_dir=str(tmp_path), progress=events.append,
        settings=_settings(method=method, max_steps=4, eval_steps=1, validation_fraction=0.34, warmup_ratio=0.25),
    )

    first = next(e for e in events if e.kind == "train" and e.step == 1)
    assert first.metrics["learning_rate"] == 0.0
    scores = {e.step: e.metrics["eval_selection_score"] for e in events if e.kind == "eval"}
    # DPO also keeps nothing from inside its first pass over the rows (see first_keepable_step)
    keepable = max(2, first_keepable_step(result.settings, result.train_rows))
    assert all((score == NEVER_KEPT) == (step < keepable) for step, score in scores.items()), (keepable, scores)
    assert min(scores) == 1 and max(scores) >= keepable
    assert result.outcome["kept_step"] >= keepable


def test_it_keeps_the_checkpoint_with_the_best_validation_score(tiny_model_dir, tmp_path):
    # Given a run evaluated at every step (6 steps, eval_steps 1) with keep_best on
    events = []
    result = train(
        model_path=str(tiny_model_dir),
        rows=make_dpo_rows(12),
        settings=_settings(max_steps=6, eval_steps=1, validation_fraction=0.34),
        output_dir=str(tmp_path),
        progress=events.append,
    )
    # Then every step was scored, and the kept step is the first with the highest score (transformers keeps
    # the earlier of two equal scores); the result's validation metrics are that step's
    scores = {e.step: e.metrics["eval_selection_score"] for e in events if e.kind == "eval"}
    assert sorted(scores) == [1, 2, 3, 4, 5, 6]
    best = max(scores.values())
    kept = min(step for step, score in scores.items() if score == best)
    outcome = result.outcome
    assert outcome["kept_step"] == kept and outcome["steps"] == 6 and outcome["evaluations"] == 6
    assert outcome["best_metric"] == "rewards/accuracies"
    assert outcome["validation"]["selection_score"] == pytest.approx(best)
    assert result.eval_metrics["eval_selection_score"] == pytest.approx(best)
    assert set(outcome["final_train"]) >= DPO_KEYS and (outcome["train_rows"], outcome["validation_rows"]) == (8, 4)
    # And the saved adapter is the kept checkpoint's, not the last step's
    from safetensors.torch import load_file

    saved = load_file(str(Path(result.adapter_dir) / "adapter_model.safetensors"))
    kept_weights = load_file(str(tmp_path / "checkpoints" / f"checkpoint-{kept}" / "adapter_model.safetensors"))
    assert saved.keys() == kept_weights.keys()
    assert all((saved[k] == kept_weights[k]).all() for k in saved)


def test_it_evaluates_the_last_step_even_between_evaluations(tiny_model_dir, tmp_path):
    events = []
    train(
        model_path=str(tiny_model_dir),
        rows=make_dpo_rows(10),
        settings=_settings(max_steps=5, eval_steps=2),
        output_dir=str(tmp_path),
        progress=events.append,
    )
    assert sorted({e.step for e in events if e.kind == "eval"}) == [2, 4, 5]


def test_kto_scores_validation_thumbs_by_implicit_reward_ranking(tiny_model_dir, tmp_path):
    events = []
    result = train(
        model_path=str(tiny_model_dir),
        rows=make_kto_rows(16),
        settings=_settings(method="kto", max_steps=2, per_device_batch_size=4, validation_fraction=0.25),
        output_dir=str(tmp_path),
        progress=events.append,
    )
    evals = [e for e in events if e.kind == "eval"]
    assert evals and all(0.0 <= e.metrics["eval_ranking_accuracy"] <= 1.0 for e in evals)
    assert result.outcome["best_metric"] == "ranking_accuracy"
    assert "ranking_accuracy" in result.outcome["validation"] and "kl" in result.outcome["validation"]


def test_ranking_accuracy_is_the_share_of_good_bad_pairs_in_order():
    from training.trainer.progress import ranking_accuracy

    # 2 good x 2 bad = 4 pairs: (3>1) (3>2) (1=1 half) (1<2) -> 2.5 / 4
    assert ranking_accuracy([3.0, 1.0], [1.0, 2.0]) == 0.625
    assert ranking_accuracy([], [1.0]) == 0.5


def test_kto_rows_reach_the_trainer_in_a_seeded_shuffled_order(tiny_model_dir, tmp_path, monkeypatch):
    # Given KTO rows where every winner sits next to its loser (as pairs export them)
    from training.trainer import core

    seen: list[list[str]] = []
    real = core._to_dataset

    def spy(rows, keys):
        seen.append([r["completion"][0]["content"] for r in rows])
        return real(rows, keys)

    monkeypatch.setattr(core, "_to_dataset", spy)
    rows = make_kto_rows(16)
    settings = _settings(method="kto", max_steps=1, per_device_batch_size=4, validation_fraction=0.0)
    train(model_path=str(tiny_model_dir), rows=rows, settings=settings, output_dir=str(tmp_path / "a"))
    train(model_path=str(tiny_model_dir), rows=rows, settings=settings, output_dir=str(tmp_path / "b"))
    # Then the training rows are all there, not in their original order, and in the same order both times
    original = [r["completion"][0]["content"] for r in rows]
    assert sorted(seen[0]) == sorted(original) and seen[0] != original and seen[0] == seen[1]


def test_before_save_is_called_before_each_checkpoint_is_written_and_can_stop_it(tiny_model_dir, tmp_path):
    # The worker's child passes a check here that kills it when its attempt was superseded (tests/training/
    # test_run_faults.py freezes one); a check that raises leaves that checkpoint unwritten.
    checkpoints = tmp_path / "checkpoints"
    seen: list[list[str]] = []

    def before_save() -> None:
        seen.append(sorted(p.name for p in checkpoints.glob("checkpoint-*")))
        if len(seen) == 2:
            raise RuntimeError("superseded")

    with pytest.raises(RuntimeError, match="superseded"):
        train(model_path=str(tiny_model_dir), rows=make_dpo_rows(8), settings=_settings(max_steps=4, save_steps=1),
              output_dir=str(tmp_path), before_save=before_save)

    assert seen == [[], ["checkpoint-1"]], "each call comes before its checkpoint exists"
    assert sorted(p.name for p in checkpoints.glob("*checkpoint-*")) == ["checkpoint-1"], "the stopped save wrote nothing"
