"""run_verdict and run_headline: pure functions over a run's outcome and metric series (no database)."""
from __future__ import annotations

import pytest

from training.models import TuningRun
from training.presenters.headline import run_headline
from training.presenters.verdict import run_verdict


def _series(train=None, eval=None):  # noqa: A002 - the split's name
    """{"train": {key: [[step, value], ...]}, "eval": {...}} from {key: [values...]} (steps 10, 20, 30, ...)."""
    def points(values_by_key):
        return {key: [[10 * (i + 1), v] for i, v in enumerate(values)] for key, values in (values_by_key or {}).items()}

    return {"train": points(train), "eval": points(eval)}


def _outcome(validation, *, final_train=None, kept_step=120, rows=40, best="rewards/accuracies"):
    return {
        "kept_step": kept_step, "best_metric": best, "validation": validation, "validation_rows": rows,
        "train_rows": 180, "steps": 150, "final_train": final_train or {},
    }


# ---------------------------------------------------------------- under-fitted


def test_it_calls_a_dpo_run_near_chance_under_fitted():
    verdict = run_verdict(method="dpo", outcome=_outcome({"rewards/accuracies": 0.55, "rewards/margins": 0.4}), series=_series())

    assert verdict.kind == "under_fitted"
    assert "55%" in verdict.message and "coin flip" in verdict.message
    assert "more epochs" in verdict.advice and "learning rate" in verdict.advice and "more data" in verdict.advice


def test_accuracy_of_exactly_060_is_still_near_chance_and_061_is_not():
    at = run_verdict(method="dpo", outcome=_outcome({"rewards/accuracies": 0.6, "rewards/margins": 0.5}), series=_series())
    above = run_verdict(method="dpo", outcome=_outcome({"rewards/accuracies": 0.61, "rewards/margins": 0.5}), series=_series())

    assert (at.kind, above.kind) == ("under_fitted", "ok")


def test_a_tiny_margin_is_under_fitted_even_with_good_accuracy():
    verdict = run_verdict(method="dpo", outcome=_outcome({"rewards/accuracies": 0.8, "rewards/margins": -0.05}), series=_series())

    assert verdict.kind == "under_fitted" and "\u22120.05" in verdict.message


def test_a_kto_run_that_ranks_held_out_thumbs_near_chance_is_under_fitted():
    verdict = run_verdict(
        method="kto", outcome=_outcome({"loss": 0.49, "kl": 0.0, "ranking_accuracy": 0.52}, best="loss"), series=_series()
    )

    assert verdict.kind == "under_fitted" and "52%" in verdict.message


def test_kto_judges_by_ranking_accuracy_when_it_has_one():
    verdict = run_verdict(
        method="kto", outcome=_outcome({"loss": 0.3, "ranking_accuracy": 0.85, "rewards/margins": 0.02}, best="loss"),
        series=_series(),
    )

    assert verdict.kind == "ok" and "85%" in verdict.message


# ---------------------------------------------------------------- over-fitted


def test_training_far_above_validation_is_over_fitted_and_points_at_the_kept_checkpoint():
    series = _series(train={"rewards/accuracies": [1.0, 1.0, 0.75, 1.0, 1.0, 1.0]})

    verdict = run_verdict(method="dpo", outcome=_outcome({"rewards/accuracies": 0.65, "rewards/margins": 0.9}), series=series)

    assert verdict.kind == "over_fitted"
    assert "95%" in verdict.message and "65%" in verdict.message
    assert "step 120" in verdict.advice and "fewer epochs" in verdict.advice and "more data" in verdict.advice


def test_a_checkpoint_kept_before_a_second_pass_memorised_the_pairs_is_judged_on_its_own_steps():
    # The demo's run: steps 10-30 in the first pass near 75% on the batches, then 100% in the second pass; the
    # checkpoint kept at step 30 validates at 74%
    series = _series(train={"rewards/accuracies": [0.75, 0.7, 0.75] + [1.0] * 6}, eval={"rewards/accuracies": [0.7, 0.74, 0.7]})
    outcome = _outcome({"rewards/accuracies": 0.74, "rewards/margins": 0.3}, kept_step=30)

    verdict = run_verdict(method="dpo", outcome=outcome, series=series)
    at_the_end = run_verdict(method="dpo", outcome={**outcome, "kept_step": 90}, series=series)

    assert verdict.kind == "ok", verdict.message
    assert verdict.message.endswith("with no sign of over-fitting up to step 30, the one kept."), verdict.message
    assert any("After step 30 it went on to learn the training pairs by heart (the training batches are right 100%"
               in note and "the saved adapter is the step-30 checkpoint" in note for note in verdict.also), verdict.also
    assert at_the_end.kind == "over_fitted", "kept at the last step, the memorising adapter is the one saved"


def test_over_fitting_wins_over_near_chance_validation():
    series = _series(train={"rewards/accuracies": [1.0] * 5})

    verdict = run_verdict(method="dpo", outcome=_outcome({"rewards/accuracies": 0.5, "rewards/margins": 0.02}), series=series)

    assert verdict.kind == "over_fitted"


def test_one_lucky_training_batch_is_not_taken_for_over_fitting():
    # The last batch scored 1.0 but the last five average 0.6: no gap worth a verdict.
    series = _series(train={"rewards/accuracies": [0.5, 0.5, 0.5, 0.5, 1.0]})
    outcome = _outcome({"rewards/accuracies": 0.7, "rewards/margins": 0.5}, final_train={"rewards/accuracies": 1.0})

    assert run_verdict(method="dpo", outcome=outcome, series=series).kind == "ok"


def test_the_final_training_batch_is_used_when_there_is_no_series():
    outcome = _outcome({"rewards/accuracies": 0.7, "rewards/margins": 0.5}, final_train={"rewards/accuracies": 1.0})

    assert run_verdict(method="dpo", outcome=outcome, series=_series()).kind == "over_fitted"


def test_a_gap_just_under_025_is_not_over_fitting():
    series = _series(train={"rewards/accuracies": [0.85] * 5})

    verdict = run_verdict(method="dpo", outcome=_outcome({"rewards/accuracies": 0.61, "rewards/margins": 0.5}), series=series)

    assert verdict.kind == "ok"


def test_validation_loss_rising_more_than_ten_percent_from_its_best_is_over_fitted():
    series = _series(eval={"loss": [0.6, 0.4, 0.45]})

    verdict = run_verdict(method="kto", outcome=_outcome({"loss": 0.4, "ranking_accuracy": 0.9}, best="loss"), series=series)

    assert verdict.kind == "over_fitted" and "0.4 at step 20" in verdict.message and "0.45 at step 30" in verdict.message


@pytest.mark.parametrize(
    "losses",
    [
        [0.6, 0.4, 0.43],  # 7.5% above the best: noise
        [0.01, 0.005, 0.008],  # 60% above, but 0.003 in absolute terms
        [0.6, 0.5, 0.4],  # still falling
        [0.6, 0.3],  # too few evaluations to call a trend
    ],
)
def test_small_or_falling_validation_loss_changes_are_not_over_fitting(losses):
    series = _series(eval={"loss": losses})

    verdict = run_verdict(method="kto", outcome=_outcome({"loss": 0.4, "ranking_accuracy": 0.9}, best="loss"), series=series)

    assert verdict.kind == "ok"


# ---------------------------------------------------------------- displacement, ok, and what is missing


def test_likelihood_displacement_is_a_verdict_when_nothing_else_is_wrong():
    series = _series(eval={"logps/chosen": [-50, -60, -75], "rewards/margins": [0.2, 1.0, 1.8]})

    verdict = run_verdict(method="dpo", outcome=_outcome({"rewards/accuracies": 0.9, "rewards/margins": 1.8}), series=series)

    assert verdict.kind == "displacement" and "fell by 25.00" in verdict.message
    assert "lower learning rate" in verdict.advice and verdict.title == "Likelihood displacement"


def test_displacement_behind_another_verdict_is_kept_as_a_note():
    series = _series(eval={"logps/chosen": [-50, -60, -75], "rewards/margins": [0.0, 0.02, 0.05]})

    verdict = run_verdict(method="dpo", outcome=_outcome({"rewards/accuracies": 0.55, "rewards/margins": 0.05}), series=series)

    assert verdict.kind == "under_fitted" and any("Likelihood displacement" in note for note in verdict.also)


def test_a_healthy_run_is_ok():
    series = _series(train={"rewards/accuracies": [1.0, 0.75, 1.0, 1.0, 1.0]}, eval={"loss": [0.6, 0.4, 0.31]})

    verdict = run_verdict(
        method="dpo", outcome=_outcome({"rewards/accuracies": 0.93, "rewards/margins": 1.2, "loss": 0.31}), series=series
    )

    assert verdict.kind == "ok" and verdict.title == "Learning"
    assert "93%" in verdict.message and "1.2" in verdict.message and verdict.also == ()


def test_without_validation_there_is_no_verdict():
    series = _series(train={"rewards/accuracies": [1.0] * 8, "loss": [0.1] * 8})

    assert run_verdict(method="dpo", outcome={}, series=series) is None
    assert run_verdict(method="dpo", outcome={"kept_step": 8}, series=_series()) is None


def test_without_validation_displacement_on_training_batches_still_shows():
    series = _series(train={"logps/chosen": [-50, -52, -51, -49, -70, -72, -71, -73], "rewards/margins": [0, .1, .2, .3, .5, .8, 1, 1.2]})

    verdict = run_verdict(method="dpo", outcome={}, series=series)

    assert verdict.kind == "displacement" and "training batches" in verdict.message


def test_a_running_run_is_judged_on_its_latest_evaluation_and_says_so():
    series = _series(eval={"rewards/accuracies": [0.7, 0.52], "rewards/margins": [0.3, 0.3]})

    verdict = run_verdict(method="dpo", outcome={}, series=series, validation_rows=40, still_training=True)

    assert verdict.kind == "under_fitted" and verdict.message.startswith("So far, on validation pairs") and "52%" in verdict.message


def test_too_few_validation_pairs_give_no_verdict_but_the_interval_and_how_much_more_data():
    # The newcomer's run: 3 validation pairs, one right. Over- and under-fitted flipped on it from one evaluation
    # to the next; neither can be told on 3 pairs.
    verdict = run_verdict(
        method="dpo", outcome=_outcome({"rewards/accuracies": 1 / 3, "rewards/margins": 0.01}, rows=3),
        series=_series(train={"rewards/accuracies": [1.0] * 5}), validation_fraction=0.2,
    )

    assert verdict.kind == "too_few" and verdict.title == "Too few to tell"
    assert verdict.message == (
        "3 validation pairs put accuracy at 33%, but its 95% interval runs from 6% to 79%: too few to tell learning "
        "from a coin flip, so no verdict is given."
    )
    assert "at least 24 validation pairs: about 120 pairs in all at this run's validation share of 20%" in verdict.advice


def test_the_verdict_starts_at_24_validation_rows():
    from training.data_needs import ROWS_TO_TELL, accuracy_interval

    good = {"rewards/accuracies": 0.9, "rewards/margins": 1.0}
    below = run_verdict(method="dpo", outcome=_outcome(good, rows=23), series=_series())
    at = run_verdict(method="dpo", outcome=_outcome(good, rows=24), series=_series())

    assert ROWS_TO_TELL == 24 and accuracy_interval(24)[0] > 0.5 and accuracy_interval(22)[0] <= 0.5
    assert (below.kind, at.kind) == ("too_few", "ok")
    kto = run_verdict(method="kto", outcome=_outcome({"ranking_accuracy": 0.8, "loss": 0.3}, rows=10, best="loss"),
                      series=_series())
    assert kto.kind == "too_few" and kto.message.startswith("10 validation rated answers put accuracy at 80%")
    assert "launch again with a validation share that holds that many" in kto.advice


# ---------------------------------------------------------------- headline


def _run(**fields):
    defaults = {"method": "dpo", "status": "succeeded", "validation_rows": 40, "outcome": {},
                "settings": {"per_device_batch_size": 2, "gradient_accumulation_steps": 2, "save_steps": 50}}
    return TuningRun(**{**defaults, **fields})


def test_the_headline_leads_with_the_kept_checkpoints_validation_numbers():
    outcome = _outcome({"rewards/accuracies": 0.93, "rewards/margins": 1.2, "loss": 0.31, "kl": 0.4},
                       final_train={"rewards/accuracies": 1.0, "rewards/margins": 3.0, "loss": 0.05})

    headline = run_headline(run=_run(outcome=outcome), series=_series())

    assert [(f.label, f.text) for f in headline.validation] == [
        ("implicit-reward accuracy", "93%"), ("reward margin", "1.2"), ("loss", "0.31")
    ]
    assert headline.measured_on == (
        "40 validation pairs at step 120, the kept checkpoint (the step with the best validation reward accuracy)"
    )
    assert headline.train_label == "Last training batch (4 pairs), step 150"
    assert [(f.label, f.text) for f in headline.train] == [("accuracy", "100%"), ("margin", "3"), ("loss", "0.05")]
    assert headline.no_validation == ""


def test_a_kto_headline_shows_loss_kl_and_ranking_accuracy():
    outcome = _outcome({"loss": 0.31, "kl": 0.4, "ranking_accuracy": 0.81}, best="loss", rows=1)

    headline = run_headline(run=_run(method="kto", outcome=outcome), series=_series())

    assert [(f.label, f.text) for f in headline.validation] == [
        ("ranks held-out thumbs correctly", "81%"), ("loss", "0.31"), ("KL", "0.4")
    ]
    assert headline.measured_on.startswith("1 validation rated answer at step 120")


def test_a_running_headline_uses_the_latest_evaluation():
    series = _series(train={"loss": [0.7, 0.6, 0.5]}, eval={"rewards/accuracies": [0.6, 0.75], "rewards/margins": [0.1, 0.4]})

    headline = run_headline(run=_run(status="running"), series=series)

    assert [f.text for f in headline.validation] == ["75%", "0.4"]
    assert headline.measured_on == "40 validation pairs at step 20, the latest evaluation; the run is still training"
    assert headline.train_label == "Last training batch (4 pairs), step 30" and headline.train[0].text == "0.5"


def test_a_run_without_a_validation_split_says_so():
    headline = run_headline(run=_run(validation_rows=0), series=_series(train={"loss": [0.7, 0.5]}))

    assert headline.validation == () and headline.no_validation.startswith("No validation split")
    assert headline.train[0].label == "loss"


def test_a_running_run_before_its_first_evaluation_says_when_it_comes():
    headline = run_headline(run=_run(status="running", total_steps=200), series=_series(train={"loss": [0.7]}))

    assert headline.no_validation == "No validation numbers yet: the first evaluation comes at step 50."


def test_an_outcome_with_prefixed_or_malformed_parts_still_reads():
    prefixed = run_verdict(method="dpo", outcome={"validation": {"eval_rewards/accuracies": 0.5}}, series=_series())
    malformed = run_verdict(method="dpo", outcome={"validation": None, "final_train": "?"}, series=_series())
    headline = run_headline(run=_run(outcome={"validation": [1, 2], "final_train": None}), series=_series())

    assert prefixed.kind == "under_fitted" and malformed is None
    assert headline.validation == () and headline.train == ()
