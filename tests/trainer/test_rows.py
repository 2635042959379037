from __future__ import annotations

import copy

import pytest

from tests.trainer.conftest import make_dpo_rows, make_kto_rows
from training.trainer import (
    RowsError,
    count_kto_labels,
    kto_class_weights,
    kto_weight_ratio,
    prompt_key,
    rows_hash,
    split_rows,
    validate_rows,
)


def test_it_accepts_well_formed_rows(dpo_rows, kto_rows):
    validate_rows(dpo_rows, "dpo")
    validate_rows(kto_rows, "kto")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r[1].pop("rejected"), "Row 1 is not a DPO row: missing rejected"),
        (lambda r: r[0].__setitem__("prompt", "hi"), "Row 0 prompt must be a non-empty list"),
        (lambda r: r[0].__setitem__("prompt", []), "Row 0 prompt must be a non-empty list"),
        (lambda r: r[2]["chosen"][0].__setitem__("role", "robot"), "Row 2 chosen\\[0\\] has role 'robot'"),
        (lambda r: r[0]["chosen"][0].__setitem__("content", None), "content must be text"),
        (lambda r: r[0].__setitem__("chosen", [{"role": "user", "content": "x"}]), "only assistant"),
        (lambda r: r[0].__setitem__("rejected", [{"role": "assistant", "content": "  "}]), "empty"),
        (lambda r: r[0].__setitem__("rejected", copy.deepcopy(r[0]["chosen"])), "identical"),
        (lambda r: r[0]["prompt"].append({"role": "assistant", "content": "x"}), "must end with a 'user' message"),
        (lambda r: r.__setitem__(slice(1, None), []), "at least 2 preference pairs"),
    ],
)
def test_it_rejects_malformed_dpo_rows(mutate, message):
    rows = make_dpo_rows(4)
    mutate(rows)
    with pytest.raises(RowsError, match=message):
        validate_rows(rows, "dpo")


def test_it_rejects_kto_rows_with_one_label():
    rows = [r for r in make_kto_rows(6) if r["label"]]
    with pytest.raises(RowsError, match="both thumbs-up and thumbs-down"):
        validate_rows(rows, "kto")


def test_it_rejects_a_non_bool_kto_label():
    rows = make_kto_rows(4)
    rows[0]["label"] = 1
    with pytest.raises(RowsError, match="Row 0 label must be true or false"):
        validate_rows(rows, "kto")


def test_rows_hash_is_stable_and_key_order_independent(dpo_rows):
    reordered = [{k: row[k] for k in reversed(list(row))} for row in dpo_rows]
    assert rows_hash(dpo_rows) == rows_hash(reordered)
    assert len(rows_hash(dpo_rows)) == 64
    changed = copy.deepcopy(dpo_rows)
    changed[0]["chosen"][0]["content"] += "!"
    assert rows_hash(changed) != rows_hash(dpo_rows)
    # Pinned so an accidental change of the canonical form (which would orphan stored snapshots) is noticed.
    assert rows_hash([{"b": 1, "a": "é"}]) == rows_hash([{"a": "é", "b": 1}])


def test_split_is_deterministic_and_complete():
    rows = make_dpo_rows(20)
    train, val = split_rows(rows, validation_fraction=0.2, seed=7)
    assert (len(train), len(val)) == (16, 4)
    assert split_rows(rows, validation_fraction=0.2, seed=7) == (train, val)
    assert sorted(map(rows_hash, [[r] for r in train + val])) == sorted(rows_hash([r]) for r in rows)
    assert split_rows(rows, validation_fraction=0.2, seed=8)[1] != val


def test_split_keeps_enough_training_rows():
    assert [len(s) for s in split_rows(make_dpo_rows(2), validation_fraction=0.5, seed=0)] == [2, 0]
    assert [len(s) for s in split_rows(make_dpo_rows(3), validation_fraction=0.5, seed=0)] == [2, 1]
    assert split_rows(make_dpo_rows(10), validation_fraction=0.0, seed=0)[1] == []


def test_no_prompt_is_on_both_sides_of_the_split():
    # Three pairs on each of 10 prompts, 4 on one more: a fifth is 6.8 rows, so two or three whole prompts.
    rows = [{**row, "prompt": make_dpo_rows(11)[i]["prompt"]} for i in range(11) for row in make_dpo_rows(3 if i < 10 else 4)]
    for seed in range(20):
        train, val = split_rows(rows, validation_fraction=0.2, seed=seed)
        assert len(train) + len(val) == len(rows) and 6 <= len(val) <= 7
        assert not {prompt_key(r) for r in train} & {prompt_key(r) for r in val}
    # Every row on one prompt: nothing can be validated on an unseen prompt, so nothing is.
    same = [{**row, "prompt": rows[0]["prompt"]} for row in rows]
    assert split_rows(same, validation_fraction=0.2, seed=0) == (same, [])


def test_no_prompt_is_on_both_sides_of_a_kto_split_either():
    # Four thumbs-labelled answers on each of 10 prompts (a pair's winner and loser, or several rated answers)
    base = make_kto_rows(10)
    rows = [{**row, "prompt": base[i]["prompt"], "label": (i + k) % 2 == 0} for i in range(10) for k, row in
            enumerate(make_kto_rows(4))]
    for seed in range(20):
        train, val = split_rows(rows, validation_fraction=0.2, seed=seed, method="kto")
        assert len(train) + len(val) == len(rows) and len(val) == 8
        assert not {prompt_key(r) for r in train} & {prompt_key(r) for r in val}
        assert all(count_kto_labels(train))


def test_kto_split_keeps_both_labels_in_training():
    rows = make_kto_rows(4, desirable_every=4)  # one desirable row only
    for seed in range(10):
        train, _ = split_rows(rows, validation_fraction=0.5, seed=seed, method="kto")
        assert all(count_kto_labels(train))


@pytest.mark.parametrize(("n_des", "n_und"), [(1, 1), (1, 9), (3, 10), (10, 3), (50, 1), (7, 6), (1, 100)])
def test_kto_weights_land_in_trl_band(n_des, n_und):
    rows = [{"label": True}] * n_des + [{"label": False}] * n_und
    dw, uw = kto_class_weights(rows)
    assert 1.0 <= kto_weight_ratio(n_des, n_und, dw, uw) <= 4 / 3
    assert min(dw, uw) == 1.0


def test_kto_weights_need_both_labels():
    with pytest.raises(RowsError):
        kto_class_weights([{"label": True}])
