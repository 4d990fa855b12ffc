"""The vector store: one contract, an embedded engine (Qdrant Edge) and a Qdrant server."""

from __future__ import annotations

from core.settings import Settings, get_settings
from core.store.base import (
    CollectionMissingError,
    StoreBusyError,
    StoreError,
    StoreUnavailableError,
    TransientStoreError,
    VectorStore,
)

__all__ = [
    "CollectionMissingError",
    "StoreBusyError",
    "StoreError",
    "StoreUnavailableError",
    "TransientStoreError",
    "VectorStore",
    "get_store",
]


def get_store(settings: Settings | None = None) -> VectorStore:
    """The configured store: the Qdrant server at OCTAVIUS_QDRANT_URL, else the embedded one."""
    settings = settings or get_settings()
    if settings.qdrant_url:
        from core.store.server import ServerStore

        return ServerStore.from_settings(settings)
    from core.store.edge import EdgeStore

    return EdgeStore.from_settings(settings)
