"""How many votes a second the labeling loop takes on PostgreSQL under gunicorn, and is every vote right?

    .venv/bin/python bench/labeling_load.py                      # 32 annotators for 20 s
    .venv/bin/python bench/labeling_load.py --clients 64 --seconds 30 --workers 9 --worker-class gthread

What it does, all on loopback and bounded in time:

1. drops and recreates a dedicated database (``--db``, default ``preftune_bench`` on the local
   PostgreSQL) and migrates it;
2. seeds one compare project (``--tasks`` pair tasks, ``--overlap`` votes wanted each) and ``--clients``
   annotators, each with an API token;
3. counts the SQL queries one ``next`` and one ``vote`` request make (in-process, CaptureQueriesContext);
4. starts gunicorn (``--workers``, default 2 × cores + 1) on a free loopback port with DEBUG off;
5. runs one client process per annotator for ``--seconds``: ``GET /api/projects/<id>/next`` then
   ``POST /api/tasks/pair/<id>/vote``; every ``--resend-every``-th vote is sent twice with the same
   client_key (a double click), whose answer must be 200 with the first vote's id;
6. prints, per endpoint, count, p50/p95/p99 latency and errors, and votes/s;
7. checks in SQL that no acknowledged vote is missing, none is counted twice, every task's
   ``vote_count`` equals its votes, and no task is over-filled. Exits 1 if a check fails.

A figure, not a test: the load generator shares the machine with the server and the database, so
compare runs on the same machine only. Only the standard library talks HTTP.
"""
from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ENDPOINTS = ("next", "vote", "vote (resend)")


# ---------------------------------------------------------------- set-up


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_env(db_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": db_url,
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "bench-only-secret-key-" + "x" * 40,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,testserver",
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "DJANGO_SECURE_COOKIES": "0",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        "DJANGO_SETTINGS_MODULE": "webapp.settings",
    }


def _recreate_database(admin_dsn: str, name: str) -> None:
    import psycopg

    if not name.replace("_", "").isalnum():
        raise SystemExit(f"refusing odd database name {name!r}")
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def _seed(tasks: int, overlap: int, clients: int) -> tuple[int, list[tuple[int, str]]]:
    """One compare project with ``tasks`` pairs; returns its id and (user id, raw token) per annotator."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    from labeling.models import Completion, PairTask, Project, Prompt
    from labeling.services import api_token_create

    user_model = get_user_model()
    project = Project.objects.create(name="Bench", mode="compare", overlap=overlap, guidelines="Pick the better one.")
    prompts = Prompt.objects.bulk_create(
        Prompt(project=project, external_id=f"p{n}", messages=[{"role": "user", "content": f"Question {n}: why?"}])
        for n in range(tasks)
    )
    completions = Completion.objects.bulk_create(
        Completion(prompt=prompt, text=f"Answer {side} to {n}. " * 20)
        for n, prompt in enumerate(prompts)
        for side in ("one", "two")
    )
    PairTask.objects.bulk_create(
        PairTask(project=project, prompt=prompt, completion_a=completions[2 * n], completion_b=completions[2 * n + 1],
                 overlap=overlap)
        for n, prompt in enumerate(prompts)
    )
    password = make_password("bench-password")
    users = user_model.objects.bulk_create(
        user_model(username=f"bench{n}", password=password) for n in range(clients + 1)
    )
    project.members.add(*users)
    return project.pk, [(user.pk, api_token_create(user=user, name="bench")) for user in users]


def _query_counts(project_id: int, token: str) -> dict[str, int]:
    """SQL statements per request for next (new lease), next (own lease again), vote, and a resent vote."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_AUTHORIZATION=f"Token {token}")
    counts = {}

    def measure(name: str, call):  # noqa: ANN001, ANN202
        with CaptureQueriesContext(connection) as ctx:
            response = call()
        assert response.status_code in (200, 201), (name, response.status_code, response.content[:300])
        counts[name] = len(ctx.captured_queries)
        return response

    nxt = measure("next (new lease)", lambda: client.get(f"/api/projects/{project_id}/next")).json()
    measure("next (own lease)", lambda: client.get(f"/api/projects/{project_id}/next"))
    body = json.dumps({"pick": "left", "client_key": nxt["client_key"]})
    url = nxt["task"]["vote_url"]
    measure("vote", lambda: client.post(url, body, content_type="application/json"))
    measure("vote (resend)", lambda: client.post(url, body, content_type="application/json"))
    return counts


def _start_gunicorn(env: dict[str, str], port: int, workers: int, worker_class: str, threads: int, log: Path):
    command = [
        sys.executable, "-m", "gunicorn", "webapp.wsgi:application",
        "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--worker-class", worker_class,
        "--backlog", "512", "--timeout", "60", "--log-level", "warning",
    ]
    if worker_class == "gthread":
        command += ["--threads", str(threads)]
    process = subprocess.Popen(  # noqa: S603
        command, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"gunicorn exited with {process.returncode}; see {log}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/api/projects/")
            if conn.getresponse().status == 401:
                return process
        except OSError:
            time.sleep(0.2)
    _stop(process)
    raise SystemExit(f"gunicorn did not answer on port {port} within 60 s; see {log}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


# ---------------------------------------------------------------- one simulated annotator


@dataclass
class ClientResult:
    user_id: int
    latencies: dict[str, list[float]] = field(default_factory=lambda: {name: [] for name in ENDPOINTS})
    errors: dict[str, dict[str, int]] = field(default_factory=lambda: {name: {} for name in ENDPOINTS})
    created: list[tuple[int, int, str]] = field(default_factory=list)  # (vote id, task id, client_key)
    resend_mismatches: int = 0
    idle_polls: int = 0


def _request(port: int, method: str, path: str, token: str, body: bytes | None, timeout: float):  # noqa: ANN202
    # A fresh connection per request: gunicorn's sync workers close after each response anyway.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Authorization": f"Token {token}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    try:
        started = time.perf_counter()
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        return response.status, data, (time.perf_counter() - started) * 1000
    finally:
        conn.close()


def _annotator(port: int, project_id: int, user_id: int, token: str, deadline: float, resend_every: int,
               seed: int, out: mp.Queue) -> None:
    rng = random.Random(seed)
    result = ClientResult(user_id=user_id)

    def record(name: str, status: int | str, ms: float | None) -> bool:
        ok = isinstance(status, int) and status < 400
        if ms is not None and ok:
            result.latencies[name].append(ms)
        if not ok:
            result.errors[name][str(status)] = result.errors[name].get(str(status), 0) + 1
        return ok

    votes = 0
    while time.time() < deadline:
        try:
            status, data, ms = _request(port, "GET", f"/api/projects/{project_id}/next", token, None, 30)
        except OSError as exc:
            record("next", type(exc).__name__, None)
            time.sleep(0.05)
            continue
        if not record("next", status, ms):
            continue
        task = json.loads(data)["task"]
        if task is None:
            result.idle_polls += 1
            time.sleep(0.05)  # every free slot is leased by someone else, or all done
            continue
        key = uuid.uuid4().hex
        body = json.dumps({"pick": rng.choice(["left", "right", "tie", "both_bad"]), "client_key": key}).encode()
        try:
            status, data, ms = _request(port, "POST", task["vote_url"], token, body, 30)
        except OSError as exc:
            record("vote", type(exc).__name__, None)
            continue
        if record("vote", status, ms) and status == 201:
            vote_id = json.loads(data)["id"]
            result.created.append((vote_id, task["id"], key))
            votes += 1
            if resend_every and votes % resend_every == 0:
                try:
                    status, data, ms = _request(port, "POST", task["vote_url"], token, body, 30)
                except OSError as exc:
                    record("vote (resend)", type(exc).__name__, None)
                    continue
                if record("vote (resend)", status, ms) and (status != 200 or json.loads(data)["id"] != vote_id):
                    result.resend_mismatches += 1
    out.put(result)


# ---------------------------------------------------------------- figures and checks


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def _print_table(results: list[ClientResult], seconds: float) -> dict[str, float]:
    print(f"\n{'endpoint':<16}{'count':>8}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}{'mean ms':>10}  errors")
    figures = {}
    for name in ENDPOINTS:
        latencies = [ms for r in results for ms in r.latencies[name]]
        errors: dict[str, int] = {}
        for r in results:
            for status, n in r.errors[name].items():
                errors[status] = errors.get(status, 0) + n
        p50, p95, p99 = (_percentile(latencies, q) for q in (50, 95, 99))
        mean = statistics.fmean(latencies) if latencies else float("nan")
        shown = ", ".join(f"{status}×{n}" for status, n in sorted(errors.items())) or "none"
        print(f"{name:<16}{len(latencies):>8}{p50:>10.1f}{p95:>10.1f}{p99:>10.1f}{mean:>10.1f}  {shown}")
        figures[f"{name} p95"] = p95
    created = sum(len(r.created) for r in results)
    print(f"\nvotes recorded: {created} in {seconds:.1f} s = {created / seconds:.1f} votes/s "
          f"({sum(r.idle_polls for r in results)} empty polls)")
    figures["votes/s"] = created / seconds
    return figures


def _integrity(project_id: int, results: list[ClientResult]) -> list[str]:
    from django.db import connection

    problems: list[str] = []
    acknowledged = {vote_id: (task_id, key, r.user_id) for r in results for vote_id, task_id, key in r.created}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT v.id, v.task_id, v.client_key, v.annotator_id FROM labeling_pairvote v "
            "JOIN labeling_pairtask t ON t.id = v.task_id WHERE t.project_id = %s",
            [project_id],
        )
        stored = {row[0]: (row[1], row[2], row[3]) for row in cursor.fetchall()}
        missing = [vote_id for vote_id in acknowledged if vote_id not in stored]
        wrong = [vote_id for vote_id, row in acknowledged.items() if vote_id in stored and stored[vote_id] != row]
        if missing:
            problems.append(f"{len(missing)} acknowledged vote(s) are not in the database: {missing[:5]}")
        if wrong:
            problems.append(f"{len(wrong)} acknowledged vote(s) differ in the database: {wrong[:5]}")
        # Votes the clients never heard about: the probe's vote, or a response lost to a client timeout.
        unacknowledged = len(stored) - len(acknowledged) - 1
        cursor.execute(
            "SELECT count(*) FROM (SELECT task_id, annotator_id FROM labeling_pairvote "
            "GROUP BY task_id, annotator_id HAVING count(*) > 1) d"
        )
        doubled = cursor.fetchone()[0]
        if doubled:
            problems.append(f"{doubled} (task, annotator) pairs have more than one vote")
        cursor.execute(
            "SELECT count(*) FROM labeling_pairtask t LEFT JOIN (SELECT task_id, count(*) AS n FROM labeling_pairvote "
            "GROUP BY task_id) v ON v.task_id = t.id WHERE t.project_id = %s AND t.vote_count <> coalesce(v.n, 0)",
            [project_id],
        )
        miscounted = cursor.fetchone()[0]
        if miscounted:
            problems.append(f"{miscounted} tasks have vote_count different from their votes")
        cursor.execute(
            "SELECT count(*) FROM labeling_pairtask WHERE project_id = %s AND vote_count > overlap", [project_id]
        )
        overfilled = cursor.fetchone()[0]
        if overfilled:
            problems.append(f"{overfilled} tasks are over-filled")
        cursor.execute(
            "SELECT count(*) FROM labeling_pairtask WHERE project_id = %s AND "
            "(status = 'complete') <> (vote_count >= overlap)",
            [project_id],
        )
        bad_status = cursor.fetchone()[0]
        if bad_status:
            problems.append(f"{bad_status} tasks have a status that does not match their votes")
        cursor.execute(
            "SELECT count(*), count(*) FILTER (WHERE status = 'complete') FROM labeling_pairtask WHERE project_id = %s",
            [project_id],
        )
        total, complete = cursor.fetchone()
    resend_mismatches = sum(r.resend_mismatches for r in results)
    if resend_mismatches:
        problems.append(f"{resend_mismatches} resent votes did not come back as 200 with the first vote's id")
    print(
        f"\nintegrity: {len(acknowledged)} acknowledged votes, {len(stored)} stored "
        f"({unacknowledged} unacknowledged besides the probe's), {doubled} doubled, {miscounted} miscounted, "
        f"{overfilled} over-filled; {complete}/{total} tasks complete"
    )
    return problems


# ---------------------------------------------------------------- main


def main() -> int:
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32, help="simulated annotators, one process each")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--overlap", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2 * cores + 1, help="gunicorn workers")
    parser.add_argument("--worker-class", choices=("sync", "gthread"), default="sync")
    parser.add_argument("--threads", type=int, default=4, help="threads per gthread worker")
    parser.add_argument("--resend-every", type=int, default=10, help="send every Nth vote twice (0: never)")
    parser.add_argument("--admin-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--db", default="preftune_bench", help="database to drop and recreate")
    parser.add_argument("--keep-db", action="store_true", help="leave the database behind for inspection")
    args = parser.parse_args()
    if not (1 <= args.clients <= 256 and 0 < args.seconds <= 600 and 1 <= args.tasks <= 200_000):
        parser.error("keep --clients in 1..256, --seconds in (0, 600], --tasks in 1..200000")

    db_url = args.admin_dsn.rsplit("/", 1)[0] + "/" + args.db
    env = _server_env(db_url)
    os.environ.update(env)  # this process seeds and checks the same database through Django
    print(f"machine: {cores} cores, Python {sys.version.split()[0]}; gunicorn {args.workers} × {args.worker_class}"
          f"{f' × {args.threads} threads' if args.worker_class == 'gthread' else ''}; {args.clients} annotators; "
          f"{args.tasks} tasks × overlap {args.overlap}; {args.seconds:.0f} s")

    _recreate_database(args.admin_dsn, args.db)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)  # noqa: S603
    import django

    django.setup()
    from django.db import connections

    project_id, tokens = _seed(args.tasks, args.overlap, args.clients)
    probe_user, probe_token = tokens.pop()
    counts = _query_counts(project_id, probe_token)
    print("SQL queries per request: " + ", ".join(f"{name} {n}" for name, n in counts.items()))
    connections.close_all()  # no connection may cross the fork below

    port = _free_port()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"preftune-bench-gunicorn-{port}.log"
    server = _start_gunicorn(env, port, args.workers, args.worker_class, args.threads, log)
    results: list[ClientResult] = []
    try:
        out: mp.Queue = mp.Queue()
        started = time.time()
        deadline = started + args.seconds
        clients = [
            mp.Process(target=_annotator, args=(port, project_id, user_id, token, deadline, args.resend_every, n, out))
            for n, (user_id, token) in enumerate(tokens)
        ]
        for process in clients:
            process.start()
        for _ in clients:
            results.append(out.get(timeout=args.seconds + 120))
        elapsed = time.time() - started
        for process in clients:
            process.join(timeout=10)
    finally:
        _stop(server)

    print(f"(clients finished {elapsed:.1f} s after the start)")
    _print_table(results, args.seconds)
    problems = _integrity(project_id, results)
    connections.close_all()
    if not args.keep_db:
        import psycopg

        with psycopg.connect(args.admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{args.db}" WITH (FORCE)')
    for problem in problems:
        print(f"INTEGRITY FAILURE: {problem}")
    print("integrity: OK" if not problems else "integrity: FAILED")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
