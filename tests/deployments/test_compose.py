"""deployments/compose.yaml and the Dockerfile cannot run here (no Docker engine): they must at
least name only what the code has, so they do not drift from it unnoticed."""

from __future__ import annotations

import importlib
import importlib.util
import re
import shlex
from pathlib import Path
from typing import Any

import prefect
import pytest
import yaml

from core.settings import Settings
from deployments.names import WORK_POOL

REPO = Path(__file__).resolve().parents[2]
DEPLOYMENTS = REPO / "deployments"
# The image's working directory (Dockerfile WORKDIR), where the repository is copied.
IMAGE_ROOT = "/app"


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOYMENTS / "compose.yaml").read_text())
    return loaded


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    return services


def _commands() -> list[tuple[str, list[str]]]:
    """Each service's command, split into arguments (a `sh -c` script into its commands)."""
    found = []
    for name, service in _services().items():
        command = service.get("command")
        if not command:
            continue
        words = shlex.split(command)
        if words[:2] == ["sh", "-c"]:
            found += [(name, shlex.split(part)) for part in words[2].split("&&")]
        else:
            found.append((name, words))
    return found


def test_compose_sets_only_settings_that_exist() -> None:
    known = {f"OCTAVIUS_{field.upper()}" for field in Settings.model_fields}
    # prefect.yaml's steps read a few more (OCTAVIUS_PROJECT_DIR).
    known |= set(re.findall(r"\$(OCTAVIUS_\w+)", (REPO / "prefect.yaml").read_text()))
    used = {
        variable
        for service in _services().values()
        for variable in (service.get("environment") or {})
        if variable.startswith("OCTAVIUS_")
    }
    assert used, "no service sets an OCTAVIUS_ variable"
    assert sorted(used - known) == []


def test_compose_commands_run_modules_and_pools_that_exist() -> None:
    checked = 0
    for service, words in _commands():
        if words[0] == "uvicorn":
            module, attribute = words[1].split(":")
            assert hasattr(importlib.import_module(module), attribute), (service, words)
            checked += 1
        if words[:2] == ["python", "-m"]:
            assert importlib.util.find_spec(words[2]) is not None, (service, words)
            checked += 1
        if "--pool" in words:
            assert words[words.index("--pool") + 1] == WORK_POOL, (service, words)
            checked += 1
        if words[:3] == ["prefect", "work-pool", "create"]:
            assert words[3] == WORK_POOL, (service, words)
    assert checked >= 3


def test_compose_files_inside_the_image_are_in_the_repository() -> None:
    paths = [
        value
        for service in _services().values()
        for value in (service.get("environment") or {}).values()
        if isinstance(value, str) and value.startswith(f"{IMAGE_ROOT}/")
    ]
    assert paths, "no service names a file of the image"
    for path in paths:
        assert (REPO / path.removeprefix(f"{IMAGE_ROOT}/")).exists(), path


def test_compose_prefect_server_image_is_the_client_version() -> None:
    image = _services()["prefect-server"]["image"]
    version = re.fullmatch(r"prefecthq/prefect:([\d.]+)-python3\.11", image)
    assert version is not None, image
    assert version.group(1) == prefect.__version__


@pytest.mark.parametrize("service", ["api", "prefect-worker", "dask-worker"])
def test_compose_scaled_services_have_replicas(service: str) -> None:
    assert _services()[service]["deploy"]["replicas"] >= 2


def test_dockerfile_copies_every_package_and_file_the_install_needs() -> None:
    dockerfile = (DEPLOYMENTS / "Dockerfile").read_text()
    assert f"WORKDIR {IMAGE_ROOT}" in dockerfile
    copied = {
        source
        for line in dockerfile.splitlines()
        if line.startswith("COPY ")
        for source in line.split()[1:-1]
    }
    packages = {"core", "tasks", "flows", "deployments", "api"}
    assert packages | {"pyproject.toml", "README.md", "prefect.yaml"} <= copied
    for source in copied:
        assert (REPO / source).exists(), source
    assert "torch==2.13.0" in dockerfile
