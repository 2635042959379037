"""Fault tests run the app as it runs in production: gunicorn on the test database, real HTTP on loopback.

They need PostgreSQL (row locks, pg_terminate_backend); CI runs them on PostgreSQL, and on SQLite they fail
with that message rather than skip, so a misconfigured CI cannot pass them silently.
"""
from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveApp:
    port: int
    process: subprocess.Popen
    log: Path

    def request(self, method: str, path: str, *, token: str | None = None, body: dict | None = None,
                timeout: float = 30) -> tuple[int, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        headers = {"Authorization": f"Token {token}"} if token else {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = {"raw": raw.decode(errors="replace")[:2000]}
        return response.status, payload

    def server_log(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def _database_url() -> str:
    settings = connection.settings_dict
    if connection.vendor != "postgresql":
        pytest.fail("The fault tests need PostgreSQL: set DATABASE_URL (scripts/test.sh does).")
    host, port = settings.get("HOST") or "127.0.0.1", settings.get("PORT") or 5432
    auth = settings["USER"] + (f":{settings['PASSWORD']}" if settings.get("PASSWORD") else "")
    return f"postgres://{auth}@{host}:{port}/{settings['NAME']}"


@pytest.fixture
def live_app(request, transactional_db, tmp_path):
    """gunicorn (3 sync workers, or ``request.param`` via indirect parametrization) serving the app on the test database; stopped, with its connections, after."""
    port = free_port()
    log = tmp_path / "gunicorn.log"
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "DB_CONN_MAX_AGE": "60",  # persistent connections, as in production: a dead one must be noticed
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "fault-tests-only-secret-key-" + "x" * 40,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "DJANGO_SECURE_COOKIES": "0",
        "PREFTUNE_VAR_DIR": str(tmp_path / "var"),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "webapp.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", str(getattr(request, "param", 3)), "--timeout", "30", "--graceful-timeout", "5"],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    app = LiveApp(port=port, process=process, log=log)
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            pytest.fail(f"gunicorn exited with {process.returncode}:\n{app.server_log()}")
        try:
            if app.request("GET", "/api/projects/", timeout=2)[0] == 401:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"gunicorn did not answer within 30 s:\n{app.server_log()}")
        time.sleep(0.1)
    yield app
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
