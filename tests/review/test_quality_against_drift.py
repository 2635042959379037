"""Quality against drift: every trained version's KL from its base against its held-out win rate over the base, read
from real rows (review jobs' stored movement, blind battles and their votes), and the leaderboard page that draws it."""
from __future__ import annotations

import pytest

from tests.factories import make_run
from tests.review.conftest import review_setup
from tests.review.measured_versions import another_version, battles_voted, review_job_with_movement
from training.models import ModelVersion
from training.review import battles as review_battles
from training.review import drift as review_drift
from training.review import selectors as review_selectors

pytestmark = pytest.mark.django_db


def test_a_measured_version_is_a_point_with_the_review_page_s_kl_and_win_rate(setup):
    # Given the run's review job measured a KL of 0.042 per token, and its four blind battles went 2 wins, 1 tie, 1 loss
    job = review_job_with_movement(setup, setup.run, kl=0.042, tokens=120)
    battles_voted(setup, setup.tuned, ["tuned", "tuned", "tie", "base"])

    # When the project's quality against drift is read
    result = review_drift.quality_against_drift(project=setup.project)

    # Then the version is measured, with the job's KL and the paired win rate the review page leads with
    [entry] = result.versions
    assert entry.version == setup.tuned and entry.base == setup.base and entry.measured and entry.missing == ()
    assert entry.kl_per_token == pytest.approx(0.042) and entry.movement.tokens == 120 and entry.movement.job_id == job.pk
    assert entry.win_rate.rate == pytest.approx(0.625)
    assert (entry.win_rate.votes, entry.win_rate.prompts, entry.battles) == (4, 4, 4)
    headline = review_selectors.comparison_view(project=setup.project, run=setup.run, base=setup.base, tuned=setup.tuned)
    assert (entry.win_rate.low, entry.win_rate.high) == (headline.results.paired.low, headline.results.paired.high)
    assert entry.win_rate.low < 0.625 < entry.win_rate.high
    assert entry.comparison.key == headline.comparison.key
    assert result.measured == [entry] and result.not_measured == []


def test_versions_without_a_kl_or_a_win_rate_are_kept_and_say_what_they_lack(setup):
    # Given the measured DPO version, a KTO version with no outputs at all, an SFT version with outputs but no review
    # job and no battles, a SimPO version whose KL is measured and whose battles await votes, a reward model and a
    # failed run (neither makes a version)
    review_job_with_movement(setup, setup.run, kl=0.042)
    battles_voted(setup, setup.tuned, ["tuned", "tuned", "tie", "base"])
    kto = another_version(setup, method="kto", name="kto-no-outputs", outputs=False)
    sft = another_version(setup, method="sft", name="sft-outputs-only", outputs=True)
    simpo = another_version(setup, method="simpo", name="simpo-unvoted", outputs=True)
    review_job_with_movement(setup, simpo, kl=0.3)
    review_battles.battles_create(project=setup.project, version_a=simpo.model_version, version_b=setup.base, seed=1)
    make_run(setup.project, status="succeeded", method="reward")
    make_run(setup.project, status="failed", method="orpo")

    result = review_drift.quality_against_drift(project=setup.project)

    assert [v.run for v in result.versions] == [setup.run, kto, sft, simpo]
    missing = {v.version.name: v.missing for v in result.not_measured}
    assert missing == {
        "kto-no-outputs": (review_drift.MISSING_OUTPUTS,),
        "sft-outputs-only": (review_drift.MISSING_KL, review_drift.MISSING_BATTLES),
        "simpo-unvoted": (review_drift.MISSING_VOTES,),
    }
    unvoted = next(v for v in result.versions if v.run == simpo)
    assert unvoted.kl_per_token == pytest.approx(0.3) and unvoted.battles == 4 and unvoted.win_rate is None
    assert [v.version for v in result.measured] == [setup.tuned]
    assert result.reward_model is not None


def test_a_thumbs_project_has_no_win_rate_against_the_base():
    setup = review_setup(mode="rate", name="Thumbs project")
    review_job_with_movement(setup, setup.run, kl=0.01)

    [entry] = review_drift.quality_against_drift(project=setup.project).versions

    assert entry.kl_per_token == pytest.approx(0.01)
    assert entry.missing == (review_drift.MISSING_THUMBS_PROJECT,)


def test_a_project_whose_base_never_wrote_anything_reads_without_creating_its_base_version(db):
    setup = review_setup(with_outputs=False)
    ModelVersion.objects.filter(pk=setup.base.pk).delete()

    [entry] = review_drift.quality_against_drift(project=setup.project).versions

    assert entry.base is None and entry.missing == (review_drift.MISSING_OUTPUTS,)
    assert not ModelVersion.objects.filter(adapter_path="").exists(), "a read writes nothing"


# ---------------------------------------------------------------- the leaderboard page

HOSTILE = '<script>alert("drift")</script>'


def test_the_leaderboard_draws_measured_versions_and_lists_the_rest(admin_client, setup):
    # Given a measured version with a hostile name, and a KTO version with nothing measured yet
    ModelVersion.objects.filter(pk=setup.tuned.pk).update(name=HOSTILE)
    review_job_with_movement(setup, setup.run, kl=0.042)
    battles_voted(setup, setup.tuned, ["tuned", "tuned", "tie", "base"])
    kto = another_version(setup, method="kto", name="kto-later", outputs=False)

    html = admin_client.get(f"/projects/{setup.project.pk}/leaderboard/").content.decode()

    # Then the chart has one point, labelled and escaped, with its figures in its tooltip and in the table
    chart = html.split('data-testid="drift-chart"', 1)[1].split("</svg>", 1)[0]
    assert chart.count('data-testid="drift-point"') == 1 and f'data-version="{setup.tuned.pk}"' in chart
    assert 'data-testid="drift-label"' in chart and "&lt;script&gt;alert(&quot;drift&quot;)" in chart and "· DPO</text>" in chart
    assert "<title>&lt;script&gt;alert(&quot;drift&quot;)&lt;/script&gt; (DPO) against test-base (base):" in chart
    assert "win rate 62.5% (95% interval" in chart and "4 votes on 4 matched pairs over 4 held-out prompts" in chart
    assert "KL(tuned ‖ base) 0.042 per token over 120 tokens" in chart
    assert HOSTILE not in html
    table = html.split('data-testid="drift-table"', 1)[1].split("</table>", 1)[0]
    assert "<b>62.5%</b>" in table and "<b>0.042</b>" in table
    # And the KTO version is listed as not measured yet, with what to run
    listed = html.split('data-testid="drift-not-measured"', 1)[1].split("</div>", 1)[0]
    assert f'data-version="{kto.model_version.pk}"' in listed and "kto-later" in listed and "(KTO)" in listed
    assert "not measured yet: for its KL and win rate, generate base and tuned outputs" in listed
    assert f"/runs/{kto.pk}/review/" in listed
    assert 'data-testid="drift-best-of-n"' not in html, "no reward model: nothing to say about best-of-N"


def test_a_leaderboard_with_versions_but_no_measured_one_draws_no_chart(admin_client, setup):
    html = admin_client.get(f"/projects/{setup.project.pk}/leaderboard/").content.decode()

    assert 'data-testid="drift-chart"' not in html and 'data-testid="drift-no-points"' in html
    assert "not measured yet: for its KL, generate its review outputs" in html
    assert "for its win rate, create blind battles against the base" in html


def test_with_a_reward_model_the_page_says_why_there_is_no_best_of_n_point(admin_client, setup):
    review_job_with_movement(setup, setup.run, kl=0.042)
    battles_voted(setup, setup.tuned, ["tuned", "tuned", "tie", "base"])
    make_run(setup.project, status="succeeded", method="reward")

    html = admin_client.get(f"/projects/{setup.project.pk}/leaderboard/").content.decode()

    assert html.count('data-testid="drift-point"') == 1, "the reward model makes no point of its own"
    assert "No best-of-N point" in html and "log N − (N−1)/N" in html
