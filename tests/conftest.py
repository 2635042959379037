from __future__ import annotations

import pytest
from django.db import connection

from tests.factories import PASSWORD, AdminFactory, ProjectFactory, UserFactory


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


@pytest.fixture(autouse=True)
def _postgres_required(request):
    """Tests marked ``postgres`` fail loudly on another database rather than skip: they prove what SQLite cannot."""
    if request.node.get_closest_marker("postgres") and connection.vendor != "postgresql":
        pytest.fail("This test needs PostgreSQL: run it with `make test` (or set DATABASE_URL to a PostgreSQL database).")
