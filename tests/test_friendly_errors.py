"""The pages a user meets on a wrong address (issue 26): under `make run` (DEBUG on) an unknown run or page is
"Not found" in the app's frame, not Django's yellow page listing every URL; a GET on an address that takes a form
(a vote) explains itself instead of an empty 405."""
from __future__ import annotations

import pytest

from labeling.models import PairVote

pytestmark = pytest.mark.django_db


@pytest.fixture
def debug(settings):
    settings.DEBUG = True
    return settings


@pytest.mark.parametrize("url", ["/runs/999999/", "/no-such-page/", "/projects/999999/dashboard/"])
def test_an_unknown_address_under_make_run_is_the_apps_not_found_page(admin_client, debug, url):
    response = admin_client.get(url)

    html = response.content.decode()
    assert response.status_code == 404
    assert "<h1>Not found</h1>" in html and "Back to your projects" in html
    assert "URLconf" not in html and "DEBUG = True" not in html and "urlpatterns" not in html


def test_djangos_debugging_404_page_comes_back_when_asked_for(admin_client, debug):
    debug.PREFTUNE_DEBUG_404 = True

    html = admin_client.get("/no-such-page/").content.decode()

    assert "DEBUG = True" in html


def test_a_views_own_404_is_left_as_it_is(annotator_client, project, debug):
    # The annotate screen answers a vote on a pair of another project with its card and a sentence, not a page.
    response = annotator_client.post(f"/projects/{project.pk}/pairs/999999/vote/", {"choice": "a"}, HTTP_HX_REQUEST="true")

    assert response.status_code == 404
    assert "That pair is not in this project." in response.content.decode()


def test_a_get_on_a_vote_address_explains_itself_and_records_nothing(annotator_client, project):
    response = annotator_client.get(f"/projects/{project.pk}/pairs/1/vote/")

    html = response.content.decode()
    assert response.status_code == 405 and response["Allow"] == "POST"
    assert "Not an address to open" in html and "takes a form's submission (POST), not a GET" in html
    assert '<a class="brand" href="/">preftune</a>' in html and "Log out" in html, "in the app's frame"
    assert PairVote.objects.count() == 0
