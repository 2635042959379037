from __future__ import annotations

import re
import subprocess
import sys

import pytest

from training.trainer import DPO_LOSS_TYPES, LoraSettings, SettingsError, TrainSettings


def test_it_has_documented_defaults():
    s = TrainSettings().validate()
    assert (s.method, s.resolved_loss_type, s.beta, s.learning_rate, s.num_train_epochs) == ("dpo", "sigmoid", None, None, None)
    assert s.resolve(100)[0].beta == 0.1, "beta left empty is each method's usual value"
    assert (s.per_device_batch_size, s.max_length, s.seed, s.validation_fraction) == (4, None, 42, 0.2)
    assert s.resolve(100)[0].max_length == 512, "max_length left empty is 512 tokens on a GPU"
    assert s.lora == LoraSettings(r=16, alpha=32, dropout=0.05, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    assert TrainSettings(method="kto").resolved_loss_type == "kto"


def test_it_round_trips_through_dict():
    s = TrainSettings.from_dict({"method": "dpo", "loss_type": "ipo", "lora": {"r": 8, "target_modules": ["q_proj"]}})
    assert s.loss_type == "ipo" and s.lora.r == 8 and s.lora.alpha == 32
    assert TrainSettings.from_dict(s.to_dict()) == s


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"learning_rate": -1e-5}, "Learning rate must be a positive"),
        ({"learning_rate": 0}, "Learning rate must be a positive"),
        ({"per_device_batch_size": 0}, "Batch size must be a positive"),
        ({"validation_fraction": 0.6}, "between 0 and 0.5"),
        ({"validation_fraction": -0.1}, "between 0 and 0.5"),
        ({"loss_type": "nonsense"}, "not available for DPO"),
        ({"loss_type": "kto"}, "not available for DPO"),
        ({"method": "ppo"}, "Unknown method"),
        ({"method": "kto", "per_device_batch_size": 1}, "at least 2"),
        ({"method": "kto", "group_by_length": True}, "group_by_length cannot be used with KTO"),
        ({"desirable_weight": 2.0}, "only applies to KTO"),
        ({"method": "kto", "desirable_weight": -1.0}, "positive"),
        ({"max_steps": 0}, "Max steps must be a positive whole number"),
        ({"beta": 0}, "beta"),
        ({"gradient_accumulation_steps": 0}, "accumulation"),
        ({"lora": {"r": 0}}, "rank r must be a positive"),
        ({"lora": {"dropout": 1.5}}, "dropout"),
        ({"lora": {"target_modules": ["q_proj", "lm_head"]}}, "lm_head"),
        ({"lora": {"target_modules": []}}, "non-empty"),
        ({"learning_rate": "fast"}, "Learning rate"),
        ({"lr": 1e-4}, "Unknown training settings field(s): lr"),
        ({"lora": {"rank": 4}}, "Unknown LoRA settings field(s): rank"),
    ],
)
def test_it_rejects_impossible_values(data, message):
    with pytest.raises(SettingsError, match=re.escape(message)):
        TrainSettings.from_dict(data)


def test_settings_error_is_a_value_error():
    assert issubclass(SettingsError, ValueError)


def test_it_accepts_every_listed_dpo_loss():
    for loss in DPO_LOSS_TYPES:
        # The robust loss corrects for an assumed share of flipped votes, so it needs one.
        TrainSettings(loss_type=loss, label_smoothing=0.1 if loss == "robust" else 0.0).validate()


def test_robust_loss_needs_a_flip_rate_and_smoothing_only_applies_to_dpo():
    with pytest.raises(SettingsError, match="share of flipped votes"):
        TrainSettings(loss_type="robust").validate()
    with pytest.raises(SettingsError, match="in \\[0, 0.5\\)"):
        TrainSettings(label_smoothing=0.5).validate()
    with pytest.raises(SettingsError, match="only applies to DPO"):
        TrainSettings(method="kto", label_smoothing=0.1).validate()


def test_automatic_settings_follow_the_data_size_and_the_adapter():
    # Given 180 training rows in batches of 4 (45 steps an epoch) and the default rank-16 adapter
    small, notes = TrainSettings().resolve(180)
    # Then two passes give about 90 steps, the LoRA rate is 5e-4, and it evaluates about 8 times
    assert (small.learning_rate, small.num_train_epochs, small.eval_steps) == (5e-4, 2, 12)
    assert len(notes) == 3 and "rank 16" in notes[0] and "2 epochs" in notes[1] and "SFT weight" in notes[2]
    # A large set trains one epoch; a higher rank gets a smaller rate (scaled by sqrt(16 / r))
    large, _ = TrainSettings(lora=LoraSettings(r=64)).resolve(4000)
    assert (large.learning_rate, large.num_train_epochs, large.eval_steps) == (2.5e-4, 1, 125)
    # Settings given explicitly are kept as they are, and nothing is said about them
    given, notes = TrainSettings(learning_rate=1e-4, num_train_epochs=3, eval_steps=5, sft_weight=0.5).resolve(180)
    assert (given.learning_rate, given.num_train_epochs, given.eval_steps, notes) == (1e-4, 3, 5, [])
    # The nearest whole number of passes, not "at least 90 steps": 175 rows are 44 steps an epoch, so 2 (88 steps)
    assert TrainSettings().resolve(175)[0].num_train_epochs == 2
    # A tiny set is capped at 4 epochs
    assert TrainSettings().resolve(8)[0].num_train_epochs == 4


def test_on_a_cpu_worker_the_automatic_settings_size_a_run_to_minutes():
    # The demo's history: 122 training rows, 31 steps a pass at batch 4.
    gpu, gpu_notes = TrainSettings().resolve(122)
    cpu, cpu_notes = TrainSettings().resolve(122, device="cpu")
    assert (gpu.max_length, gpu.num_train_epochs, gpu.total_steps(122)) == (512, 3, 93)
    assert (cpu.max_length, cpu.num_train_epochs, cpu.total_steps(122)) == (160, 2, 62)
    assert any("Rows cut at 160 tokens" in note and "CPU worker" in note for note in cpu_notes)
    assert not any("Rows cut" in note for note in gpu_notes), "the GPU's length is no choice worth a sentence"
    # A large set still gets two passes on a CPU for DPO (the first pass is never kept), one for KTO.
    assert TrainSettings().resolve(1000, device="cpu")[0].num_train_epochs == 2
    assert TrainSettings(method="kto").resolve(1000, device="cpu")[0].num_train_epochs == 1
    assert TrainSettings().resolve(8, device="cpu")[0].num_train_epochs == 4
    # What the admin typed stays.
    given = TrainSettings(max_length=384, num_train_epochs=1).resolve(122, device="cpu")[0]
    assert (given.max_length, given.num_train_epochs) == (384, 1)
    with pytest.raises(ValueError, match="device must be one of"):
        TrainSettings().resolve(10, device="tpu")


def test_listed_loss_types_are_accepted_by_trl():
    # Guards the hand-kept list against TRL renaming or removing losses.
    from trl import DPOConfig, KTOConfig

    from training.trainer import KTO_LOSS_TYPES

    help_text = DPOConfig.__dataclass_fields__["loss_type"].metadata["help"]
    for loss in DPO_LOSS_TYPES:
        assert f"'{loss}'" in help_text
    assert set(KTO_LOSS_TYPES) <= set(KTOConfig.__dataclass_fields__["loss_type"].metadata["choices"])


def test_importing_settings_does_not_import_torch():
    code = "import sys, training.trainer as t; t.TrainSettings().validate(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_steps", 10**20, "max_steps"),
        ("seed", 10**30, "Seed"),
        ("per_device_batch_size", 10**9, "Batch size"),
        ("max_length", 10**9, "max_length"),
        ("num_train_epochs", 1e300, "Number of epochs"),
        ("gradient_accumulation_steps", 10**6, "Gradient accumulation"),
        ("beta", 1e9, "beta"),
    ],
)
def test_absurdly_large_values_are_refused(field, value, message):
    with pytest.raises(SettingsError, match=f"{message}.*far too large"):
        TrainSettings.from_dict({field: value})


def test_dpo_trains_the_chosen_answers_likelihood_too_unless_told_not_to():
    # An empty SFT weight is AUTO_SFT_WEIGHT for DPO, with a sentence saying why, and 0 for KTO
    from training.trainer.auto_settings import AUTO_SFT_WEIGHT

    dpo, notes = TrainSettings().resolve(180)
    assert dpo.sft_weight == AUTO_SFT_WEIGHT > 0
    assert any(note.startswith(f"SFT weight {AUTO_SFT_WEIGHT:g}") for note in notes)
    kto, notes = TrainSettings(method="kto").resolve(180)
    assert kto.sft_weight == 0 and not any("SFT" in note for note in notes)
    # Given explicitly, 0 is plain DPO
    assert TrainSettings(sft_weight=0).resolve(180)[0].sft_weight == 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"sft_weight": -1}, "SFT weight must be between 0 and 10"),
        ({"sft_weight": 11}, "SFT weight must be between 0 and 10"),
        ({"sft_weight": "1"}, "SFT weight must be between 0 and 10"),
        ({"method": "kto", "sft_weight": 0.5}, "only applies to DPO runs"),
    ],
)
def test_impossible_sft_weights_are_refused(changes, message):
    with pytest.raises(SettingsError, match=message):
        TrainSettings(**changes).validate()


def test_the_sft_weight_becomes_a_combined_trl_loss(tmp_path):
    from training.trainer.device import choose_device
    from training.trainer.trl_config import _trl_config

    def config(weight: float):  # noqa: ANN202
        settings = TrainSettings(sft_weight=weight).resolve(8)[0]
        return _trl_config(settings, choose_device(force_cpu=True), tmp_path, has_validation=False, kto_weights=None)

    combined = config(0.5)
    assert combined.loss_type == ["sigmoid", "sft"] and combined.loss_weights == [1.0, 0.5]
    plain = config(0)
    assert plain.loss_type == ["sigmoid"] and not plain.loss_weights


def test_equal_validation_accuracy_ties_so_the_earlier_checkpoint_is_kept():
    from training.trainer.progress import dpo_selection_score

    # The alignment bench's run: steps 22 and 66 both at 0.875; the later one, with the lower loss, had drifted.
    early, later = dpo_selection_score(0.875, 1.901), dpo_selection_score(0.875, 1.740)
    assert later == early == 0.875, "a tie, which transformers resolves to the earlier checkpoint"
    # Accuracy decides otherwise, whatever the loss
    assert dpo_selection_score(0.8125, 0.01) < early < dpo_selection_score(0.9375, 3.0)
    assert dpo_selection_score(0.875, None) == dpo_selection_score(0.875, float("nan")) == 0.875


def test_simpo_gets_its_own_beta_and_loss_and_each_pair_method_its_defaults():
    simpo, notes = TrainSettings(method="simpo").validate().resolve(100)
    assert (simpo.beta, simpo.resolved_loss_type, simpo.sft_weight) == (2.0, "simpo", 0.0)
    assert any(note.startswith("beta 2: SimPO scales the length-normalised log-probability") for note in notes)
    assert TrainSettings(method="orpo").validate().resolve(100)[0].beta == 0.1
    assert TrainSettings(method="cpo", loss_type="hinge").validate().resolved_loss_type == "hinge"
    assert TrainSettings(method="simpo", beta=2.5).validate().resolve(100)[0].beta == 2.5, "a chosen beta stays"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"sharding": "zero3"}, "Sharding 'zero3' is not offered; choose one of: none, fsdp"),
        ({"sharding": ["fsdp"]}, "Sharding ['fsdp'] is not offered"),
        ({"sharding": "fsdp"}, "Sharding splits the model's weights across GPUs, so it needs at least 2 GPUs"),
        ({"sharding": "fsdp", "num_processes": 1}, "needs at least 2 GPUs"),
        ({"sharding": "fsdp", "num_processes": 4, "quantization": "4bit"},
         "Sharding (FSDP) cannot be combined with 4-bit base weights (QLoRA)"),
    ],
)
def test_sharding_needs_several_gpus_and_full_precision_weights(data, message):
    with pytest.raises(SettingsError, match=re.escape(message)):
        TrainSettings.from_dict(data)


def test_sharding_is_off_by_default_and_is_recorded_with_the_settings():
    assert TrainSettings().sharding == "none"
    sharded = TrainSettings.from_dict({"sharding": "fsdp", "num_processes": 4})
    assert sharded.to_dict()["sharding"] == "fsdp"
    assert TrainSettings.from_dict(sharded.to_dict()) == sharded
    resolved, _ = sharded.resolve(100)
    assert resolved.sharding == "fsdp" and resolved.global_batch_size == 4 * 4, "sharding does not change the batch"


@pytest.mark.parametrize(
    ("rows", "batch", "processes", "expected"),
    [(25, 4, 1, 1), (24, 4, 1, 4), (27, 4, 1, 3), (26, 4, 1, 2), (3, 4, 1, 3), (12, 4, 2, 3), (13, 4, 2, 1), (0, 4, 1, 4)],
)
def test_validation_batches_are_equal_so_a_mean_of_batch_means_is_the_exact_share(rows, batch, processes, expected):
    from training.trainer.trl_config import even_eval_batch_size

    size = even_eval_batch_size(rows, batch, processes)

    assert size == expected
    if rows and rows % processes == 0:  # otherwise no split is even, and 1 wastes least
        assert rows % (size * processes) == 0


def test_the_trl_config_evaluates_in_equal_batches(tmp_path):
    from training.trainer.device import choose_device
    from training.trainer.trl_config import _trl_config

    settings = TrainSettings().resolve(100)[0]
    args = _trl_config(
        settings, choose_device(force_cpu=True), tmp_path, has_validation=True, kto_weights=None, validation_count=25
    )

    assert (args.per_device_train_batch_size, args.per_device_eval_batch_size) == (4, 1)


def test_a_dpo_run_keeps_no_checkpoint_from_inside_its_first_pass_over_the_rows():
    from training.trainer.progress import first_keepable_step

    two_epochs = TrainSettings(num_train_epochs=2).resolve(74)[0]  # 19 steps a pass at batch 4
    short = TrainSettings(max_steps=5).resolve(74)[0]
    kto = TrainSettings(method="kto", num_train_epochs=2).resolve(74)[0]

    assert first_keepable_step(two_epochs, 74) == 19
    assert first_keepable_step(short, 74) == 5, "a run shorter than a pass may keep its last step"
    assert first_keepable_step(kto, 74) == 0
