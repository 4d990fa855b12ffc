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
