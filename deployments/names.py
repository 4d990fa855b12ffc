"""Deployment names: the one place the API, CLI, serve() and tests read them from."""

from __future__ import annotations

from typing import Final

WORK_POOL: Final = "octavius"

INGEST_FLOW: Final = "ingest-documents"
INGEST_DEPLOYMENT: Final = "default"
INGEST: Final = f"{INGEST_FLOW}/{INGEST_DEPLOYMENT}"

AUDIT_FLOW: Final = "audit-document"
AUDIT_DEPLOYMENT: Final = "default"
AUDIT: Final = f"{AUDIT_FLOW}/{AUDIT_DEPLOYMENT}"

RESEARCH_FLOW: Final = "deep-research"
RESEARCH_DEPLOYMENT: Final = "default"
RESEARCH: Final = f"{RESEARCH_FLOW}/{RESEARCH_DEPLOYMENT}"

REINDEX_FLOW: Final = "reindex-collection"
REINDEX_DEPLOYMENT: Final = "nightly"
REINDEX: Final = f"{REINDEX_FLOW}/{REINDEX_DEPLOYMENT}"
REINDEX_CRON: Final = "30 2 * * *"

CLEANUP_FLOW: Final = "cleanup-resources"
CLEANUP_DEPLOYMENT: Final = "hourly"
CLEANUP: Final = f"{CLEANUP_FLOW}/{CLEANUP_DEPLOYMENT}"
CLEANUP_INTERVAL_S: Final = 3600

PROGRESS_EVENT: Final = "octavius.progress"

# Runs the API created ahead of demand (api/reservoir.py): Scheduled far ahead under this state
# name and tag until a task claims one; cleanup deletes those left over by a vanished API.
RESERVED_STATE: Final = "Reserved"
RESERVED_TAG: Final = "octavius:reserved"

# prometheus_client's folder for metrics that several processes of one API write (uvicorn
# --workers): set by octavius up when it runs more than one API worker.
MULTIPROCESS_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
