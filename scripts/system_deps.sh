#!/usr/bin/env bash
# The system packages `make run` and `make test` need, checked first, before anything slow:
#
#   scripts/system_deps.sh run    Python 3.11+ with venv, and make
#   scripts/system_deps.sh test   those, plus Chromium for the browser tests; PostgreSQL (server and
#                                 clients) unless DATABASE_URL is set; redis-server, which the broker
#                                 fault tests start for themselves, and redis-cli unless
#                                 CELERY_BROKER_URL is set
#
# Whatever is missing is installed from Debian's packages when this runs as root (or sudo needs no
# password), saying what and why. Otherwise, or with PREFTUNE_NO_APT=1, it prints the command to run
# and exits 2 within seconds. With everything present it prints one line, "system deps OK".
#
# The checks use shell builtins only (and $PYTHON), so they cost nothing on every run. Sourcing this
# file defines the functions without running anything.
set -euo pipefail

PYTHON=${PYTHON:-python3}
CHROMIUM=${PLAYWRIGHT_CHROMIUM:-/usr/bin/chromium}

packages=() # Debian packages to install, each once
reasons=()  # what needs each one, as printed

need() { # need PACKAGE WHY
    local package
    for package in "${packages[@]}"; do
        [ "$package" = "$1" ] && return 0
    done
    packages+=("$1")
    reasons+=("  $1: $2")
}

stop() {
    echo "scripts/system_deps.sh: $*" >&2
    exit 2
}

postgres_answers() {
    (: </dev/tcp/127.0.0.1/5432) 2>/dev/null
}

# What scripts/test.sh can start when nothing answers on 5432 (Debian's pg_ctlcluster and a cluster).
postgres_cluster_installed() {
    command -v pg_ctlcluster >/dev/null && compgen -G '/etc/postgresql/*/main' >/dev/null
}

# Fills packages and reasons with what MODE (run or test) lacks.
check() { # check MODE
    packages=() reasons=()
    if ! command -v "$PYTHON" >/dev/null; then
        need python3 "make creates .venv with $PYTHON, which is missing"
        need python3-venv "make creates .venv with $PYTHON -m venv"
    elif ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        # apt-get cannot fix this one: Debian before 12 has no Python 3.11.
        stop "$PYTHON is older than Python 3.11, which preftune needs (Debian 12 has 3.11):" \
            "install one, then run with PYTHON naming it, e.g. make test PYTHON=python3.11"
    elif ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
        need python3-venv "make creates .venv with $PYTHON -m venv, which needs ensurepip"
    fi
    command -v make >/dev/null || need make "scripts/run.sh and scripts/test.sh install .venv with make install"
    [ "$1" = test ] || return 0

    [ -x "$CHROMIUM" ] ||
        need chromium "the browser tests launch $CHROMIUM, which is missing (PLAYWRIGHT_CHROMIUM may name another)"
    if [ -z "${DATABASE_URL:-}" ]; then
        local tool
        for tool in pg_isready psql createdb; do
            command -v "$tool" >/dev/null ||
                need postgresql-client "scripts/test.sh checks PostgreSQL on 127.0.0.1:5432 with $tool (or set DATABASE_URL)"
        done
        postgres_answers || postgres_cluster_installed ||
            need postgresql "nothing answers on 127.0.0.1:5432 and no local cluster is installed (or set DATABASE_URL)"
    fi
    command -v redis-server >/dev/null || need redis-server "the broker fault tests start a redis-server of their own"
    if [ -z "${CELERY_BROKER_URL:-}" ]; then
        command -v redis-cli >/dev/null ||
            need redis-tools "scripts/test.sh checks Redis on 127.0.0.1:6379 with redis-cli (or set CELERY_BROKER_URL)"
    fi
}

# Why apt-get won't be run here, or nothing when it will.
why_not_install() {
    if [ "${PREFTUNE_NO_APT:-}" = 1 ]; then
        echo "PREFTUNE_NO_APT=1: not installing anything"
    elif ! command -v apt-get >/dev/null; then
        echo "no apt-get here: install the equivalent packages with your system's package manager"
    elif [ "$EUID" -ne 0 ] && ! { command -v sudo >/dev/null && sudo -n true 2>/dev/null; }; then
        echo "not root, and sudo asks for a password"
    fi
}

# A cluster that apt-get has just created asks for a password on 127.0.0.1, and the suite connects as
# postgres without one (the README's "trust auth"): allow that, on loopback only. Called only for a
# cluster this script installed itself; a second call changes nothing.
postgres_trust_loopback() { # postgres_trust_loopback PG_HBA_CONF [COMMAND PREFIX, e.g. sudo -n]
    local hba=$1 marker="# Added by preftune's scripts/system_deps.sh: the test suite connects as postgres without a password."
    shift
    "$@" grep -qxF "$marker" "$hba" && return 0
    # sed -i keeps the file's owner and mode; the first matching line wins, so these go first.
    "$@" sed -i -e "1i $marker" -e '1i host all postgres 127.0.0.1/32 trust' -e '1i host all postgres ::1/128 trust' "$hba"
}

main() {
    local mode=${1:-test}
    case $mode in
        run | test) ;;
        *) stop "usage: scripts/system_deps.sh run|test" ;;
    esac

    check "$mode"
    if [ "${#packages[@]}" -eq 0 ]; then
        echo "system deps OK"
        return 0
    fi

    local why_not
    why_not=$(why_not_install)
    if [ -n "$why_not" ]; then
        local sudo=""
        [ "$EUID" -eq 0 ] || sudo="sudo "
        {
            echo "scripts/system_deps.sh: \`make $mode\` needs system packages that are missing:"
            printf '%s\n' "${reasons[@]}"
            echo "Install them ($why_not), then run it again:"
            echo "  ${sudo}apt-get update && ${sudo}apt-get install -y --no-install-recommends ${packages[*]}"
        } >&2
        exit 2
    fi

    local as_root=() installed=("${packages[@]}")
    [ "$EUID" -eq 0 ] || as_root=(sudo -n)
    echo "system deps: installing with apt-get: ${installed[*]}"
    printf '%s\n' "${reasons[@]}"
    local apt=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -qq -o DPkg::Lock::Timeout=600)
    "${apt[@]}" update || stop "apt-get update failed: see above"
    "${apt[@]}" install -y --no-install-recommends "${installed[@]}" >/dev/null ||
        stop "apt-get install ${installed[*]} failed: see above"

    if [[ " ${installed[*]} " == *" postgresql "* ]]; then
        local version
        version=$(compgen -G '/etc/postgresql/*/main' | sort -V | tail -n 1 | cut -d/ -f4)
        [ -n "$version" ] || stop "apt-get installed postgresql but created no cluster under /etc/postgresql"
        echo "system deps: PostgreSQL $version: trust auth for user postgres on 127.0.0.1 and ::1 (pg_hba.conf)"
        postgres_trust_loopback "/etc/postgresql/$version/main/pg_hba.conf" "${as_root[@]}"
        if postgres_answers; then
            "${as_root[@]}" pg_ctlcluster --skip-systemctl-redirect "$version" main reload
        fi
    fi

    check "$mode"
    if [ "${#packages[@]}" -ne 0 ]; then
        printf '%s\n' "scripts/system_deps.sh: still missing after installing ${installed[*]}:" "${reasons[@]}" >&2
        exit 2
    fi
    echo "system deps OK (installed ${installed[*]})"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
