"""In real Chromium, the leaderboard's quality-against-drift chart for a project with two measured versions (a DPO and
a KTO run, each with a review job's KL and voted blind battles against the base) and one not measured yet: the SVG is
drawn, one point per measured version with its label inside the picture, the third version listed under it; and at a
desktop (1280 px) and a phone (390 px) width nothing is clipped or sticks out (the every-screen checks). Screenshots
go to var/screenshots/."""
from __future__ import annotations

import pytest

from tests.browser.pages import log_in
from tests.browser.test_every_screen import (
    CLIPPED,
    OVERFLOWING,
    SCREENSHOTS,
    SCROLLS_SIDEWAYS,
    UNLABELLED_SCROLL_BOXES,
)
from tests.factories import AdminFactory
from tests.review.conftest import review_setup
from tests.review.measured_versions import another_version, battles_voted, review_job_with_movement
from training.models import ModelVersion

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Labels of the chart's points that the SVG's own box does not hold whole (an inline SVG hides what overflows it).
LABELS_OUTSIDE_THE_PICTURE = """() => {
  const svg = document.querySelector('[data-testid=drift-chart]').getBoundingClientRect();
  return [...document.querySelectorAll('[data-testid=drift-label]')].filter(label => {
    const box = label.getBoundingClientRect();
    return box.left < svg.left - 1 || box.right > svg.right + 1 || box.top < svg.top - 1 || box.bottom > svg.bottom + 1;
  }).map(label => label.textContent);
}"""


def test_the_chart_draws_a_labelled_point_per_measured_version_and_fits_a_desktop_and_a_phone(browser, live_server):
    setup = review_setup(prompts=6, name="Drift project")
    ModelVersion.objects.filter(pk=setup.tuned.pk).update(name="helpful-dpo-r1")
    review_job_with_movement(setup, setup.run, kl=0.042, tokens=480)
    battles_voted(setup, setup.tuned, ["tuned", "tuned", "tuned", "tie", "base", "tuned"])
    kto = another_version(setup, method="kto", name="helpful-kto-thumbs-round-2", outputs=True)
    review_job_with_movement(setup, kto, kl=0.18, tokens=510)
    battles_voted(setup, kto.model_version, ["base", "tie", "tuned", "base", "tuned", "tie"])
    later = another_version(setup, method="sft", name="sft-not-reviewed", outputs=False)
    admin = AdminFactory(username="drift-admin")

    for width, height in ((1280, 900), (390, 844)):
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        page.set_default_timeout(15_000)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))  # noqa: B023 - read before the next context
        log_in(page, live_server.url, admin.username)
        page.goto(f"{live_server.url}/projects/{setup.project.pk}/leaderboard/")
        page.evaluate("() => document.fonts.ready")

        chart = page.locator("[data-testid=drift-chart]")
        assert chart.is_visible()
        points = chart.locator("[data-testid=drift-point]")
        assert points.count() == 2
        labels = {
            points.nth(n).get_attribute("data-version"): points.nth(n).locator("[data-testid=drift-label]").text_content()
            for n in range(2)
        }
        assert labels == {
            str(setup.tuned.pk): "helpful-dpo-r1 · DPO", str(kto.model_version.pk): "helpful-kto-thumbs-round-2 · KTO"
        }
        assert chart.locator("[data-testid=drift-reference]").count() == 1
        assert points.locator("[data-testid=drift-interval]").count() == 2
        assert page.locator("[data-testid=drift-table] tr[data-version]").count() == 2
        listed = page.locator(f"[data-testid=drift-not-measured] li[data-version='{later.model_version.pk}']")
        assert "not measured yet" in listed.inner_text()

        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"quality-against-drift-{width}.png"), full_page=True)
        problems = list(errors)
        if page.evaluate(SCROLLS_SIDEWAYS):
            problems.append(f"horizontal scrollbar at {width} px")
        problems += [f"past the right edge: {line}" for line in page.evaluate(OVERFLOWING)]
        problems += page.evaluate(CLIPPED, width >= 1024)
        problems += page.evaluate(UNLABELLED_SCROLL_BOXES)
        problems += [f"label outside the chart: {text}" for text in page.evaluate(LABELS_OUTSIDE_THE_PICTURE)]
        assert not problems, f"at {width} px:\n" + "\n".join(problems)
        context.close()
