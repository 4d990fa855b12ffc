"""Test-session environment: isolated homes, offline model hub, one Prefect harness."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Set before anything imports prefect or transformers: both read the environment at import time.
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="octavius-tests-"))
os.environ["PREFECT_HOME"] = str(_SESSION_DIR / "prefect")
os.environ["PREFECT_LOCAL_STORAGE_PATH"] = str(_SESSION_DIR / "prefect-results")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_LOGGING_TO_API_BATCH_INTERVAL"] = "0.3"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["OCTAVIUS_HOME"] = str(_SESSION_DIR / "octavius")
for _name in list(os.environ):
    if _name.startswith("OCTAVIUS_") and _name != "OCTAVIUS_HOME":
        del os.environ[_name]
os.environ.pop("PREFECT_API_URL", None)


@pytest.fixture(scope="session")
def session_dir() -> Path:
    """Temporary folder shared by the whole test session."""
    return _SESSION_DIR


@pytest.fixture
def octavius_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh OCTAVIUS_HOME for one test, with the settings cache cleared around it."""
    from core.settings import get_settings

    home = tmp_path / "octavius"
    monkeypatch.setenv("OCTAVIUS_HOME", str(home))
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One real temporary Prefect server (with its own database) for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def dask_address(prefect_harness: None) -> Iterator[str]:
    """A real Dask LocalCluster of two single-thread worker processes, shared by the session."""
    from core.dask import local_cluster

    with local_cluster(2) as cluster:
        yield str(cluster.scheduler_address)


@pytest.fixture
def stack_env(octavius_home: Path, dask_address: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Harness, cluster and a fresh OCTAVIUS_HOME wired together for one flow test."""
    from core.settings import get_settings

    monkeypatch.setenv("OCTAVIUS_DASK_ADDRESS", dask_address)
    get_settings.cache_clear()
    return octavius_home
