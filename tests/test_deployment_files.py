"""docker-compose.yml and the Dockerfile say what the design asks for (no Docker engine runs in CI to try them)."""
from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_the_services_with_healthchecks_and_volumes():
    services = _compose()["services"]

    assert {"postgres", "redis", "web", "worker", "worker-gpu"} <= set(services)
    for name in ("postgres", "redis", "web"):
        assert "healthcheck" in services[name], name
    assert services["postgres"]["volumes"] and services["redis"]["volumes"]
    assert "gunicorn webapp.wsgi" in " ".join(services["web"]["command"])


def test_the_gpu_worker_reserves_one_nvidia_gpu_and_runs_one_task_at_a_time():
    gpu = _compose()["services"]["worker-gpu"]

    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and devices[0]["count"] == 1 and "gpu" in devices[0]["capabilities"]
    command = gpu["command"]
    assert command[command.index("-Q") + 1] == "gpu"
    assert command[command.index("--concurrency") + 1] == "1"


def test_secrets_come_from_the_environment():
    text = (ROOT / "docker-compose.yml").read_text()

    assert "${DJANGO_SECRET_KEY:?" in text, "the secret key is required from the environment, never written in"
    assert "DJANGO_DEBUG: \"0\"" in text


def test_the_image_does_not_run_as_root():
    dockerfile = (ROOT / "Dockerfile").read_text()

    users = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")


def test_a_multi_gpu_worker_takes_runs_of_up_to_as_many_gpus_as_it_reserves():
    multi = _compose()["services"]["worker-gpu-multi"]

    count = multi["deploy"]["resources"]["reservations"]["devices"][0]["count"]
    queues = multi["command"][multi["command"].index("-Q") + 1].split(",")
    assert queues == ["gpu"] + [f"gpu{n}" for n in range(2, count + 1)]
    assert multi["profiles"] == ["multi-gpu"]


def test_the_gpu_image_installs_bitsandbytes_for_qlora():
    dockerfile = (ROOT / "Dockerfile").read_text()

    assert "pip install -r requirements-gpu.txt" in dockerfile and "ARG GPU_EXTRAS=1" in dockerfile
    assert "bitsandbytes==" in (ROOT / "requirements-gpu.txt").read_text()


def test_vllm_is_an_optional_extra_of_the_image_off_by_default():
    dockerfile = (ROOT / "Dockerfile").read_text()
    build_args = _compose()["x-app-build"]["args"]

    assert "ARG VLLM=0" in dockerfile
    assert 'if [ "$VLLM" = "1" ]; then pip install -r requirements-vllm.txt; fi' in dockerfile
    assert "requirements-vllm.txt" in next(line for line in dockerfile.splitlines() if line.startswith("COPY requirements"))
    assert build_args["VLLM"] == "${PREFTUNE_VLLM:-0}"
    assert "vllm==" in (ROOT / "requirements-vllm.txt").read_text()
    assert "vllm" not in (ROOT / "requirements.txt").read_text().lower(), "CI and the web process never need it"


def test_every_app_container_reads_the_generation_backend_auto_by_default():
    compose = _compose()

    assert compose["x-app-environment"]["PREFTUNE_GENERATION_BACKEND"] == "${PREFTUNE_GENERATION_BACKEND:-auto}"
    for name in ("web", "worker", "worker-gpu", "worker-gpu-multi", "beat"):
        assert compose["services"][name]["environment"]["PREFTUNE_GENERATION_BACKEND"], name
