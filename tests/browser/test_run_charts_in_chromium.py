"""In real Chromium: the run page draws only the charts that have data, shows a chart once its first point arrives,
and draws validation apart from the training batches (dashed, with marked points)."""
from __future__ import annotations

import pytest

from tests.factories import PASSWORD, AdminFactory, ProjectFactory, make_run
from training.models import RunMetric

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DATASETS = """canvas => Chart.getChart(canvas).data.datasets.map(d => [d.label, d.borderDash.length > 0, d.pointRadius])"""


def test_charts_appear_with_their_data_and_validation_is_drawn_apart(page, live_server):
    admin = AdminFactory(username="charts-admin")
    run = make_run(ProjectFactory(), status="running")
    run.validation_rows, run.total_steps = 10, 20
    run.save()
    for step in (1, 2):
        RunMetric.objects.create(run=run, step=step, values={"loss": 0.7 - step / 10, "rewards/accuracies": 0.5})

    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", admin.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    page.goto(f"{live_server.url}/runs/{run.pk}/")

    loss = page.locator("figure[data-chart='loss']")
    validation = page.locator("figure[data-chart='rewards/accuracies,ranking_accuracy']")
    page.wait_for_function("() => Chart.getChart(document.querySelector(\"canvas[data-keys='loss']\")).data.datasets.length === 1")
    assert loss.is_visible() and not validation.is_visible()
    assert page.locator("canvas[data-keys='kl']").count() == 0

    RunMetric.objects.create(run=run, step=2, split="eval", values={"eval_loss": 0.55, "eval_rewards/accuracies": 0.7})
    validation.wait_for(state="visible")

    assert loss.locator("canvas").evaluate(DATASETS) == [["loss (training batches)", False, 2], ["loss (validation)", True, 4]]
    assert validation.locator("canvas").evaluate(DATASETS) == [["rewards/accuracies (validation)", True, 4]]
    # Accuracy on a fixed 0–1 axis, so a move from 0.50 to 0.52 does not fill the chart.
    assert validation.locator("canvas").evaluate("c => [Chart.getChart(c).scales.y.min, Chart.getChart(c).scales.y.max]") == [0, 1]
