"""The broker goes away while a run is queued: the run row stays queued, and the run still starts.

A private redis-server on a spare port stands in for the broker (never the shared one on 6379), started
without persistence, as our compose file and CI run Redis: a restart drops every message in it. What must
hold:

- a send while the broker is down fails within seconds, raises nothing, and leaves the run queued;
- ``training.requeue.runs_requeue_lost`` re-sends a queued run whose message is gone, once (calling it
  again adds no duplicate), and does nothing while the broker is still down;
- a real worker started afterwards picks the re-sent message up and claims the run.
"""
from __future__ import annotations

import shutil
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest
import redis

from tests.factories import PASSWORD, AdminFactory, ProjectFactory, make_run
from tests.faults.conftest import free_port
from tests.worker_process import celery_worker, wait_for
from training import requeue
from training.models import TuningRun

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]


class PrivateRedis:
    """A redis-server of this test's own, on a free port, that the test may stop and start at will."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: the broker fault tests start a private one (apt-get install redis-server).")
        self.binary = binary
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.folder)],
            stdout=(self.folder / "redis.log").open("a"), stderr=subprocess.STDOUT,
        )
        wait_for(self._answers, timeout=20, interval=0.05, what=f"redis-server on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def _answers(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
        except redis.ConnectionError:
            return False

    def waiting(self, queue: str = "gpu") -> int:
        return redis.Redis(port=self.port, socket_timeout=2).llen(queue)


def _use_broker(url: str | None) -> None:
    """Point this process's Celery app at ``url``, dropping pooled connections to the old broker."""
    import os

    from webapp.celery import app

    # Celery reads the CELERY_BROKER_URL environment variable before its own setting.
    if url is None:
        os.environ.pop("CELERY_BROKER_URL", None)
    else:
        os.environ["CELERY_BROKER_URL"] = url
    # What Celery itself does after a fork: the next send builds its pools from the configured URL.
    app._after_fork()


@pytest.fixture
def broker(tmp_path, settings):
    import os

    from webapp.celery import app

    private = PrivateRedis(tmp_path)
    private.start()
    original = os.environ.get("CELERY_BROKER_URL")
    _use_broker(private.url)
    settings.CELERY_BROKER_URL = private.url
    # Never send test messages to a shared broker: make sure every send goes to the private one.
    with app.connection_for_write() as conn:
        assert f":{private.port}/" in conn.as_uri(), conn.as_uri()
    assert f":{private.port}/" in app.pool.connection.as_uri()
    try:
        yield private
    finally:
        _use_broker(original)
        private.stop()


@pytest.fixture
def queued_run(db):
    return make_run(ProjectFactory(), status="queued")


def test_a_run_whose_message_a_broker_restart_lost_is_resent_once_and_picked_up(broker, queued_run, client):
    # given a queued run whose message is in the broker
    assert requeue.run_send(run_id=queued_run.pk) is True
    assert broker.waiting() == 1
    assert requeue.runs_requeue_lost(older_than=timedelta(0)) == [], "a message is waiting: nothing to re-send"

    # when the broker restarts without persistence
    broker.restart()

    # then the message is gone but the run is still queued, and the requeue sends it once
    assert broker.waiting() == 0
    assert TuningRun.objects.get(pk=queued_run.pk).status == "queued"
    assert requeue.runs_requeue_lost(older_than=timedelta(0)) == [queued_run.pk]
    assert requeue.runs_requeue_lost(older_than=timedelta(0)) == []
    assert broker.waiting() == 1
    # and the run's page says so while it waits
    assert client.login(username=AdminFactory().username, password=PASSWORD)
    waiting = client.get(f"/runs/{queued_run.pk}/").content.decode()
    assert "The broker had lost its message" in waiting and "the watchdog sent it again at" in waiting

    # and a real worker started now claims it
    with celery_worker("requeue", queues="gpu", extra_env={"CELERY_BROKER_URL": broker.url}):
        wait_for(
            lambda: TuningRun.objects.filter(pk=queued_run.pk).exclude(status="queued").exists(),
            timeout=90, what="the worker to claim the re-sent run",
        )
    run = TuningRun.objects.get(pk=queued_run.pk)
    assert run.attempt == 1
    assert run.worker.startswith("requeue@")


def test_a_send_while_the_broker_is_down_fails_fast_and_the_run_stays_queued(broker, queued_run):
    # given the broker is down
    broker.stop()

    # when the run's message is sent
    started = time.monotonic()
    sent = requeue.run_send(run_id=queued_run.pk)

    # then the send says so quickly, without raising, and the run is still queued
    assert sent is False
    assert time.monotonic() - started < 15
    assert TuningRun.objects.get(pk=queued_run.pk).status == "queued"
    assert requeue.runs_requeue_lost(older_than=timedelta(0)) == [], "nothing can be sent while the broker is down"

    # and once the broker is back, the periodic requeue sends it
    broker.start()
    assert requeue.runs_requeue_lost(older_than=timedelta(0)) == [queued_run.pk]
    assert broker.waiting() == 1


def test_runs_that_are_young_cancelled_or_running_are_not_resent(broker, queued_run):
    project = queued_run.project
    running = make_run(project, status="running")
    cancelled = make_run(project, status="cancelled")

    assert requeue.runs_requeue_lost(older_than=timedelta(minutes=5)) == [], "just launched: its message may be on its way"
    assert requeue.runs_requeue_lost(older_than=timedelta(0)) == [queued_run.pk]
    assert broker.waiting() == 1
    assert {running.status, cancelled.status} == {"running", "cancelled"}


def test_launching_while_the_broker_is_down_keeps_the_run_queued_without_an_error(broker, client, tmp_path):
    from tests.factories import PASSWORD, AdminFactory
    from tests.training.conftest import LAUNCH_FORM as FORM
    from tests.training.conftest import voted_compare_project
    from training.models import BaseModel

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    base = BaseModel.objects.create(name="folder-model", path=str(tmp_path / "model"))
    project = voted_compare_project(6)
    admin = AdminFactory()
    assert client.login(username=admin.username, password=PASSWORD)
    broker.stop()
    client.raise_request_exception = False

    response = client.post(f"/projects/{project.pk}/runs/new/", {**FORM, "base_model": str(base.pk)})

    run = TuningRun.objects.get()
    assert run.status == "queued"
    assert response.status_code == 302, response.status_code
    broker.start()
    assert requeue.runs_requeue_lost(older_than=timedelta(0)) == [run.pk]


def test_asking_for_candidates_while_the_broker_is_down_fails_the_job_with_the_reason(broker, client, tmp_path):
    from labeling.models import Prompt
    from tests.factories import PASSWORD, AdminFactory, ProjectFactory
    from training.models import BaseModel, GenerationJob

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    base = BaseModel.objects.create(name="folder-model", path=str(tmp_path / "model"))
    project = ProjectFactory()
    Prompt.objects.create(project=project, messages=[{"role": "user", "content": "Hi?"}])
    admin = AdminFactory()
    assert client.login(username=admin.username, password=PASSWORD)
    broker.stop()
    client.raise_request_exception = False

    response = client.post(
        f"/projects/{project.pk}/candidates/",
        {"versions": [f"base:{base.pk}"], "split": "train", "n": "2", "max_new_tokens": "8", "temperature": "0.7",
         "top_p": "0.9", "seed": "0"},
        follow=True,
    )

    job = GenerationJob.objects.get()
    assert response.status_code == 200
    assert job.status == "failed"
    assert "broker could not be reached" in response.content.decode()
