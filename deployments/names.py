"""Deployment names: the one place the API, CLI, serve() and tests read them from."""

from __future__ import annotations

from typing import Final

WORK_POOL: Final = "octavius"

INGEST_FLOW: Final = "ingest-documents"
INGEST_DEPLOYMENT: Final = "default"
INGEST: Final = f"{INGEST_FLOW}/{INGEST_DEPLOYMENT}"

PROGRESS_EVENT: Final = "octavius.progress"
