"""The run page, its live parts, the runs list, and the likelihood-displacement warning."""
from __future__ import annotations

import re

import pytest

from tests.factories import ProjectFactory, make_run
from training.models import RunMetric
from training.presenters.verdict import likelihood_displacement
from training.selectors import dataset_use, lineage_rows

pytestmark = pytest.mark.django_db


def _series(chosen, margins, split="train"):
    return {split: {"logps/chosen": list(enumerate(chosen, 1)), "rewards/margins": list(enumerate(margins, 1))}}


def test_displacement_is_flagged_when_chosen_falls_and_margins_rise():
    warning = likelihood_displacement(_series([-50, -51, -60, -70], [0.1, 0.5, 1.0, 2.0], split="eval"))

    assert warning and "fell by 20.00" in warning and "validation split" in warning


def test_no_warning_when_chosen_rises_with_the_margin():
    assert likelihood_displacement(_series([-50, -45, -40, -35], [0.1, 0.5, 1.0, 2.0], split="eval")) is None


def test_no_warning_without_enough_points():
    assert likelihood_displacement(_series([-50, -90], [0.1, 2.0])) is None


def test_training_batches_are_averaged_by_quarters():
    chosen = [-50, -52, -51, -49, -70, -72, -71, -73]
    margins = [0.0, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 1.2]

    warning = likelihood_displacement(_series(chosen, margins))

    assert warning and "training batches" in warning


def test_the_run_page_shows_status_and_the_last_training_batch(admin_client):
    run = make_run(ProjectFactory(name="Pages"), status="running")
    RunMetric.objects.create(run=run, step=1, values={"loss": 0.69, "rewards/margins": 0.0})

    html = admin_client.get(f"/runs/{run.pk}/").content.decode()

    assert "Running" in html and 'hx-trigger="every 2s"' in html
    assert "Cancel run" in html
    assert "Last training batch, step 1: margin 0 · loss 0.69 — a single batch, noisy." in html


def test_a_finished_run_stops_polling(admin_client):
    run = make_run(ProjectFactory(), status="succeeded")

    html = admin_client.get(f"/runs/{run.pk}/status/").content.decode()

    assert "hx-trigger" not in html and "Cancel run" not in html


def test_metrics_json_gives_series_per_split(admin_client):
    run = make_run(ProjectFactory(), status="running")
    RunMetric.objects.create(run=run, step=1, values={"loss": 0.7})
    RunMetric.objects.create(run=run, step=2, values={"loss": 0.6})
    RunMetric.objects.create(run=run, step=2, split="eval", values={"eval_loss": 0.65})

    body = admin_client.get(f"/runs/{run.pk}/metrics.json").json()

    assert body["series"]["train"]["loss"] == [[1, 0.7], [2, 0.6]]
    assert body["series"]["eval"]["loss"] == [[2, 0.65]]


def test_the_runs_list_shows_key_metrics(admin_client):
    project = ProjectFactory()
    run = make_run(project, status="succeeded")
    RunMetric.objects.create(run=run, step=3, values={"loss": 0.5, "rewards/margins": 1.25, "rewards/accuracies": 0.75})

    html = admin_client.get(f"/projects/{project.pk}/runs/", HTTP_HX_REQUEST="true").content.decode()

    assert run.name in html and "<html" not in html
    assert "no validation" in html and "training batch: accuracy 75% · margin 1.25 · loss 0.5" in html


def test_the_runs_list_leads_with_validation_and_the_verdict(admin_client):
    project = ProjectFactory()
    run = _finished_run(project, validation={"rewards/accuracies": 0.55, "rewards/margins": 0.3, "loss": 0.68},
                        final_train={"rewards/accuracies": 0.5, "loss": 0.69})

    html = admin_client.get(f"/projects/{project.pk}/runs/", HTTP_HX_REQUEST="true").content.decode()

    validation = html.index("validation: implicit-reward accuracy <b>55%</b> · reward margin <b>0.3</b> · loss <b>0.68</b>")
    assert "(40 pairs, step 120)" in html
    assert validation < html.index("training batch: accuracy 50% · loss 0.69")
    assert 'data-testid="run-verdict-kind"' in html and "Under-fitted" in html and run.name in html


def test_run_text_is_escaped(admin_client):
    run = make_run(ProjectFactory(), status="failed")
    run.error = "<script>alert(1)</script>"
    run.name = "<img src=x onerror=alert(2)>"
    run.save()

    html = admin_client.get(f"/runs/{run.pk}/").content.decode()

    assert "<script>alert(1)" not in html and "<img src=x" not in html


# ---------------------------------------------------------------- headline, verdict, charts, settings, dataset (issue 8)

SETTINGS = {
    "method": "dpo", "loss_type": None, "beta": 0.1, "learning_rate": 5e-05, "num_train_epochs": 3.0, "max_steps": -1,
    "per_device_batch_size": 4, "gradient_accumulation_steps": 1, "validation_fraction": 0.1, "seed": 42,
    "desirable_weight": None, "precompute_ref_log_probs": False, "group_by_length": True, "save_steps": 50,
    "simpo_gamma": 0.5, "cpo_alpha": 1.0, "ld_alpha": None,
    "warmup_ratio": -0.06400000000000006 + 0.1,
    "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
}


def _finished_run(project, *, validation, method="dpo", final_train=None, status="succeeded"):
    run = make_run(project, status=status, method=method)
    run.settings = {**SETTINGS, "method": method}
    run.train_rows, run.validation_rows, run.step, run.total_steps = 180, 40, 150, 150
    run.outcome = {
        "kept_step": 120, "best_metric": "rewards/accuracies" if method == "dpo" else "loss", "validation": validation,
        "validation_rows": 40, "train_rows": 180, "steps": 150,
        "final_train": final_train or {"rewards/accuracies": 1.0, "rewards/margins": 2.5, "loss": 0.05, "kl": 0.2},
    }
    run.save()
    return run


def test_the_run_page_leads_with_validation_and_says_what_it_was_measured_on(admin_client):
    run = _finished_run(ProjectFactory(), validation={"rewards/accuracies": 0.93, "rewards/margins": 1.2, "loss": 0.31})

    html = admin_client.get(f"/runs/{run.pk}/").content.decode()

    validation = html.index('data-testid="validation-headline"')
    assert "<b>93%</b> implicit-reward accuracy" in html and "<b>1.2</b> reward margin" in html
    assert (
        "Measured on 40 validation pairs at step 120, the kept checkpoint (the step with the best validation reward "
        "accuracy)." in html
    )
    train = html.index("Last training batch (4 pairs), step 150: accuracy 100% · margin 2.5 · loss 0.05 — a single batch, noisy.")
    assert validation < train
    assert 'data-kind="ok"' in html


def test_a_running_run_leads_with_its_latest_evaluation(admin_client):
    run = make_run(ProjectFactory(), status="running")
    run.validation_rows, run.settings = 20, {"per_device_batch_size": 4, "save_steps": 10}
    run.save()
    for step in (9, 10, 11):
        RunMetric.objects.create(run=run, step=step, values={"loss": 0.4, "rewards/accuracies": 1.0, "rewards/margins": 2.0})
    RunMetric.objects.create(run=run, step=10, split="eval", values={"eval_rewards/accuracies": 0.85, "eval_rewards/margins": 0.7})

    html = admin_client.get(f"/runs/{run.pk}/status/").content.decode()

    assert "Measured on 20 validation pairs at step 10, the latest evaluation; the run is still training." in html
    assert html.index("<b>85%</b> implicit-reward accuracy") < html.index("Last training batch (4 pairs), step 11")


def test_a_run_without_validation_says_so_and_labels_the_train_numbers(admin_client):
    run = make_run(ProjectFactory(), status="succeeded")
    RunMetric.objects.create(run=run, step=3, values={"loss": 0.5, "rewards/accuracies": 0.75})

    html = admin_client.get(f"/runs/{run.pk}/").content.decode()

    assert "No validation split: every row went into training" in html
    assert 'data-testid="validation-headline"' not in html and 'data-testid="run-verdict"' not in html
    assert "Last training batch, step 3: accuracy 75% · loss 0.5 — a single batch, noisy." in html


def test_an_under_fitted_run_says_so_and_what_to_try(admin_client):
    run = _finished_run(ProjectFactory(), validation={"rewards/accuracies": 0.55, "rewards/margins": 0.3, "loss": 0.68},
                        final_train={"rewards/accuracies": 0.5, "rewards/margins": 0.2, "loss": 0.69})

    html = admin_client.get(f"/runs/{run.pk}/").content.decode()

    assert 'data-kind="under_fitted"' in html
    assert "<b>Under-fitted.</b> On validation pairs the tuned model prefers the chosen answer only 55% of the time" in html
    assert "Train more epochs, raise the learning rate" in html


def test_an_over_fitted_kto_run_shows_ranking_accuracy_and_its_verdict(admin_client):
    run = _finished_run(ProjectFactory(), method="kto", validation={"loss": 0.42, "kl": 0.4, "ranking_accuracy": 0.81})
    for step, loss in ((50, 0.5), (100, 0.4), (150, 0.47)):
        RunMetric.objects.create(run=run, step=step, split="eval", values={"eval_loss": loss, "eval_kl": 0.4})

    html = admin_client.get(f"/runs/{run.pk}/").content.decode()

    assert "<b>81%</b> ranks held-out thumbs correctly" in html and "Measured on 40 validation rated answers at step 120" in html
    assert 'data-kind="over_fitted"' in html and "Validation loss rose from its best, 0.4 at step 100, to 0.47 at step 150" in html


def test_likelihood_displacement_shows_in_the_verdict(admin_client):
    run = _finished_run(ProjectFactory(), validation={"rewards/accuracies": 0.9, "rewards/margins": 1.8})
    for step, chosen, margin in ((50, -50.0, 0.2), (100, -75.0, 1.8)):
        RunMetric.objects.create(run=run, step=step, split="eval", values={"eval_logps/chosen": chosen, "eval_rewards/margins": margin})

    html = admin_client.get(f"/runs/{run.pk}/").content.decode()

    assert 'data-kind="displacement"' in html and "fell by 25.00" in html


def _chart_keys(html):
    return re.findall(r'<canvas data-keys="([^"]+)"', html)


def test_a_dpo_run_has_no_kl_chart_and_every_chart_it_shows_has_data(admin_client):
    run = _finished_run(ProjectFactory(), validation={"rewards/accuracies": 0.93, "rewards/margins": 1.2})
    RunMetric.objects.create(run=run, step=1, values={"loss": 0.69, "rewards/accuracies": 0.5, "rewards/margins": 0.0,
                                                      "rewards/chosen": 0.0, "rewards/rejected": 0.0})
    RunMetric.objects.create(run=run, step=1, split="eval", values={"eval_loss": 0.69, "eval_rewards/accuracies": 0.5})

    html = admin_client.get(f"/runs/{run.pk}/").content.decode()

    assert _chart_keys(html) == [
        "rewards/accuracies,ranking_accuracy", "loss", "rewards/accuracies", "rewards/chosen,rewards/rejected,rewards/margins"
    ]
    assert " hidden>" not in html and "Validation accuracy" in html


def test_a_kto_run_has_no_accuracy_chart_without_accuracies(admin_client):
    run = _finished_run(ProjectFactory(), method="kto", validation={"loss": 0.4, "kl": 0.3})
    RunMetric.objects.create(run=run, step=1, values={"loss": 0.5, "kl": 0.1})
    RunMetric.objects.create(run=run, step=1, split="eval", values={"eval_loss": 0.45, "eval_kl": 0.1})

    html = admin_client.get(f"/runs/{run.pk}/").content.decode()

    assert _chart_keys(html) == ["loss", "kl"]


def test_a_running_run_keeps_hidden_places_only_for_charts_its_method_fills(admin_client):
    run = make_run(ProjectFactory(), status="running")
    run.validation_rows = 10
    run.save()
    RunMetric.objects.create(run=run, step=1, values={"loss": 0.69})

    html = admin_client.get(f"/runs/{run.pk}/").content.decode()

    keys = _chart_keys(html)
    assert "kl" not in keys and keys[:2] == ["rewards/accuracies,ranking_accuracy", "loss"]
    assert html.count(" hidden>") == len(keys) - 1  # everything but the loss chart waits for its first point


def test_the_page_shows_no_python_reprs(admin_client):
    run = _finished_run(ProjectFactory(), validation={"rewards/accuracies": 0.93, "rewards/margins": -0.06400000000000006})
    run.snapshot.lineage = {"annotators": {"bob": 38, "alice": 40}, "guideline_versions_voted": [1, 2],
                            "agreement_alpha_pairs": 0.7234567891234, "agreement_alpha_ratings": None,
                            "includes_review_votes": False}
    run.snapshot.save()

    html = admin_client.get(f"/runs/{run.pk}/").content.decode()

    settings = html[html.index('data-testid="run-settings"'):]
    settings = settings[: settings.index("</table>")]
    for repr_text in ("[", "'", "&#x27;", "True", "False", "None", "e-05", "{"):
        assert repr_text not in settings, repr_text
    assert "<th>lora target modules</th><td>q_proj, k_proj, v_proj, o_proj</td>" in settings
    assert "<th>learning rate</th><td>5e-5</td>" in settings and "<th>warmup ratio</th><td>0.036</td>" in settings
    assert "<th>precompute ref log probs</th><td>no</td>" in settings and "<th>group by length</th><td>yes</td>" in settings
    assert "<th>loss type</th><td>default for the method</td>" in settings
    assert "<th>max steps</th><td>no limit (the epochs decide)</td>" in settings
    # Another method's own knobs are not listed on a DPO run.
    assert "simpo gamma" not in settings and "cpo alpha" not in settings and "desirable weight" not in settings
    # In the order TrainSettings declares them, whatever order the JSON column keeps.
    assert settings.index("<th>method</th>") < settings.index("<th>beta</th>") < settings.index("<th>lora r</th>")
    assert "\u22120.064" in html  # the validation margin, with a real minus sign
    assert not re.search(r"\d\.\d{6,}", html), "a float printed at full precision"
    assert "None" not in html and "True" not in html and "False" not in html


def test_the_dataset_block_splits_used_from_left_out(admin_client):
    run = make_run(ProjectFactory(), status="succeeded")
    run.snapshot.summary = {"considered": 130, "rows": 120, "ties": 4, "both_bad": 2, "disagreements": 3, "conflicting": 0,
                            "incomplete": 0, "edited": 5, "identical": 1, "heldout": 6, "late_votes": 2}
    run.snapshot.lineage = {"annotators": {"bob": 38, "alice": 40}, "agreement_alpha_pairs": 0.72}
    run.snapshot.includes_heldout = True
    run.snapshot.save()

    html = admin_client.get(f"/runs/{run.pk}/").content.decode()

    assert "<b>Used:</b> 120 rows from 130 complete tasks (5 answers edited by annotators)" in html
    assert (
        "<b>Left out:</b> 4 ties, 2 both-bad, 3 disagreements, 1 pair of identical answers, "
        "6 tasks on held-out prompts (not opted in), 2 late votes</p>" in html
    )
    assert "rows: 120" not in html and "considered" not in html and "conflicting" not in html
    assert "<th>annotators (votes)</th><td>alice 40, bob 38</td>" in html
    assert "0.72: moderate agreement" in html
    assert 'class="lineage-warn"><th>includes votes on held-out prompts</th><td><span class="badge warn" role="alert">yes</span>' in html


def test_kto_counts_both_bad_pairs_as_used():
    use = dataset_use(summary={"rows": 40, "considered": 25, "both_bad": 3, "ties": 1, "edited": 0}, method="kto", row_count=40)

    assert use.used == "40 rows from 25 complete tasks (3 both-bad pairs as two thumbs-down)"
    assert use.left_out == ("1 tie",)


def test_an_old_summary_without_counts_still_reads():
    use = dataset_use(summary={}, method="dpo", row_count=12)

    assert (use.used, use.left_out, use.reached) == ("12 rows", (), "")


def test_pairs_say_how_many_decided_judgements_reached_training_and_thumbs_do_not():
    # 30 complete pairs: 5 ties, 1 both-bad and 2 disagreements gave no preference; of the 22 decided, one pair of
    # identical answers and two cut-off chosen answers gave no row (a written answer on a tie counts as decided).
    summary = {"rows": 19, "considered": 30, "ties": 5, "both_bad": 1, "disagreements": 2, "identical": 1,
               "cut_off_chosen": 2, "heldout": 4, "incomplete": 3}
    assert dataset_use(summary=summary, method="dpo", row_count=19).reached == "19 of 22 decided judgements (86%) reached training"
    assert dataset_use(summary=summary, method="kto", row_count=19).reached == ""
    assert dataset_use(summary={"rows": 0, "considered": 3, "ties": 3}, method="dpo", row_count=0).reached == ""


@pytest.mark.parametrize(
    ("alpha", "reading"),
    [(0.85, "0.85: annotators agree well"), (0.5, "0.5: low agreement"), (-0.1, "\u22120.1: no better than chance"),
     (None, "not measured")],
)
def test_agreement_gets_a_plain_reading(alpha, reading):
    rows = lineage_rows(lineage={"agreement_alpha_pairs": alpha}, includes_heldout=False)

    assert rows[0].text.startswith(reading)
    assert (rows[-1].label, rows[-1].text, rows[-1].warn) == ("includes votes on held-out prompts", "no", False)


def test_a_finished_run_says_how_far_it_moved_once_a_review_measured_it(admin_client):
    from training.models import GenerationJob, ModelVersion

    run = make_run(ProjectFactory(), status="succeeded")
    run.model_version = ModelVersion.objects.create(name="tuned-moved", base_model=run.base_model, adapter_path="/x/adapter")
    run.save(update_fields=["model_version"])

    def movement_text() -> str:
        html = admin_client.get(f"/runs/{run.pk}/").content.decode()
        return re.sub(r"\s+", " ", re.search(r'data-testid="run-movement">(.*?)</p>', html, re.S).group(1))

    assert "Not measured yet" in movement_text() and f"/runs/{run.pk}/review/" in movement_text()

    job = GenerationJob.objects.create(project=run.project, run=run, purpose="review", prompt_ids=[], settings={},
                                       status="succeeded", movement={"pairs": 90, "identical": 9, "kl_per_token": 0.0301,
                                                                     "tokens": 12345})

    text = re.sub(r"<[^>]+>", "", movement_text())
    assert "KL(tuned ‖ base) 0.0301 per token over 12345 tokens" in text
    assert f"10.0% of 90 held-out outputs identical to the base's (measured by review job {job.pk}" in text
