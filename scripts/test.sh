#!/usr/bin/env bash
# Run the test suite against real PostgreSQL and Redis, as CI does. Extra arguments go to pytest:
#   scripts/test.sh -k vote -x
#
# The suite runs in PYTEST_WORKERS processes (pytest-xdist; 0 runs it in this process). The default is 3 on a
# 2-core machine: its tests wait on worker starts, databases and browsers as much as they compute, and 3 processes
# kept the cores 85% busy (677 s) where 2 kept them 61% busy (914 s),
# each with its own test database and Redis database, and ends with the 20 slowest tests and its wall time.
#
# Set DATABASE_URL / CELERY_BROKER_URL to use other servers; otherwise the local ones on
# 127.0.0.1:5432 and 127.0.0.1:6379 are used, and started if they are installed but down.
#
# First, in seconds: scripts/system_deps.sh installs what the suite needs from Debian's packages
# (Chromium, PostgreSQL, Redis) as root, or stops with the command to run.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/system_deps.sh test
make --no-print-directory install
PY=.venv/bin/python

die() {
    echo "scripts/test.sh: $*" >&2
    exit 2
}

# Wait up to 30 s for a check command to succeed.
wait_for() {
    for _ in $(seq 1 60); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    return 1
}

ensure_local_postgres() {
    command -v pg_isready >/dev/null || die "pg_isready not found: install PostgreSQL (Debian: apt-get install postgresql) or set DATABASE_URL."
    if ! pg_isready -q -h 127.0.0.1 -p 5432; then
        if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ] && [ -n "$(ls /etc/postgresql)" ]; then
            echo "PostgreSQL is down on 127.0.0.1:5432: starting it."
            pg_ctlcluster --skip-systemctl-redirect "$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n 1)" main start ||
                die "could not start PostgreSQL (pg_ctlcluster failed); start it yourself or set DATABASE_URL."
        else
            die "PostgreSQL is not running on 127.0.0.1:5432 and no local cluster is installed. Start one (trust auth for user postgres) or set DATABASE_URL."
        fi
        wait_for pg_isready -q -h 127.0.0.1 -p 5432 || die "PostgreSQL did not come up on 127.0.0.1:5432 within 30 s."
    fi
    # The tests use test_preftune (created by pytest-django); preftune itself is for manage.py runs.
    # -w: never ask for a password (the suite connects without one), fail instead.
    if command -v psql >/dev/null &&
        [ -z "$(psql -w -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'preftune'")" ]; then
        createdb -w -h 127.0.0.1 -U postgres preftune ||
            die "could not create database preftune as user postgres on 127.0.0.1 without a password: trust it in pg_hba.conf, or set DATABASE_URL."
    fi
}

ensure_local_redis() {
    command -v redis-cli >/dev/null || die "redis-cli not found: install Redis (Debian: apt-get install redis-server) or set CELERY_BROKER_URL."
    if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
        if command -v redis-server >/dev/null; then
            echo "Redis is down on 127.0.0.1:6379: starting it."
            mkdir -p /var/lib/redis /var/log/redis
            redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
                --dir /var/lib/redis --logfile /var/log/redis/ci.log ||
                die "could not start redis-server; start it yourself or set CELERY_BROKER_URL."
        else
            die "Redis is not running on 127.0.0.1:6379 and redis-server is not installed. Start one or set CELERY_BROKER_URL."
        fi
        wait_for redis-cli -h 127.0.0.1 -p 6379 ping || die "Redis did not come up on 127.0.0.1:6379 within 30 s."
    fi
}

if [ -z "${DATABASE_URL:-}" ]; then
    ensure_local_postgres
    export DATABASE_URL="postgres://postgres@127.0.0.1:5432/preftune"
fi
if [ -z "${CELERY_BROKER_URL:-}" ]; then
    ensure_local_redis
    export CELERY_BROKER_URL="redis://127.0.0.1:6379/0"
fi
export PLAYWRIGHT_CHROMIUM="${PLAYWRIGHT_CHROMIUM:-/usr/bin/chromium}"

# The end-to-end tests load the real bundled model: convert it once (a no-op when done). Files only:
# the tests register it in their own test database.
"$PY" manage.py prepare_base_model --files-only

workers="${PYTEST_WORKERS:-3}"
parallel=()
if [ "$workers" != "0" ]; then
    # worksteal: a worker that runs out of tests takes half of what the other has left, so one long test near
    # the end does not leave a core idle behind a queue of short ones.
    parallel=(-n "$workers" --dist worksteal)
fi
# Loaded before Django's settings, it gives each xdist worker its own Redis database (tests/xdist_isolation.py).
parallel+=(-p tests.xdist_isolation)
started=$(date +%s)
status=0
"$PY" -m pytest "${parallel[@]}" --durations=20 "$@" || status=$?
echo "scripts/test.sh: the suite took $(($(date +%s) - started)) s (pytest exit $status)."
exit "$status"
