"""The run page of an online RL run: the watch's table, warnings with their examples (escaped), the kept step, the
verdict, and the blind battles set beside the reward once annotators have judged the version."""
from __future__ import annotations

import pytest

from tests.factories import ProjectFactory, make_run
from training.models import TuningRun
from training.rl_selectors import rl_watch
from training.trainer.rl_watch import watch_point

pytestmark = pytest.mark.django_db

PROMPTS = ["How do I sleep better?", "What is a prime?", "Name a river."]
SHORT = ["Keep a regular bedtime.", "A number with two divisors.", "The Danube flows east."]
HOSTILE = '<script>alert("x")</script> ' + " ".join(["and there is ever so much more to say about it"] * 5)


def _watched_run(*, hacked: bool) -> TuningRun:
    project = ProjectFactory(name="RL page")
    run = make_run(project, status="succeeded", method="grpo")
    base = watch_point(0, PROMPTS, SHORT, [False] * 3, [0.0, 0.1, -0.1])
    honest = watch_point(10, PROMPTS, SHORT, [False] * 3, [0.4, 0.5, 0.3])
    late = watch_point(20, PROMPTS, [HOSTILE] * 3 if hacked else SHORT, [hacked] * 3, [2.0, 2.1, 1.9] if hacked else [0.2, 0.2, 0.2])
    run.outcome = {"kept_step": 10, "validation_rows": 3, "validation": honest.metrics(), "watch": {
        "base": base.to_dict(), "points": [honest.to_dict(), late.to_dict()], "kept_step": 10,
        "kept_reason": "the highest validation reward among evaluations the watch did not flag"}}
    run.save(update_fields=["outcome"])
    return run


def test_a_hacked_run_warns_with_escaped_examples_and_keeps_the_clear_checkpoint(admin_client):
    run = _watched_run(hacked=True)
    page = admin_client.get(f"/runs/{run.pk}/").content.decode()
    assert 'data-testid="rl-warning" data-kind="length"' in page and 'data-kind="cut_off"' in page
    assert "Reward hacking suspected" in page and 'data-kind="hacking"' in page
    assert "&lt;script&gt;alert" in page and '<script>alert("x")' not in page
    assert 'data-testid="rl-kept-row"' in page and "Kept: step 10, the highest validation reward" in page
    assert "The saved adapter is step 10" in page


def test_a_clear_run_reads_learning_and_asks_for_battles(admin_client):
    run = _watched_run(hacked=False)
    page = admin_client.get(f"/runs/{run.pk}/").content.decode()
    assert 'data-testid="rl-warning"' not in page and 'data-kind="ok"' in page
    assert "rose from +0.00 to +0.40 at step 10, the kept checkpoint" in page


def test_battles_that_do_not_follow_the_reward_raise_a_warning(admin_client):
    from tests.review.conftest import review_setup
    from tests.review.measured_versions import battles_voted

    setup = review_setup(prompts=6, name="RL battles")
    watched = _watched_run(hacked=False)
    TuningRun.objects.filter(pk=setup.run.pk).update(method="grpo", outcome=watched.outcome)
    battles_voted(setup, setup.tuned, ["base", "base", "base", "tie", "tuned", "base"])
    run = TuningRun.objects.get(pk=setup.run.pk)
    view = rl_watch(run=run)
    assert view.battles.votes == 6 and [w.kind for w in view.warnings] == ["battles"]
    assert "preferred it in only 25% of 6 blind battles (95% interval" in view.warnings[0].message
    page = admin_client.get(f"/runs/{run.pk}/").content.decode()
    assert 'data-kind="battles"' in page and 'data-testid="rl-battles"' in page


def test_the_runs_list_shows_an_rl_runs_own_verdict(admin_client):
    # The runs table read the preference-tuning verdict, which knows nothing of the watch: a hacked RL run read
    # like any other there while its own page warned.
    run = _watched_run(hacked=True)
    html = admin_client.get(f"/projects/{run.project_id}/runs/", HTTP_HX_REQUEST="true").content.decode()
    assert 'data-testid="run-verdict-kind"' in html and "Reward hacking suspected" in html


def test_a_resumed_attempt_carries_the_live_watch_on_from_its_checkpoint_and_an_older_attempt_writes_nothing():
    from training.services.execution import _record_progress
    from training.trainer.events import ProgressEvent

    run = make_run(ProjectFactory(name="RL resumed"), status="running", method="grpo")
    base = watch_point(0, PROMPTS, SHORT, [False] * 3, [0.0, 0.1, -0.1])
    before = watch_point(10, PROMPTS, SHORT, [False] * 3, [0.4, 0.5, 0.3])
    after_checkpoint = watch_point(20, PROMPTS, SHORT, [False] * 3, [0.6, 0.6, 0.6])
    # Attempt 1 evaluated steps 10 and 20, then was handed back with its newest checkpoint at step 15
    TuningRun.objects.filter(pk=run.pk).update(attempt=2, outcome={"watch": {
        "base": base.to_dict(), "points": [before.to_dict(), after_checkpoint.to_dict()]}})
    restored = {"base": base.to_dict(), "points": [before.to_dict()]}

    _record_progress(run.pk, 1, [ProgressEvent(step=15, total_steps=60, kind="watch", metrics={},
                                              details={"watch_restored": {"base": base.to_dict(), "points": []}})])
    run.refresh_from_db()
    assert [p["step"] for p in run.outcome["watch"]["points"]] == [10, 20], "a superseded attempt changes nothing"

    _record_progress(run.pk, 2, [ProgressEvent(step=15, total_steps=60, kind="watch", metrics={},
                                              details={"watch_restored": restored})])
    run.refresh_from_db()
    assert run.outcome["watch"] == restored and (run.step, run.total_steps) == (15, 60)
    _record_progress(run.pk, 2, [ProgressEvent(step=20, total_steps=60, kind="eval", metrics={"eval_reward": 0.7},
                                              details={"watch_point": after_checkpoint.to_dict(), "reference": False})])
    run.refresh_from_db()
    assert [p["step"] for p in run.outcome["watch"]["points"]] == [10, 20] and run.outcome["watch"]["base"] == base.to_dict()
