"""The docker-compose deployment and the images, checked statically (no Docker engine runs here): the compose
file against the compose-spec JSON schema, the Dockerfiles with hadolint, and the promises of the design."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from m4t.serve import WORKER_MALLOC_ENV

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_compose_file_matches_the_compose_spec_schema() -> None:
    done = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(ROOT / "docker-compose.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfiles_pass_hadolint() -> None:
    dockerfiles = sorted((ROOT / "deploy").glob("*.Dockerfile"))
    assert len(dockerfiles) == 2
    done = subprocess.run([str(BIN / "hadolint"), *map(str, dockerfiles)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_gateway_image_has_no_torch_and_worker_image_does() -> None:
    def installs(name: str) -> str:
        lines = (ROOT / "deploy" / name).read_text().splitlines()
        return "\n".join(line for line in lines if "pip install" in line)

    assert "torch" not in installs("gateway.Dockerfile")
    assert "[worker]" not in installs("gateway.Dockerfile")
    assert "TORCH_SPEC" in installs("worker.Dockerfile")
    assert '".[worker]"' in installs("worker.Dockerfile")
    worker_image = (ROOT / "deploy" / "worker.Dockerfile").read_text()
    for key, value in WORKER_MALLOC_ENV.items():  # what `m4t serve` gives its workers, the image gives them too
        assert re.search(rf"^\s*{key}={value}\b", worker_image, re.M), key


def test_services_and_start_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"redis", "minio", "minio-init", "gateway", "worker-gpu0", "flower"} <= set(services)
    assert "--appendonly" in services["redis"]["command"]
    for name in ("redis", "minio"):
        assert "healthcheck" in services[name]
    gateway_deps = services["gateway"]["depends_on"]
    assert gateway_deps["redis"]["condition"] == "service_healthy"
    assert gateway_deps["minio-init"]["condition"] == "service_completed_successfully"
    assert services["worker-gpu0"]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_one_worker_service_per_gpu(compose: dict[str, Any]) -> None:
    workers = {name: svc for name, svc in compose["services"].items() if name.startswith("worker-gpu")}
    assert len(workers) >= 2
    seen: set[str] = set()
    for service in workers.values():
        devices = service["deploy"]["resources"]["reservations"]["devices"]
        assert len(devices) == 1
        assert devices[0]["driver"] == "nvidia"
        assert devices[0]["capabilities"] == ["gpu"]
        (device_id,) = devices[0]["device_ids"]
        assert device_id not in seen
        seen.add(device_id)
        assert "model-cache:/models" in service["volumes"]
        assert service["environment"]["M4T_STORAGE_URL"].startswith("s3://")


def test_flower_requires_auth_and_is_not_published(compose: dict[str, Any]) -> None:
    flower = compose["services"]["flower"]
    assert any(arg.startswith("--basic-auth=") for arg in flower["command"])
    assert "ports" not in flower


def test_auth_is_on_and_secrets_come_from_the_environment(compose: dict[str, Any]) -> None:
    for name in ("gateway", "webhooks", "worker-gpu0"):
        environment = compose["services"][name]["environment"]
        assert environment["M4T_AUTH"] == "on"
        assert environment["M4T_S3_SECRET_KEY"].startswith("${")
        assert environment["M4T_WEBHOOK_SECRETS"].startswith("${")
