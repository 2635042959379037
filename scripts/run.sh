#!/usr/bin/env bash
# Start preftune for development: the web server on http://127.0.0.1:8000/ and one Celery worker
# (queues default and gpu, concurrency 1, with beat), both in the foreground; Ctrl-C stops both.
#
# With no DATABASE_URL and no CELERY_BROKER_URL this needs no services: SQLite and kombu's
# filesystem broker, both under var/ (see webapp/settings.py). Of the system, it needs Python 3.11+
# with venv and make: scripts/system_deps.sh checks for them first.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/system_deps.sh run
make --no-print-directory install
PY=.venv/bin/python

"$PY" manage.py migrate --noinput
"$PY" manage.py prepare_base_model
"$PY" manage.py load_demo
# Whitenoise serves the collected files when DEBUG is off; with DEBUG on this is a fast no-op copy.
"$PY" manage.py collectstatic --noinput --verbosity 0

HOST="${PREFTUNE_HOST:-127.0.0.1}"
PORT="${PREFTUNE_PORT:-8000}"

# Job control: each background job gets its own process group (Ctrl-C reaches only this script, whose
# trap stops both in order), and one kill of runserver's group reaches its reloader child too.
set -m
# -B: the same process also runs the beat schedule (CELERY_BEAT_SCHEDULE, e.g. reaping stale runs);
# fine for the one development worker, a separate `celery beat` in production.
.venv/bin/celery -A webapp worker -B -Q default,gpu --concurrency 1 --loglevel INFO --hostname "preftune-dev@%h" &
worker_pid=$!
"$PY" manage.py runserver "$HOST:$PORT" &
web_pid=$!

# shellcheck disable=SC2317  # reached through the traps below
stop() {
    trap - INT TERM EXIT
    echo
    echo "Stopping the web server and the worker..."
    # The worker's main process shuts its pool down itself; runserver's reloader child needs the group.
    kill -TERM -- "-$web_pid" 2>/dev/null || true
    kill -TERM "$worker_pid" 2>/dev/null || true
    # A worker in the middle of a task finishes it first (warm shutdown); don't wait forever.
    for _ in $(seq 1 20); do
        kill -0 "$web_pid" 2>/dev/null || kill -0 "$worker_pid" 2>/dev/null || return 0
        sleep 0.5
    done
    echo "Still running after 10 s: killing (an unfinished task is redelivered on the next start)."
    kill -KILL -- "-$web_pid" "-$worker_pid" 2>/dev/null || true
}
interrupted=0
trap 'interrupted=1; stop' INT TERM
trap stop EXIT

# Whichever stops first (Ctrl-C, a crash, port 8000 taken) takes the other one down with it.
status=0
wait -n "$web_pid" "$worker_pid" || status=$?
if [ "$interrupted" = 1 ]; then
    exit 0  # stopped on purpose
fi
exit "$status"
