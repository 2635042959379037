"""scripts/system_deps.sh, run against a PATH of stub programs: it never looks at, or changes, the real system."""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "system_deps.sh"
BASH = shutil.which("bash") or "/bin/bash"

# Every program the test mode looks for on PATH. DATABASE_URL and CELERY_BROKER_URL are set in these
# tests, so whether a PostgreSQL or Redis server runs on this machine does not matter.
PROGRAMS = ("python3", "make", "pg_isready", "psql", "createdb", "redis-server", "redis-cli")

# apt-get as the script runs it: logs its arguments, and "installs" a package by writing a stub program.
FAKE_APT_GET = f"""#!{sys.executable}
import os, sys
from pathlib import Path
here = Path(sys.argv[0]).parent
with open(here / "apt-get.log", "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
stubs = {{"chromium": os.environ["PLAYWRIGHT_CHROMIUM"], "redis-server": str(here / "redis-server")}}
if "install" in sys.argv:
    for package in sys.argv[sys.argv.index("install") + 1:]:
        if package in stubs:
            Path(stubs[package]).write_text("#!/bin/sh\\nexit 0\\n")
            Path(stubs[package]).chmod(0o755)
"""


def _stub(path: Path, body: str = "exit 0") -> None:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


@pytest.fixture
def machine(tmp_path: Path) -> Path:
    """A bin folder holding a stub of every program the script looks for; Chromium at tmp_path/chromium."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in PROGRAMS:
        _stub(bin_dir / program)
    _stub(tmp_path / "chromium")
    return bin_dir


def _run(bin_dir: Path, mode: str = "test", **env: str) -> tuple[subprocess.CompletedProcess, float]:
    environment = {
        "PATH": str(bin_dir),
        "HOME": str(bin_dir.parent),
        "PLAYWRIGHT_CHROMIUM": str(bin_dir.parent / "chromium"),
        "DATABASE_URL": "postgres://postgres@db.invalid:5432/preftune",
        "CELERY_BROKER_URL": "redis://broker.invalid:6379/0",
        **env,
    }
    started = time.monotonic()
    result = subprocess.run(
        [BASH, str(SCRIPT), mode], env=environment, capture_output=True, text=True, timeout=30
    )
    return result, time.monotonic() - started


def test_everything_present_prints_one_ok_line(machine):
    result, _ = _run(machine)

    assert result.returncode == 0, result.stderr
    assert result.stdout == "system deps OK\n"
    assert result.stderr == ""


def test_a_missing_chromium_stops_within_seconds_with_the_apt_get_command(machine):
    (machine.parent / "chromium").unlink()

    result, seconds = _run(machine, PREFTUNE_NO_APT="1")

    assert result.returncode == 2
    assert seconds < 5
    assert f"chromium: the browser tests launch {machine.parent / 'chromium'}, which is missing" in result.stderr
    assert "apt-get update && apt-get install -y --no-install-recommends chromium\n" in result.stderr
    assert "PREFTUNE_NO_APT=1" in result.stderr


def test_make_run_does_not_need_chromium_or_the_servers(machine):
    (machine.parent / "chromium").unlink()
    for program in ("pg_isready", "psql", "createdb", "redis-server", "redis-cli"):
        (machine / program).unlink()

    result, _ = _run(machine, mode="run", PREFTUNE_NO_APT="1")

    assert result.returncode == 0, result.stderr
    assert result.stdout == "system deps OK\n"


def test_every_missing_package_is_named_once_in_one_command(machine):
    for program in ("python3", "make", "redis-server", "redis-cli"):
        (machine / program).unlink()

    # No CELERY_BROKER_URL: scripts/test.sh checks the local Redis with redis-cli.
    result, _ = _run(machine, PREFTUNE_NO_APT="1", CELERY_BROKER_URL="")

    assert result.returncode == 2
    assert (
        "apt-get install -y --no-install-recommends python3 python3-venv make redis-server redis-tools\n"
        in result.stderr
    )


def test_a_python_older_than_3_11_stops_with_how_to_name_another(machine):
    _stub(machine / "python3", 'case "$2" in *version_info*) exit 1 ;; esac\nexit 0')

    result, _ = _run(machine, mode="run")

    assert result.returncode == 2
    assert "older than Python 3.11" in result.stderr
    assert "make test PYTHON=python3.11" in result.stderr


def test_as_root_it_installs_what_is_missing_with_apt_get_and_says_why(machine):
    (machine.parent / "chromium").unlink()
    (machine / "redis-server").unlink()
    (machine / "apt-get").write_text(FAKE_APT_GET)
    (machine / "apt-get").chmod(0o755)
    (machine / "env").symlink_to(shutil.which("env") or "/usr/bin/env")
    # Run by someone else than root, the script goes through sudo -n: this one lets everything through.
    _stub(machine / "sudo", '[ "$1" = -n ] && shift\n[ "$1" = true ] && exit 0\nexec "$@"')

    result, _ = _run(machine)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "system deps: installing with apt-get: chromium redis-server",
        f"  chromium: the browser tests launch {machine.parent / 'chromium'}, which is missing"
        " (PLAYWRIGHT_CHROMIUM may name another)",
        "  redis-server: the broker fault tests start a redis-server of their own",
        "system deps OK (installed chromium redis-server)",
    ]
    assert (machine / "apt-get.log").read_text().splitlines() == [
        "-qq -o DPkg::Lock::Timeout=600 update",
        "-qq -o DPkg::Lock::Timeout=600 install -y --no-install-recommends chromium redis-server",
    ]


def test_trust_auth_for_a_new_postgres_cluster_goes_first_and_only_once(tmp_path):
    hba = tmp_path / "pg_hba.conf"
    hba.write_text("local all postgres peer\nhost all all 127.0.0.1/32 scram-sha-256\n")
    call = f'source "{SCRIPT}"; postgres_trust_loopback "$1"'

    for _ in range(2):
        subprocess.run([BASH, "-c", call, "bash", str(hba)], check=True, timeout=30)

    lines = hba.read_text().splitlines()
    assert lines[1:] == [
        "host all postgres 127.0.0.1/32 trust",
        "host all postgres ::1/128 trust",
        "local all postgres peer",
        "host all all 127.0.0.1/32 scram-sha-256",
    ]
    assert lines[0].startswith("# Added by preftune's scripts/system_deps.sh")
