"""Launching a run from the dashboard form: every refusal has a clear message and queues nothing."""
from __future__ import annotations

from io import StringIO

import pytest

from tests.factories import make_pair_task, make_pair_vote
from tests.training.conftest import LAUNCH_FORM as FORM
from tests.training.conftest import rated_project, voted_compare_project
from training.models import DatasetSnapshot, TuningRun

pytestmark = pytest.mark.django_db



def _launch(admin_client, project, base_model_id, capture, **changes):
    data = {**FORM, "base_model": str(base_model_id), **changes}
    with capture() as callbacks:
        response = admin_client.post(f"/projects/{project.pk}/runs/new/", data)
    return response, callbacks


def _nothing_queued(callbacks):
    assert callbacks == []
    assert not TuningRun.objects.exists()
    assert not DatasetSnapshot.objects.exists()


def test_it_launches_a_dpo_run_with_a_frozen_snapshot(admin_client, tiny_base, django_capture_on_commit_callbacks):
    project = voted_compare_project(6)

    response, callbacks = _launch(admin_client, project, tiny_base.pk, django_capture_on_commit_callbacks)

    run = TuningRun.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/runs/{run.pk}/"
    assert len(callbacks) == 1, "enqueued once, after commit"
    page = admin_client.get(response["Location"]).content.decode()
    # In the past tense: it stays on the page while the run runs (issue 26: "Queued …" stayed up as if its state)
    assert f"Launched {run.name} with 6 training rows and 0 for validation; the status below follows it." in page
    assert "Queued " not in page
    assert (run.status, run.method, run.train_rows, run.validation_rows) == ("queued", "dpo", 6, 0)
    assert run.snapshot.row_count == 6 and len(run.snapshot.rows) == 6
    assert len(run.snapshot.rows_hash) == 64
    assert run.snapshot.lineage["annotators"] and run.snapshot.lineage["guideline_version"] == 1
    assert run.settings["lora"]["r"] == 4 and run.settings["max_steps"] == 2


def test_two_runs_launched_in_one_minute_get_different_names(admin_client, tiny_base, django_capture_on_commit_callbacks):
    project = voted_compare_project(6)
    data = {"name": ""}

    _launch(admin_client, project, tiny_base.pk, django_capture_on_commit_callbacks, **data)
    _launch(admin_client, project, tiny_base.pk, django_capture_on_commit_callbacks, **data)

    first, second = TuningRun.objects.order_by("id").values_list("name", flat=True)
    assert first != second
    assert first.startswith(f"{project.name} DPO run 1, ") and second.startswith(f"{project.name} DPO run 2, ")


def test_new_votes_do_not_change_a_queued_run(admin_client, tiny_base, django_capture_on_commit_callbacks):
    project = voted_compare_project(5)
    _launch(admin_client, project, tiny_base.pk, django_capture_on_commit_callbacks)
    run = TuningRun.objects.get()
    before = (run.snapshot.rows_hash, list(run.snapshot.rows))

    annotator = project.members.first()
    make_pair_vote(make_pair_task(project, 99), annotator, "a")

    run.snapshot.refresh_from_db()
    assert (run.snapshot.rows_hash, run.snapshot.rows) == before


def test_too_little_data_is_refused(admin_client, tiny_base, django_capture_on_commit_callbacks):
    project = voted_compare_project(2)

    response, callbacks = _launch(admin_client, project, tiny_base.pk, django_capture_on_commit_callbacks)

    assert response.status_code == 400
    assert "Too little data: 2 preference pair(s) are ready, and a DPO run needs at least 4" in response.content.decode()
    _nothing_queued(callbacks)


def test_kto_without_both_labels_is_refused(admin_client, tiny_base, django_capture_on_commit_callbacks):
    project = rated_project(up=6, down=0)

    response, callbacks = _launch(admin_client, project, tiny_base.pk, django_capture_on_commit_callbacks, method="kto")

    assert response.status_code == 400
    assert "KTO needs both good and bad examples: this project has 6 thumbs-up and 0 thumbs-down" in response.content.decode()
    _nothing_queued(callbacks)


def test_an_unknown_base_model_is_refused(admin_client, tiny_base, django_capture_on_commit_callbacks):
    project = voted_compare_project(6)

    response, callbacks = _launch(admin_client, project, 987654, django_capture_on_commit_callbacks)

    assert response.status_code == 400
    assert "unknown base model" in response.content.decode()
    _nothing_queued(callbacks)


def test_a_base_model_whose_folder_is_missing_is_refused(admin_client, tiny_base, django_capture_on_commit_callbacks):
    project = voted_compare_project(6)
    tiny_base.path = "/nowhere/at/all"
    tiny_base.save()

    response, callbacks = _launch(admin_client, project, tiny_base.pk, django_capture_on_commit_callbacks)

    assert response.status_code == 400
    assert "is not a model folder on this server" in response.content.decode()
    _nothing_queued(callbacks)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"learning_rate": "-0.001"}, "Learning rate must be a positive number"),
        ({"learning_rate": "5"}, "too high to train anything"),
        ({"beta": "0"}, "beta must be a positive number"),
        ({"per_device_batch_size": "0"}, "Batch size must be a positive integer"),
        ({"max_steps": "0"}, "Max steps must be a positive whole number"),
        ({"max_length": "4"}, "Max length must be a whole number of at least 16"),
        ({"validation_fraction": "0.9"}, "Validation fraction must be between 0 and 0.5"),
        ({"lora_r": "0"}, "LoRA"),
        ({"lora_target_modules": "lm_head"}, "lm_head"),
        ({"method": "kto", "loss_type": "ipo"}, "not available for KTO"),
        ({"desirable_weight": "2"}, "only applies to KTO"),
    ],
)
def test_impossible_settings_are_refused(admin_client, tiny_base, django_capture_on_commit_callbacks, changes, message):
    project = voted_compare_project(6)

    response, callbacks = _launch(admin_client, project, tiny_base.pk, django_capture_on_commit_callbacks, **changes)

    assert response.status_code == 400
    assert message in response.content.decode()
    _nothing_queued(callbacks)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_steps", "0", "Max steps must be a positive whole number, or -1 to train for whole epochs; got 0."),
        ("max_length", "4", "Max length must be a whole number of at least 16 tokens, got 4."),
        ("learning_rate", "5", "Learning rate 5.0 is too high to train anything (at most 0.01)."),
        ("lora_r", "0", "LoRA rank r must be a positive integer, got 0."),
    ],
)
def test_a_settings_refusal_is_shown_on_its_field_in_the_forms_words(
    admin_client, tiny_base, django_capture_on_commit_callbacks, field, value, message
):
    # Issue 26: these came back as a banner naming internal fields ("max_steps must be ...").
    project = voted_compare_project(6)

    response, callbacks = _launch(admin_client, project, tiny_base.pk, django_capture_on_commit_callbacks, **{field: value})

    form = response.context["form"]
    assert form.errors[field] == [message]
    assert not form.non_field_errors()
    assert "max_steps" not in message and "max_length" not in message
    _nothing_queued(callbacks)


def test_kto_with_a_batch_larger_than_the_data_is_refused(admin_client, tiny_base, django_capture_on_commit_callbacks):
    project = rated_project(up=3, down=2)

    response, callbacks = _launch(
        admin_client, project, tiny_base.pk, django_capture_on_commit_callbacks, method="kto", per_device_batch_size="8"
    )

    assert response.status_code == 400
    assert "KTO needs at least one full batch" in response.content.decode()
    _nothing_queued(callbacks)


def test_annotators_cannot_launch(annotator_client, tiny_base, django_capture_on_commit_callbacks):
    project = voted_compare_project(6)

    response, callbacks = _launch(annotator_client, project, tiny_base.pk, django_capture_on_commit_callbacks)

    assert response.status_code == 403
    _nothing_queued(callbacks)


def test_the_launch_page_shows_the_data_ready(admin_client, tiny_base):
    project = voted_compare_project(5)

    html = admin_client.get(f"/projects/{project.pk}/runs/new/").content.decode()

    assert "Pairs (DPO, SimPO, CPO, ORPO, reward model): 5 rows" in html
    assert "tiny-random" in html
    # In words, not the summary's keys
    dpo = html.split('data-testid="data-dpo">', 1)[1].split("</p>", 1)[0]
    assert dpo.startswith("5 rows from 5 complete tasks.")
    assert "both_bad" not in html and "low_agreement" not in html


def test_the_launch_command_queues_a_run(tiny_base, django_capture_on_commit_callbacks):
    from io import StringIO

    from django.core.management import call_command

    project = voted_compare_project(6, name="Scripted")
    out = StringIO()

    with django_capture_on_commit_callbacks() as callbacks:
        call_command("launch_run", "--project", "Scripted", "--method", "dpo", "--base-model", "tiny-random",
                     "--set", "max_steps=3", "--set", 'lora={"r": 4}', stdout=out)

    run = TuningRun.objects.get(project=project)
    assert f"Queued run {run.pk}" in out.getvalue()
    assert run.settings["max_steps"] == 3 and run.settings["lora"]["r"] == 4
    assert len(callbacks) == 1


def test_the_launch_command_explains_a_refusal(tiny_base):
    from django.core.management import CommandError, call_command

    voted_compare_project(1, name="Thin")

    with pytest.raises(CommandError, match="Too little data"):
        call_command("launch_run", "--project", "Thin", "--method", "dpo", "--base-model", "tiny-random")
    assert not TuningRun.objects.exists()


def _review_battle_on(project, n, *, split, identical=False):
    """A complete review pair (a blind battle) on a prompt of ``split`` with one vote for A."""
    from labeling.models import Completion, PairTask, Prompt

    prompt = Prompt.objects.create(project=project, messages=[{"role": "user", "content": f"Battle {n}?"}], split=split)
    a = Completion.objects.create(prompt=prompt, text=f"tuned answer {n}", source="generated")
    b = Completion.objects.create(prompt=prompt, text=f"tuned answer {n}" if identical else f"base answer {n}", source="generated")
    task = PairTask.objects.create(project=project, prompt=prompt, completion_a=a, completion_b=b, purpose="review", overlap=1)
    make_pair_vote(task, project.members.first(), "a")
    return task


def test_held_out_votes_stay_out_of_a_default_run(admin_client, tiny_base, django_capture_on_commit_callbacks):
    # Given 5 labelled pairs and 3 voted battles on held-out prompts (and 1 on a train prompt)
    project = voted_compare_project(5)
    for n in range(3):
        _review_battle_on(project, n, split="heldout")
    _review_battle_on(project, 9, split="train")

    _launch(admin_client, project, tiny_base.pk, django_capture_on_commit_callbacks)

    # Then the snapshot has the 5 pairs and the train-prompt battle, none of the held-out ones, and says so
    run = TuningRun.objects.get()
    prompts = [row["prompt"][0]["content"] for row in run.snapshot.rows]
    assert len(prompts) == 6 and "Battle 9?" in prompts and not {"Battle 0?", "Battle 1?", "Battle 2?"} & set(prompts)
    assert run.snapshot.summary["heldout"] == 3 and not run.snapshot.includes_heldout
    assert run.snapshot.lineage["includes_heldout_votes"] is False and run.snapshot.lineage["heldout_tasks_left_out"] == 3


def test_held_out_votes_enter_only_with_the_opt_in_which_flags_the_version(
    admin_client, tiny_base, django_capture_on_commit_callbacks
):
    from training import services

    project = voted_compare_project(5)
    for n in range(3):
        _review_battle_on(project, n, split="heldout")

    _launch(admin_client, project, tiny_base.pk, django_capture_on_commit_callbacks, include_heldout="on")

    run = TuningRun.objects.get()
    assert run.snapshot.row_count == 8 and run.snapshot.includes_heldout
    assert run.snapshot.lineage["includes_heldout_votes"] is True
    # When it trains, the version it makes is flagged as having seen held-out prompts
    assert services.run_claim(run_id=run.pk, worker="test")
    services.run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert run.model_version.saw_heldout


def test_a_battle_of_two_identical_answers_is_left_out_and_counted_not_a_refusal(
    admin_client, tiny_base, django_capture_on_commit_callbacks
):
    # Given labelled pairs plus a voted battle between two identical answers on a train prompt
    project = voted_compare_project(5)
    _review_battle_on(project, 1, split="train", identical=True)

    response, _ = _launch(admin_client, project, tiny_base.pk, django_capture_on_commit_callbacks)

    # Then the launch succeeds without that row, and the snapshot counts it as identical
    assert response.status_code == 302
    run = TuningRun.objects.get()
    assert run.snapshot.row_count == 5 and run.snapshot.summary["identical"] == 1


def test_empty_learning_rate_and_epochs_are_chosen_from_the_data_and_explained(
    admin_client, tiny_base, django_capture_on_commit_callbacks
):
    project = voted_compare_project(8)

    _launch(admin_client, project, tiny_base.pk, django_capture_on_commit_callbacks,
            learning_rate="", num_train_epochs="", max_steps="-1")

    run = TuningRun.objects.get()
    # 8 rows in batches of 2: 4 steps an epoch, so 4 epochs (the cap) for about 90 steps; rank 4 → 5e-4 * sqrt(4)
    assert (run.settings["learning_rate"], run.settings["num_train_epochs"]) == (1e-3, 4)
    assert run.settings["eval_steps"] == 2
    assert any("Learning rate 0.001" in c for c in run.outcome["choices"])
    assert any("4 epochs" in c for c in run.outcome["choices"])


def _split_votes_project(tasks: int, *, agree_every: int):
    """Tasks with two votes each; every ``agree_every``-th task has the annotators disagreeing (a vs b)."""
    from tests.factories import ProjectFactory, UserFactory

    project = ProjectFactory(name="Noisy", overlap=2)
    first, second = UserFactory(), UserFactory()
    project.members.add(first, second)
    for n in range(tasks):
        task = make_pair_task(project, n)
        make_pair_vote(task, first, "a")
        make_pair_vote(task, second, "b" if n % agree_every == 0 else "a")
    return project


def test_noise_handling_drops_split_pairs_and_sets_robust_smoothing_from_agreement(
    admin_client, tiny_base, django_capture_on_commit_callbacks
):
    # Given 20 tasks with two votes, 5 of them split (a vs b): agreement p = 15/20 = 0.75
    project = _split_votes_project(20, agree_every=4)
    # (a 1-1 split has no majority, so it is already left out as a disagreement; make 3-vote tasks for drop_split)

    _launch(admin_client, project, tiny_base.pk, django_capture_on_commit_callbacks, noise_handling="robust")

    run = TuningRun.objects.get()
    # e = (1 - sqrt(2 * 0.75 - 1)) / 2 = 0.1464..., and the 15 labels the run trains on are each two agreeing votes,
    # wrong e² / (e² + (1 - e)²) = 0.0286 of the time: that, not e, is the share of wrong labels to smooth for
    assert run.settings["loss_type"] == "robust" and run.settings["label_smoothing"] == 0.029
    lineage = run.snapshot.lineage
    assert lineage["noise_handling"] == "robust" and lineage["estimated_flip_rate"] == 0.1464
    assert lineage["label_noise_splits"] == {"2-0": 15}
    assert lineage["flip_rate_basis"] == "15 of 20 annotator pairs agreed on 20 tasks"


def test_drop_split_keeps_only_unanimous_pairs(admin_client, tiny_base, django_capture_on_commit_callbacks):
    from tests.factories import ProjectFactory, UserFactory

    # Given 6 tasks with three votes: 4 unanimous, 2 won 2-1
    project = ProjectFactory(name="Three votes", overlap=3)
    voters = [UserFactory() for _ in range(3)]
    project.members.add(*voters)
    for n in range(6):
        task = make_pair_task(project, n)
        for i, voter in enumerate(voters):
            make_pair_vote(task, voter, "b" if (n < 2 and i == 2) else "a")

    _launch(admin_client, project, tiny_base.pk, django_capture_on_commit_callbacks, noise_handling="drop_split")

    run = TuningRun.objects.get()
    assert run.snapshot.row_count == 4 and run.snapshot.summary["low_agreement"] == 2
    assert run.snapshot.lineage["noise_handling"] == "drop_split"


def test_robust_noise_handling_without_overlap_is_refused_with_the_reason(
    admin_client, tiny_base, django_capture_on_commit_callbacks
):
    project = voted_compare_project(6)  # one vote per task: agreement cannot be measured

    response, callbacks = _launch(
        admin_client, project, tiny_base.pk, django_capture_on_commit_callbacks, noise_handling="robust"
    )

    assert response.status_code == 400
    assert "needs an estimate of how often votes are flipped" in response.content.decode()
    _nothing_queued(callbacks)


def test_an_unknown_lora_target_module_is_refused_beside_its_field(
    admin_client, tiny_base, django_capture_on_commit_callbacks
):
    # Given a project with data and the tiny Llama as base model
    project = voted_compare_project(6)

    # When the admin targets a module the model does not have
    response, callbacks = _launch(
        admin_client, project, tiny_base.pk, django_capture_on_commit_callbacks, lora_target_modules="q_proj,nonexistent_proj"
    )

    # Then nothing is queued, and the refusal, with the layers it does have, sits beside the field in an open Advanced
    assert response.status_code == 400
    assert TuningRun.objects.count() == 0
    _nothing_queued(callbacks)
    errors = response.context["form"].errors
    assert list(errors) == ["lora_target_modules"]
    assert "tiny-random has no linear layer named nonexistent_proj" in errors["lora_target_modules"][0]
    assert "down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj." in errors["lora_target_modules"][0]
    html = response.content.decode()
    field = html.split('data-field="lora_target_modules"', 1)[1].split('<div class="field', 1)[0]
    assert "no linear layer named nonexistent_proj" in field
    assert '<details class="advanced" data-testid="advanced" open>' in html


def test_a_max_length_past_the_models_context_is_refused_beside_its_field(
    admin_client, tiny_base, django_capture_on_commit_callbacks
):
    # Given the tiny Llama, which reads at most 2048 tokens
    project = voted_compare_project(6)

    # When the admin asks for longer sequences (still under the generic limit)
    response, callbacks = _launch(admin_client, project, tiny_base.pk, django_capture_on_commit_callbacks, max_length="4096")

    # Then the launch is refused beside max_length, naming the limit
    assert response.status_code == 400
    _nothing_queued(callbacks)
    assert response.context["form"].errors["max_length"] == [
        "tiny-random reads at most 2048 tokens at once (its max_position_embeddings); 4096 is more than that."
    ]


def test_the_models_own_limit_is_accepted(admin_client, tiny_base, django_capture_on_commit_callbacks):
    project = voted_compare_project(6)

    response, callbacks = _launch(
        admin_client, project, tiny_base.pk, django_capture_on_commit_callbacks,
        max_length="2048", lora_target_modules="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj",
    )

    assert response.status_code == 302
    assert len(callbacks) == 1


def test_a_refusal_from_the_service_is_shown_beside_the_field_it_names(
    admin_client, tiny_base, django_capture_on_commit_callbacks
):
    # Given 5 thumbs: 4 training rows after the validation split
    project = rated_project(up=3, down=2)

    # When the batch (an Advanced field) is larger than the data
    response, _ = _launch(
        admin_client, project, tiny_base.pk, django_capture_on_commit_callbacks, method="kto", per_device_batch_size="8"
    )

    # Then the service's refusal is attached to that field, and Advanced opens to show it
    form = response.context["form"]
    assert "KTO needs at least one full batch" in form.errors["per_device_batch_size"][0]
    assert not form.non_field_errors()
    assert '<details class="advanced" data-testid="advanced" open>' in response.content.decode()


def test_an_error_in_an_essential_field_leaves_advanced_closed(admin_client, tiny_base, django_capture_on_commit_callbacks):
    project = voted_compare_project(6)

    response, _ = _launch(admin_client, project, tiny_base.pk, django_capture_on_commit_callbacks, num_train_epochs="abc")

    html = response.content.decode()
    assert response.status_code == 400
    assert "Enter a number." in html.split('data-field="num_train_epochs"', 1)[1].split('<div class="field', 1)[0]
    assert '<details class="advanced" data-testid="advanced">' in html


def test_the_launch_page_puts_the_essentials_first_and_the_rest_under_advanced(admin_client, tiny_base):
    project = voted_compare_project(5)

    html = admin_client.get(f"/projects/{project.pk}/runs/new/").content.decode()

    essentials, advanced = html.split('<details class="advanced" data-testid="advanced">', 1)
    for name in ("name", "method", "base_model", "num_train_epochs", "max_steps", "learning_rate"):
        assert f'data-field="{name}"' in essentials and f'data-field="{name}"' not in advanced
    for name in ("beta", "lora_r", "lora_target_modules", "max_length", "per_device_batch_size", "include_heldout"):
        assert f'data-field="{name}"' in advanced and f'data-field="{name}"' not in essentials
    lora_r = advanced.split('data-field="lora_r"', 1)[1].split('<div class="field', 1)[0]
    assert "Default: 16" in lora_r
    assert "Empty: chosen for the adapter: 5e-4 at LoRA rank 16" in essentials


def test_the_launch_page_estimates_rows_and_steps_from_the_defaults(admin_client, tiny_base):
    # Given 20 ready pairs: the default 20% validation split leaves 16 for training, in batches of 4 (4 steps an
    # epoch), and empty epochs mean enough passes for about 90 steps, at most 4
    project = voted_compare_project(20)

    response = admin_client.get(f"/projects/{project.pk}/runs/new/")

    html = response.content.decode()
    assert "≈ 16 training rows → 16 optimizer steps" in html
    assert "4 epochs, chosen automatically" in html


def test_with_only_a_cpu_worker_the_automatic_settings_are_sized_for_the_cpu(
    admin_client, tiny_base, django_capture_on_commit_callbacks
):
    # Given 150 ready pairs (120 to train: 30 steps a pass) and one worker for single-GPU runs that sees no GPU
    from training.services import worker_announce

    project = voted_compare_project(150)
    gpu_html = admin_client.get(f"/projects/{project.pk}/runs/new/").content.decode()
    worker_announce(hostname="laptop", queues=["default", "gpu"], gpus=0)

    html = admin_client.get(f"/projects/{project.pk}/runs/new/").content.decode()
    response, callbacks = _launch(admin_client, project, tiny_base.pk, django_capture_on_commit_callbacks,
                                  max_length="", num_train_epochs="", max_steps="-1")

    # Then the form promises two passes of rows cut at 160 tokens, where a GPU worker would get three at 512
    assert "≈ 120 training rows → 90 optimizer steps" in gpu_html and "rows cut at 512 tokens for a GPU worker" in gpu_html
    assert "≈ 120 training rows → 60 optimizer steps" in html
    assert "2 epochs, chosen automatically; rows cut at 160 tokens for the CPU worker" in html
    run = TuningRun.objects.get()
    assert response.status_code == 302 and len(callbacks) == 1
    assert (run.settings["max_length"], run.settings["num_train_epochs"]) == (160, 2)
    assert any("Rows cut at 160 tokens" in choice for choice in run.outcome["choices"])


def test_an_empty_project_gets_no_step_estimate_and_a_warning_with_how_much_to_label(admin_client, tiny_base):
    project = voted_compare_project(0)

    html = admin_client.get(f"/projects/{project.pk}/runs/new/").content.decode()

    estimate = html[html.index('data-testid="launch-estimate"'):]
    estimate = estimate[: estimate.index("</p>")]
    assert "No training rows yet" in estimate and "optimizer step" not in estimate
    assert 'data-testid="launch-time"' not in html
    assert "No validation pairs, so the run page cannot say whether the run learned. Label about 120 more decided pairs" in html


def test_the_launch_form_warns_below_what_validation_can_resolve_and_not_above(admin_client, tiny_base):
    # At the default 20% split, 115 pairs validate on 23 (±18 points at 70%), 120 on 24, the fewest that can tell.
    few = voted_compare_project(115, name="Nearly")
    enough = voted_compare_project(120, name="Enough")

    few_html = admin_client.get(f"/projects/{few.pk}/runs/new/").content.decode()
    enough_html = admin_client.get(f"/projects/{enough.pk}/runs/new/").content.decode()

    assert "115 ready: 92 to train, 23 to validate. 23 validation pairs measure accuracy to ±18 points" in few_html
    assert 'data-testid="launch-data-warning"' in few_html
    assert "Too few to tell: 23 validation pairs measure accuracy to ±18 points (95% interval at 70%)" in few_html
    assert "Label about 5 more decided pairs (120 ready at a validation share of 20% give 24 validation pairs" in few_html
    assert "120 ready: 96 to train, 24 to validate." in enough_html
    assert 'data-testid="launch-data-warning"' not in enough_html and "Too few to tell" not in enough_html


def test_the_warning_follows_a_submitted_validation_share(admin_client, tiny_base, django_capture_on_commit_callbacks):
    # 60 pairs validate on 12 at the default share (too few) and on 30 at half (enough); one bad field keeps the
    # form on the page with the posted values
    project = voted_compare_project(60)

    response, _ = _launch(admin_client, project, tiny_base.pk, django_capture_on_commit_callbacks,
                          validation_fraction="0.5", lora_target_modules="nonexistent_proj")

    html = response.content.decode()
    assert response.status_code == 400
    assert "60 ready: 30 to train, 30 to validate. 30 validation pairs measure accuracy to ±16 points" in html
    assert 'data-testid="launch-data-warning"' not in html


def test_the_launch_page_says_the_time_is_unknown_before_any_run_has_finished(admin_client, tiny_base):
    project = voted_compare_project(20)

    html = admin_client.get(f"/projects/{project.pk}/runs/new/").content.decode()

    assert "Time: known after the first DPO run of this base model has finished" in html


def test_the_launch_page_estimates_the_time_from_finished_runs_of_the_model(admin_client, tiny_base):
    # Given three finished DPO runs of the tiny model at 2, 3 and 10 seconds a step, one failed run at 100 s a
    # step and a KTO run at 50 s a step (neither counts)
    from datetime import timedelta

    from django.utils import timezone

    from tests.factories import make_run
    from training.models import BaseModel

    project = voted_compare_project(20)
    end = timezone.now()
    for status, method, seconds_per_step in (("succeeded", "dpo", 2), ("succeeded", "dpo", 3), ("succeeded", "dpo", 10),
                                             ("failed", "dpo", 100), ("succeeded", "kto", 50)):
        run = make_run(project, status=status, method=method)
        TuningRun.objects.filter(pk=run.pk).update(
            base_model=tiny_base, step=10, started_at=end - timedelta(seconds=10 * seconds_per_step), finished_at=end
        )
    BaseModel.objects.exclude(pk=tiny_base.pk).delete()  # make_run's own model would come first in the menu

    html = admin_client.get(f"/projects/{project.pk}/runs/new/").content.decode()

    # Then 16 steps at the median 3 s a step: 48 s (2 s or 10 s a step would say about 30 s or 3 min)
    assert "≈ 16 training rows → 16 optimizer steps" in html
    time_text = html.split('data-testid="launch-time">', 1)[1].split("</b>", 1)[0]
    assert time_text == "about 50 s"
    assert "the last 3 finished DPO runs of this base model" in html


def test_the_estimate_follows_the_submitted_values_after_a_refusal(
    admin_client, tiny_base, django_capture_on_commit_callbacks
):
    # Given 20 pairs, no validation split, batches of 2 and max_steps 2 in the posted form, with one bad field
    project = voted_compare_project(20)

    response, _ = _launch(
        admin_client, project, tiny_base.pk, django_capture_on_commit_callbacks,
        max_steps="-1", num_train_epochs="3", lora_target_modules="nonexistent_proj",
    )

    # Then the estimate uses the posted values: 20 rows, 10 steps an epoch, 3 epochs
    assert response.status_code == 400
    assert "≈ 20 training rows → 30 optimizer steps" in response.content.decode()


def test_a_config_transformers_cannot_read_is_left_to_the_worker(admin_client, tmp_path, django_capture_on_commit_callbacks):
    # Given a model folder whose config.json names no architecture
    from training.models import BaseModel

    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "config.json").write_text("{}")
    base = BaseModel.objects.create(name="odd", path=str(tmp_path / "odd"))
    project = voted_compare_project(6)

    # When a run is launched on it, the model checks are skipped rather than guessed: it is queued
    response, callbacks = _launch(admin_client, project, base.pk, django_capture_on_commit_callbacks)

    assert response.status_code == 302 and len(callbacks) == 1


def _trained_version(project, base, name: str, adapter_dir) -> ModelVersion:  # noqa: F821
    from tests.factories import make_run
    from training.models import ModelVersion

    adapter_dir.mkdir(parents=True, exist_ok=True)
    (adapter_dir / "adapter_config.json").write_text("{}")
    run = make_run(project, status="succeeded", method="sft")
    version = ModelVersion.objects.create(name=name, base_model=base, adapter_path=str(adapter_dir))
    TuningRun.objects.filter(pk=run.pk).update(model_version=version, base_model=base)
    return version


def test_an_sft_run_trains_on_the_chosen_answers(admin_client, tiny_base, django_capture_on_commit_callbacks):
    project = voted_compare_project(6)

    response, _ = _launch(admin_client, project, tiny_base.pk, django_capture_on_commit_callbacks, method="sft")

    run = TuningRun.objects.get()
    assert response.status_code == 302 and run.method == "sft"
    assert all(set(row) == {"prompt", "completion"} for row in run.snapshot.rows) and run.snapshot.row_count == 6


def test_a_run_starts_from_a_version_of_this_project_and_its_base_only(
    admin_client, tiny_base, tmp_path, django_capture_on_commit_callbacks
):
    from tests.factories import ProjectFactory
    from training.models import BaseModel

    project = voted_compare_project(6)
    elsewhere = _trained_version(ProjectFactory(), tiny_base, "Other project's SFT", tmp_path / "other")
    other_base = BaseModel.objects.create(name="another base", path=tiny_base.path)
    wrong_base = _trained_version(project, other_base, "SFT on another base", tmp_path / "wrong")
    gone = _trained_version(project, tiny_base, "SFT whose adapter was deleted", tmp_path / "gone")
    (tmp_path / "gone" / "adapter_config.json").unlink()
    snapshots_before = DatasetSnapshot.objects.count()

    page = admin_client.get(f"/projects/{project.pk}/runs/new/").content.decode()
    assert "SFT on another base (SFT)" in page and "Other project&#x27;s SFT" not in page
    refused = {
        version.name: _launch(admin_client, project, tiny_base.pk, django_capture_on_commit_callbacks,
                              start_from=str(version.pk))
        for version in (elsewhere, wrong_base, gone)
    }

    assert "Select a valid choice" in refused[elsewhere.name][0].content.decode()
    assert "was trained on another base, not tiny-random" in refused[wrong_base.name][0].content.decode()
    assert "The adapter of SFT whose adapter was deleted is not on this server any more" in refused[gone.name][0].content.decode()
    assert all(response.status_code == 400 for response, _ in refused.values())
    assert not TuningRun.objects.filter(project=project).exclude(status="succeeded").exists()

    assert DatasetSnapshot.objects.count() == snapshots_before, "a refused launch froze nothing"
    ok = _trained_version(project, tiny_base, "Good SFT", tmp_path / "good")
    response, callbacks = _launch(admin_client, project, tiny_base.pk, django_capture_on_commit_callbacks,
                                  start_from=str(ok.pk))
    run = TuningRun.objects.get(project=project, status="queued")
    assert response.status_code == 302 and len(callbacks) == 1
    assert run.start_from == ok and run.settings["init_adapter"] == ok.adapter_path
    assert run.snapshot.lineage["started_from"]["version"] == "Good SFT"


def test_a_sharded_run_is_recorded_and_shown_as_such(admin_client, tiny_base, django_capture_on_commit_callbacks):
    project = voted_compare_project(6)

    response, callbacks = _launch(
        admin_client, project, tiny_base.pk, django_capture_on_commit_callbacks, num_processes="2", sharding="fsdp"
    )

    run = TuningRun.objects.get()
    assert response.status_code == 302 and len(callbacks) == 1
    assert (run.settings["sharding"], run.settings["num_processes"], run.queue) == ("fsdp", 2, "gpu2")
    assert "2 GPUs, sharded (FSDP)" in admin_client.get(f"/runs/{run.pk}/").content.decode()


def test_a_run_without_sharding_records_none(admin_client, tiny_base, django_capture_on_commit_callbacks):
    _launch(admin_client, voted_compare_project(6), tiny_base.pk, django_capture_on_commit_callbacks, num_processes="2")

    run = TuningRun.objects.get()
    assert run.settings["sharding"] == "none" and not run.sharded
    assert "sharded" not in admin_client.get(f"/runs/{run.pk}/").content.decode()


def test_the_launch_page_offers_sharding_next_to_the_gpus(admin_client, tiny_base):
    page = admin_client.get(f"/projects/{voted_compare_project(6).pk}/runs/new/").content.decode()

    gpus, sharding = page.index('name="num_processes"'), page.index('name="sharding"')
    assert gpus < sharding and page.index('name="quantization"') > sharding
    assert "fsdp: the GPUs share the weights (FSDP full shard, like ZeRO-3)" in page
    assert "For a model whose bf16 weights do not fit one GPU" in page


def test_the_memory_estimate_divides_the_weights_among_the_gpus_when_sharded(tiny_base, monkeypatch):
    from training import forms
    from training.model_inspection import ModelShape

    # The shape of a 7B model in place of the tiny one's (whose weights round to 0.00 GiB either way).
    seven_b = ModelShape(linear_names=frozenset({"q_proj", "v_proj"}), max_positions=4096,
                         parameters=7_000_000_000, quantizable_parameters=6_500_000_000)
    monkeypatch.setattr(forms, "local_model_shape", lambda path: seven_b)
    project = voted_compare_project(6)
    data = {**FORM, "base_model": str(tiny_base.pk)}

    sharded = forms.RunLaunchForm({**data, "num_processes": "4", "sharding": "fsdp"}, project=project)
    copies = forms.RunLaunchForm({**data, "num_processes": "4"}, project=project)

    assert sharded.is_valid() and copies.is_valid()
    assert ("sharded (FSDP) over 4 GPUs they take 3.26 GiB per GPU in bf16 (a whole copy is 13 GiB), plus the one "
            "layer being gathered") in sharded.memory_note()
    assert "their bf16 weights take 13 GiB per GPU, 4.05 GiB in 4-bit (QLoRA)" in copies.memory_note()
    assert "sharding (fsdp) over N GPUs divides the bf16 figure by N" in copies.memory_note()


def _cut_off_winners(project, count: int) -> None:
    """Mark the winning answer of the project's first ``count`` decided pairs as cut off at the token limit."""
    from labeling.models import PairTask

    for task in PairTask.objects.filter(project=project).order_by("pk")[:count]:
        vote = task.votes.get()
        winner = task.completion_a if vote.choice == "a" else task.completion_b
        winner.finish_reason = "length"
        winner.save(update_fields=["finish_reason"])


def test_pairs_with_a_cut_off_winner_are_left_out_and_the_refusal_says_how_to_keep_them(
    admin_client, tiny_base, django_capture_on_commit_callbacks
):
    # Given 6 decided pairs, 3 of them won by an answer that hit the token limit
    project = voted_compare_project(6)
    _cut_off_winners(project, 3)

    response, callbacks = _launch(admin_client, project, tiny_base.pk, django_capture_on_commit_callbacks)

    html = response.content.decode()
    assert response.status_code == 400
    assert "Too little data: 3 preference pair(s) are ready" in html
    assert "3 more decided pair(s) were left out because the chosen answer was cut off at the token limit" in html
    assert "3 pairs whose chosen answer was cut off at the token limit" in html  # the data-ready preview
    _nothing_queued(callbacks)


def test_the_opt_in_keeps_pairs_with_a_cut_off_winner_and_records_it(
    admin_client, tiny_base, django_capture_on_commit_callbacks
):
    project = voted_compare_project(6)
    _cut_off_winners(project, 3)

    response, callbacks = _launch(
        admin_client, project, tiny_base.pk, django_capture_on_commit_callbacks, keep_cut_off_chosen="on"
    )

    run = TuningRun.objects.get()
    assert response.status_code == 302 and len(callbacks) == 1
    assert run.snapshot.row_count == 6 and run.snapshot.summary.get("cut_off_chosen", 0) == 0
    assert run.snapshot.lineage["keeps_cut_off_chosen"] is True
    lineage = admin_client.get(f"/runs/{run.pk}/").content.decode().split('data-testid="lineage"', 1)[1]
    assert "keeps pairs whose chosen answer was cut off</th><td>yes" in lineage.split("</table>", 1)[0]


def test_a_default_run_records_that_it_left_cut_off_winners_out(
    admin_client, tiny_base, django_capture_on_commit_callbacks
):
    project = voted_compare_project(8)
    _cut_off_winners(project, 2)

    _launch(admin_client, project, tiny_base.pk, django_capture_on_commit_callbacks)

    run = TuningRun.objects.get()
    assert run.snapshot.row_count == 6 and run.snapshot.summary["cut_off_chosen"] == 2
    assert run.snapshot.lineage["keeps_cut_off_chosen"] is False


def test_thumbs_runs_record_nothing_about_cut_off_pairs(admin_client, tiny_base, django_capture_on_commit_callbacks):
    project = rated_project(up=4, down=4)

    _launch(admin_client, project, tiny_base.pk, django_capture_on_commit_callbacks, method="kto")

    assert "keeps_cut_off_chosen" not in TuningRun.objects.get().snapshot.lineage


def test_the_launch_command_keeps_cut_off_winners_when_asked(tiny_base, django_capture_on_commit_callbacks):
    from django.core.management import call_command

    project = voted_compare_project(6, name="Scripted")
    _cut_off_winners(project, 3)

    with django_capture_on_commit_callbacks():
        call_command("launch_run", "--project", "Scripted", "--method", "dpo", "--base-model", "tiny-random",
                     "--keep-cut-off-chosen", "--set", "max_steps=2", stdout=StringIO())

    run = TuningRun.objects.get(project=project)
    assert run.snapshot.row_count == 6 and run.snapshot.lineage["keeps_cut_off_chosen"] is True
