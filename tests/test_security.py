"""Every URL in the URL conf: anonymous users are sent to log in (or get 401 from the API); annotators get 403
on everything but their own screens; POST forms need a CSRF token; production settings pass check --deploy."""
from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from labeling.models import PairTask
from tests.factories import PASSWORD, ProjectFactory, make_pair_task, make_rate_task, make_run
from training.models import ModelVersion

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent

# Screens an annotator uses in a project they belong to. Everything else in the app is for admins.
ANNOTATOR_URLS = {"labeling:home", "labeling:annotate", "labeling:card", "labeling:pair_vote", "labeling:rate_vote", "labeling:skip"}
ADMIN_URLS = {
    "labeling:project_new",
    "labeling:project_edit",
    "labeling:dashboard",
    "labeling:disagreements",
    "labeling:adjudicate",
    "labeling:import",
    "labeling:export",
    "training:runs",
    "training:run_new",
    "training:run_detail",
    "training:run_status",
    "training:run_metrics",
    "training:run_cancel",
    "training:generation_job_cancel",
    "training:run_retry",
    "training:run_review",
    "training:run_review_generate",
    "training:run_battles",
    "training:run_battles_create",
    "training:leaderboard",
    "training:project_battles_create",
    "training:project_candidates",
    "training:project_rewards_score",
    "training:base_models",
    "training:version_download",
    "training:version_export_start",
    "training:version_export_cancel",
    "training:version_exports",
    # Admins' unless a project lets its annotators use the playground (tests/playground/test_playground.py).
    "training:playground",
    "training:playground_request",
    "training:playground_cancel",
    "training:playground_keep",
    "training:playground_battle",
}
API_URLS = {"api:projects", "api:import", "api:export", "api:next", "api:vote"}
OPEN_URLS = {"login", "logout", "favicon"}


def _named_patterns(resolver: URLResolver, namespace: str = "") -> set[str]:
    names = set()
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            if pattern.namespace == "admin":
                continue  # Django admin: checked separately below
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            names |= _named_patterns(pattern, inner)
        elif isinstance(pattern, URLPattern) and pattern.name:
            names.add(f"{namespace}{pattern.name}")
    return names


def _url(name: str, project, pair: PairTask) -> str:
    kwargs = {}
    if name.startswith("training:run_") and name != "training:run_new":
        return reverse(name, kwargs={"run_id": make_run(project).pk})
    if name in ("training:version_download", "training:version_export_start", "training:version_export_cancel",
                "training:version_exports"):
        run = make_run(project)
        version = ModelVersion.objects.create(name=f"v{run.pk}", base_model=run.base_model, adapter_path="/nonexistent/adapter")
        kind = {} if name == "training:version_exports" else {"kind": "adapter"}
        return reverse(name, kwargs={"version_id": version.pk, **kind})
    if name == "training:generation_job_cancel":
        from training.models import GenerationJob

        job = GenerationJob.objects.create(project=project, prompt_ids=[], settings={}, purpose="candidates")
        return reverse(name, kwargs={"job_id": job.pk})
    if name.startswith("training:playground_"):
        from tests.factories import AdminFactory
        from training.models import PlaygroundRequest

        question = PlaygroundRequest.objects.create(
            project=project, created_by=AdminFactory(), messages=[{"role": "user", "content": "Hi?"}], settings={}
        )
        return reverse(name, kwargs={"request_id": question.pk})
    if name in ("labeling:home", "labeling:project_new", "api:projects", "login", "logout", "training:base_models"):
        return reverse(name)
    kwargs["project_id"] = project.pk
    if name in ("labeling:pair_vote", "labeling:adjudicate"):
        kwargs["task_id"] = pair.pk
    if name == "labeling:skip":
        kwargs.update(kind="pair", task_id=pair.pk)
    if name == "api:vote":
        return reverse(name, kwargs={"kind": "pair", "task_id": pair.pk})
    if name == "labeling:rate_vote":
        kwargs["task_id"] = make_rate_task(ProjectFactory(mode="rate"), 1).pk
    return reverse(name, kwargs=kwargs)


@pytest.fixture
def world(annotator):
    own = ProjectFactory(name="Own")
    own.members.add(annotator)
    other = ProjectFactory(name="Other")
    return {"own": own, "other": other, "own_pair": make_pair_task(own, 1), "other_pair": make_pair_task(other, 2)}


def test_every_url_is_classified():
    assert _named_patterns(get_resolver()) == ANNOTATOR_URLS | ADMIN_URLS | API_URLS | OPEN_URLS


@pytest.mark.parametrize("name", sorted(ANNOTATOR_URLS | ADMIN_URLS))
@pytest.mark.parametrize("method", ["get", "post"])
def test_anonymous_users_are_sent_to_log_in(client, world, name, method):
    response = getattr(client, method)(_url(name, world["own"], world["own_pair"]))

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("name", sorted(API_URLS))
@pytest.mark.parametrize("method", ["get", "post"])
def test_anonymous_api_calls_get_401(client, world, name, method):
    response = getattr(client, method)(_url(name, world["own"], world["own_pair"]))

    assert response.status_code == 401


@pytest.mark.parametrize("name", sorted(ADMIN_URLS))
@pytest.mark.parametrize("method", ["get", "post"])
def test_annotators_get_403_on_admin_screens(annotator_client, world, name, method):
    response = getattr(annotator_client, method)(_url(name, world["own"], world["own_pair"]))

    # A view may answer a method it does not take with 405 before the role check; never with the page.
    assert response.status_code in (403, 405)
    if name == "labeling:project_new":
        assert not type(world["own"]).objects.filter(name="").exists()


@pytest.mark.parametrize("name", sorted(ANNOTATOR_URLS - {"labeling:home"}))
def test_annotators_get_403_on_projects_they_are_not_in(annotator_client, world, name):
    method = annotator_client.get if name in ("labeling:annotate", "labeling:card") else annotator_client.post
    url = _url(name, world["other"], world["other_pair"])

    response = method(url, {"pick": "left", "client_key": "k", "value": "up"})

    assert response.status_code == 403
    assert not world["other_pair"].votes.exists()


@pytest.mark.parametrize(
    "path", ["/admin/", "/admin/labeling/pairvote/", "/admin/auth/user/", "/admin/labeling/project/1/change/", "/admin/login/"]
)
def test_annotators_get_403_on_django_admin(annotator_client, path):
    assert annotator_client.get(path).status_code == 403


def test_anonymous_users_go_to_the_admin_login(client):
    response = client.get("/admin/")

    assert response.status_code == 302
    assert "login" in response["Location"]


def test_annotators_see_only_their_projects_on_the_home_page(annotator_client, world):
    html = annotator_client.get("/").content.decode()

    assert "Own" in html and "Other" not in html


@pytest.fixture
def csrf_client(annotator):
    client = Client(enforce_csrf_checks=True)
    assert client.login(username=annotator.username, password=PASSWORD)
    return client


@pytest.fixture
def csrf_admin_client(admin_user):
    client = Client(enforce_csrf_checks=True)
    assert client.login(username=admin_user.username, password=PASSWORD)
    return client


@pytest.mark.parametrize("name", ["labeling:pair_vote", "labeling:skip"])
def test_annotator_forms_need_a_csrf_token(csrf_client, world, name):
    response = csrf_client.post(_url(name, world["own"], world["own_pair"]), {"pick": "left", "client_key": "k"})

    assert response.status_code == 403
    assert not world["own_pair"].votes.exists()


_READ_ONLY = {"labeling:dashboard", "labeling:disagreements", "labeling:export", "training:runs", "training:run_detail",
              "training:run_status", "training:run_metrics", "training:run_review", "training:run_battles",
              "training:leaderboard", "training:version_exports"}


@pytest.mark.parametrize("name", sorted(ADMIN_URLS - _READ_ONLY))
def test_admin_forms_need_a_csrf_token(csrf_admin_client, world, name):
    response = csrf_admin_client.post(_url(name, world["own"], world["own_pair"]), {"name": "x", "choice": "a"})

    assert response.status_code == 403


def test_logout_needs_a_csrf_token(csrf_client):
    assert csrf_client.post("/accounts/logout/").status_code == 403


def test_check_deploy_is_clean_with_production_settings():
    env = {
        **os.environ,
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "x" * 20 + "-production-like-secret-key-for-the-check-0123456789",
        "DJANGO_ALLOWED_HOSTS": "preftune.example.com",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_settings_refuse_to_start_without_a_secret_key():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SECRET_KEY"}
    env["DJANGO_DEBUG"] = "0"
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )

    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_celery_accepts_json_only():
    from webapp.celery import app

    assert app.conf.task_serializer == "json"
    assert app.conf.accept_content == ["json"]
    assert app.conf.result_serializer == "json"


def test_a_403_is_logged_as_one_line_without_a_traceback(annotator_client, world, caplog):
    url = f"/projects/{world['other'].pk}/"

    with caplog.at_level(logging.INFO):
        response = annotator_client.get(url)

    assert response.status_code == 403
    records = [r for r in caplog.records if r.name == "django.request"]
    assert [(r.levelname, r.getMessage(), r.exc_info) for r in records] == [
        ("WARNING", f"Forbidden (Permission denied): {url}", None)
    ]
    assert "Traceback" not in caplog.text


def test_a_server_error_keeps_its_traceback(caplog):
    from django.core.handlers.exception import response_for_exception
    from django.test import RequestFactory

    request = RequestFactory().get("/boom/")
    try:
        raise RuntimeError("a bug")
    except RuntimeError as exc:
        with caplog.at_level(logging.ERROR, logger="django.request"):
            response_for_exception(request, exc)

    (record,) = [r for r in caplog.records if r.name == "django.request"]
    assert record.exc_info is not None and "RuntimeError: a bug" in caplog.text


def _console_handlers(logger_name: str) -> list[logging.StreamHandler]:
    """The plain stream handlers a record of ``logger_name`` reaches (pytest's own capture handlers left out)."""
    handlers, logger = [], logging.getLogger(logger_name)
    while logger is not None:
        handlers += [h for h in logger.handlers if type(h) is logging.StreamHandler]
        logger = logger.parent if logger.propagate else None
    return handlers


def test_with_debug_on_a_403_reaches_the_console_once(annotator_client, world, settings):
    # Given development settings, where Django's own console handler is active too
    settings.DEBUG = True
    console = io.StringIO()
    handlers = _console_handlers("django.request")
    streams = [h.setStream(console) for h in handlers]
    try:
        response = annotator_client.get(f"/projects/{world['other'].pk}/")
    finally:
        for handler, stream in zip(handlers, streams, strict=True):
            handler.setStream(stream)

    # Then the refusal is printed once, as one line
    assert response.status_code == 403
    printed = console.getvalue()
    assert printed.count("Forbidden (Permission denied)") == 1, printed
    assert printed.strip().count("\n") == 0 and "Traceback" not in printed


def test_the_favicon_is_served(client):
    from django.contrib.staticfiles import finders

    response = client.get("/favicon.ico")

    assert response.status_code == 302 and response["Location"] == "/static/favicon.svg"
    svg = Path(finders.find("favicon.svg")).read_text()
    assert svg.startswith("<svg") and 'xmlns="http://www.w3.org/2000/svg"' in svg


def test_every_page_links_the_favicon(annotator_client, world):
    html = annotator_client.get("/").content.decode()

    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in html
