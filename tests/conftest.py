from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from tests.factories import PASSWORD, AdminFactory, ProjectFactory, UserFactory

# The servers and workers that tests start inherit this: no watchdog fails a test's hand-made "running" rows
# behind its back. The tests of the watchdog turn it on for their own processes.
os.environ["PREFTUNE_WATCHDOG"] = "0"


@pytest.fixture
def admin_user(db):
    return AdminFactory()


@pytest.fixture
def annotator(db):
    return UserFactory()


@pytest.fixture
def project(db, annotator):
    project = ProjectFactory()
    project.members.add(annotator)
    return project


@pytest.fixture
def annotator_client(client, annotator):
    assert client.login(username=annotator.username, password=PASSWORD)
    return client


@pytest.fixture
def admin_client(client, admin_user):
    assert client.login(username=admin_user.username, password=PASSWORD)
    return client


def pytest_configure(config: pytest.Config) -> None:
    import os
    import sys

    from django.test.utils import override_settings

    if os.environ.get("PYTEST_XDIST_WORKER") and "tests.xdist_isolation" not in sys.modules:
        raise pytest.UsageError(
            "With pytest-xdist (-n), load tests.xdist_isolation before Django's settings, or the processes share one "
            "broker and take each other's tasks: `python -m pytest -p tests.xdist_isolation -n 2`, as scripts/test.sh does."
        )

    # Django's default hasher takes 0.6 s a password on these cores, and almost every test makes a user and logs
    # in. Hashing strength is not what the suite tests; the servers it starts in other processes (gunicorn, Celery
    # workers) keep the default, and no test logs in to them with a password.
    override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]).enable()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight Llama with the bundled model's tokenizer: made once per test process, trains a step in
    well under a second."""
    from training.base_models import tiny_random_model

    return tiny_random_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def bundled_model_dir() -> Path:
    """The real SmolLM2-135M-Instruct, converted once (scripts/test.sh converts it before the suite)."""
    from training.base_models import convert_bundled_model

    return convert_bundled_model(Path(settings.PREFTUNE_MODELS_DIR) / "smollm2-135m-instruct")


@pytest.fixture(autouse=True)
def _postgres_required(request):
    """Tests marked ``postgres`` fail loudly on another database rather than skip: they prove what SQLite cannot."""
    if request.node.get_closest_marker("postgres") and connection.vendor != "postgresql":
        pytest.fail("This test needs PostgreSQL: run it with `make test` (or set DATABASE_URL to a PostgreSQL database).")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests that load the real model go first, then those that start a worker process or a browser, each
    module's order kept: across pytest-xdist's processes the longest tests then start early and the short ones fill
    the gaps, instead of one long test finishing alone."""

    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("slow"):
            return 0
        return 1 if item.get_closest_marker("worker") or item.get_closest_marker("browser") else 2

    items.sort(key=rank)
