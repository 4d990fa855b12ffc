"""The embedded store: a Qdrant Edge shard under OCTAVIUS_HOME, shared by several processes.

An Edge shard can be open in one process at a time, so no process keeps it open: every public
method takes the cross-process lock, loads the shard, does its work, flushes, closes and lets
go. Writes go in bounded batches, one lock hold each, so searches run between them. The
shard's write-ahead log makes a crash mid-batch lose at most that batch, never the shard.

Layout of the store directory: one shard directory per collection version ("octavius_v1"),
"aliases.json" mapping each alias to its version ("octavius__building" names the version a
reindex is building, which every write is mirrored to), "versions.json" with each version's
owner and creation and retirement times, and the two lock files.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from core.models import ChunkPayload, Point, SearchHit, SparseVector, StoredDocument
from core.settings import Settings
from core.store.base import (
    DENSE,
    DOCUMENT_FIELDS,
    INTEGER_FIELDS,
    KEYWORD_FIELDS,
    SCROLL_PAGE,
    SPARSE,
    CollectionMissingError,
    CollectionVersion,
    StoreError,
    StoreUnavailableError,
    batched,
    building_alias,
    documents_from,
    hit_from,
    payload_of,
    physical_name,
    version_number,
)
from core.store.lock import StoreLock

logger = logging.getLogger(__name__)

ALIASES_FILE = "aliases.json"
VERSIONS_FILE = "versions.json"


def _match(key: str, value: str | int) -> qe.FieldCondition:
    """A payload condition `key == value`."""
    return qe.FieldCondition(key, match=qe.MatchValue(value))


def _tenant_filter(tenant: str, doc_ids: Sequence[str] | None = None) -> qe.Filter:
    """The filter every read and delete carries: the tenant, optionally some documents."""
    must: list[Any] = [_match("tenant", tenant)]
    if doc_ids is not None:
        must.append(qe.FieldCondition("doc_id", match=qe.MatchAny(list(doc_ids))))
    return qe.Filter(must=must)


def _edge_point(point: Point) -> qe.Point:
    """An Edge point from a model point."""
    sparse = qe.SparseVector(point.sparse.indices, point.sparse.values)
    return qe.Point(point.id, {DENSE: point.dense, SPARSE: sparse}, payload_of(point))


class EdgeStore:
    """The `VectorStore` of the embedded stack, safe to use from several processes."""

    def __init__(
        self,
        directory: Path,
        alias: str,
        *,
        lock_timeout_s: float,
        batch_size: int,
        pinned: str | None = None,
    ) -> None:
        """A store in `directory` whose collection is named `alias` (or one pinned version)."""
        self.directory = directory
        self.alias = alias
        self.batch_size = batch_size
        self.pinned = pinned
        self.lock_timeout_s = lock_timeout_s
        self._lock = StoreLock(directory, lock_timeout_s)

    @classmethod
    def from_settings(cls, settings: Settings) -> EdgeStore:
        """The store under `settings.store_dir`."""
        return cls(
            settings.store_dir,
            settings.collection,
            lock_timeout_s=settings.store_lock_timeout_s,
            batch_size=settings.upsert_batch_size,
        )

    def _read_json(self, name: str) -> dict[str, Any]:
        """A JSON map of the store directory (empty when the file does not exist)."""
        path = self.directory / name
        if not path.exists():
            return {}
        found: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return found

    def _write_json(self, name: str, data: dict[str, Any]) -> None:
        """Replace a JSON map of the store directory atomically (temp file, fsync, rename)."""
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{name}-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                json.dump(data, file, indent=2, sort_keys=True)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, self.directory / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _aliases(self) -> dict[str, str]:
        """The alias map on disk (empty before the first collection)."""
        return self._read_json(ALIASES_FILE)

    def _write_aliases(self, aliases: dict[str, str]) -> None:
        """Replace the alias map atomically."""
        self._write_json(ALIASES_FILE, aliases)

    def _existing(self, physical: str | None) -> Path | None:
        """The directory of a physical version, if it exists."""
        if physical is None or not (self.directory / physical).is_dir():
            return None
        return self.directory / physical

    def _shard_path(self) -> Path | None:
        """The directory of the shard the alias (or the pinned version) points to."""
        if self.pinned is not None:
            return self._existing(self.pinned)
        return self._existing(self._aliases().get(self.alias))

    def _write_paths(self) -> list[Path]:
        """Where a write goes: the live shard first, then the one a reindex is building."""
        live = self._shard_path()
        if live is None:
            return []
        if self.pinned is not None:
            return [live]
        building = self._existing(self._aliases().get(building_alias(self.alias)))
        return [live] if building is None or building == live else [live, building]

    @contextmanager
    def _open(self, *, write: bool) -> Iterator[qe.EdgeShard | None]:
        """Lock, load the shard (None if there is none yet), and flush and close it after."""
        with self._lock.hold():
            path = self._shard_path()
            if path is None:
                yield None
                return
            shard = qe.EdgeShard.load(str(path))
            try:
                yield shard
                if write:
                    shard.flush()
            finally:
                shard.close()

    @contextmanager
    def _open_writes(self) -> Iterator[list[qe.EdgeShard]]:
        """Lock and load every shard a write goes to, and flush and close them after."""
        with self._lock.hold(), ExitStack() as stack:
            shards: list[qe.EdgeShard] = []
            for path in self._write_paths():
                shard = qe.EdgeShard.load(str(path))
                stack.callback(shard.close)
                shards.append(shard)
            yield shards
            for shard in shards:
                shard.flush()

    @staticmethod
    def _config(dense_dim: int) -> qe.EdgeConfig:
        """The shard configuration: cosine "dense" and IDF-weighted "sparse" vectors."""
        return qe.EdgeConfig(
            vectors={DENSE: qe.EdgeVectorParams(size=dense_dim, distance=qe.Distance.Cosine)},
            sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
        )

    def ensure_collection(self, dense_dim: int) -> None:
        """Create the shard and point the alias at it, unless the alias already resolves."""
        config = self._config(dense_dim)
        with self._lock.hold():
            existing = self._shard_path()
            if existing is not None:
                try:
                    qe.EdgeShard.load(str(existing), config).close()
                except Exception as exc:
                    raise StoreError(f"collection {self.alias} does not fit: {exc}") from exc
                return
            physical = physical_name(self.alias)
            self._create_shard(self.directory / physical, config)
            self._write_aliases({**self._aliases(), self.alias: physical})
            logger.info("created embedded collection %s -> %s", self.alias, physical)

    @staticmethod
    def _create_shard(path: Path, config: qe.EdgeConfig) -> None:
        """Create (or reuse, after a crash) a shard with the payload indexes."""
        segments = path / "segments"
        # A shard left by a crash before the alias was written is reused, not recreated.
        if segments.is_dir() and any(segments.iterdir()):
            shard = qe.EdgeShard.load(str(path), config)
        else:
            shard = qe.EdgeShard.create(str(path), config)
        try:
            for field in KEYWORD_FIELDS:
                params = qe.KeywordIndexParams(is_tenant=field == "tenant")
                shard.update(qe.UpdateOperation.create_field_index(field, params))
            for field in INTEGER_FIELDS:
                int_params = qe.IntegerIndexParams(lookup=True, range=True)
                shard.update(qe.UpdateOperation.create_field_index(field, int_params))
            shard.flush()
        finally:
            shard.close()

    def upsert(self, points: Sequence[Point]) -> None:
        """Write points one batch per lock hold, so searches interleave with a long write."""
        for batch in batched(points, self.batch_size):
            operation = qe.UpdateOperation.upsert_points([_edge_point(p) for p in batch])
            with self._open_writes() as shards:
                if not shards:
                    raise CollectionMissingError(f"collection {self.alias} does not exist")
                for shard in shards:
                    shard.update(operation)

    def _scroll(
        self, shard: qe.EdgeShard, filter_: qe.Filter, with_payload: Any
    ) -> Iterator[qe.Record]:
        """Every record matching a filter, page by page."""
        offset: Any = None
        while True:
            request = qe.ScrollRequest(
                offset=offset, limit=SCROLL_PAGE, filter=filter_, with_payload=with_payload
            )
            records, offset = shard.scroll(request)
            yield from records
            if offset is None:
                return

    def documents(self, tenant: str) -> dict[str, StoredDocument]:
        """The tenant's indexed documents by doc_id, read from their first chunks."""
        filter_ = qe.Filter(must=[_match("tenant", tenant), _match("chunk_index", 0)])
        with self._open(write=False) as shard:
            if shard is None:
                return {}
            selector = qe.PayloadSelector.Include(DOCUMENT_FIELDS)
            payloads = [record.payload or {} for record in self._scroll(shard, filter_, selector)]
        return documents_from(payloads)

    def _delete(self, filter_: qe.Filter) -> None:
        """Delete the points matching a filter (nothing to do before the first collection)."""
        with self._open_writes() as shards:
            for shard in shards:
                shard.update(qe.UpdateOperation.delete_points_by_filter(filter_))

    def delete_stale_chunks(self, tenant: str, doc_id: str, keep_version: str) -> None:
        """Delete the document's points whose version is not `keep_version`."""
        filter_ = _tenant_filter(tenant, [doc_id])
        self._delete(qe.Filter(must=filter_.must, must_not=[_match("version", keep_version)]))

    def delete_documents(self, tenant: str, doc_ids: Sequence[str]) -> None:
        """Delete every point of the given documents of a tenant."""
        if doc_ids:
            self._delete(_tenant_filter(tenant, doc_ids))

    def _query(self, request: qe.QueryRequest) -> list[SearchHit]:
        """Run one query and turn its points into hits."""
        with self._open(write=False) as shard:
            if shard is None:
                return []
            points = shard.query(request)
        return [hit_from(p.id, p.score, p.payload or {}) for p in points]

    def search_dense(
        self,
        vector: Sequence[float],
        *,
        tenant: str,
        k: int,
        doc_ids: Sequence[str] | None = None,
    ) -> list[SearchHit]:
        """The tenant's `k` chunks nearest to a dense vector, best first."""
        query = qe.Query.Nearest(list(vector), using=DENSE)
        filter_ = _tenant_filter(tenant, doc_ids)
        return self._query(qe.QueryRequest(limit=k, query=query, filter=filter_, with_payload=True))

    def search_sparse(
        self,
        vector: SparseVector,
        *,
        tenant: str,
        k: int,
        doc_ids: Sequence[str] | None = None,
    ) -> list[SearchHit]:
        """The tenant's `k` best BM25 matches, with IDF computed over that tenant only."""
        if not vector.indices:
            return []
        query = qe.Query.Nearest(qe.SparseVector(vector.indices, vector.values), using=SPARSE)
        params = qe.SearchParams(idf=qe.IdfParams(corpus=_tenant_filter(tenant)))
        filter_ = _tenant_filter(tenant, doc_ids)
        return self._query(
            qe.QueryRequest(limit=k, query=query, filter=filter_, with_payload=True, params=params)
        )

    def scroll(
        self, tenant: str, doc_ids: Sequence[str] | None = None
    ) -> list[tuple[str, ChunkPayload]]:
        """Every point id and payload of a tenant, optionally of some documents only."""
        with self._open(write=False) as shard:
            if shard is None:
                return []
            records = list(self._scroll(shard, _tenant_filter(tenant, doc_ids), True))
        return [(str(r.id), ChunkPayload.model_validate(r.payload)) for r in records]

    def tenants(self) -> list[str]:
        """Every tenant with at least one indexed document, sorted."""
        filter_ = qe.Filter(must=[_match("chunk_index", 0)])
        selector = qe.PayloadSelector.Include(["tenant"])
        with self._open(write=False) as shard:
            if shard is None:
                return []
            found = {
                str((r.payload or {})["tenant"]) for r in self._scroll(shard, filter_, selector)
            }
        return sorted(found)

    def _versions(self) -> list[CollectionVersion]:
        """Every physical version on disk, read while the lock is held."""
        aliases = self._aliases()
        meta = self._read_json(VERSIONS_FILE)
        found = []
        for path in self.directory.iterdir() if self.directory.is_dir() else []:
            number = version_number(self.alias, path.name)
            if number is None or not path.is_dir():
                continue
            info = meta.get(path.name, {})
            found.append(
                CollectionVersion(
                    name=path.name,
                    number=number,
                    live=aliases.get(self.alias) == path.name,
                    building=aliases.get(building_alias(self.alias)) == path.name,
                    owner=info.get("owner"),
                    created_at=info.get("created_at"),
                    retired_at=info.get("retired_at"),
                )
            )
        return sorted(found, key=lambda v: v.number)

    def versions(self) -> list[CollectionVersion]:
        """Every physical version of the collection, oldest first."""
        with self._lock.hold():
            return self._versions()

    def create_version(self, dense_dim: int, owner: str | None = None) -> CollectionVersion:
        """Create the next shard, empty, and name it with the building alias."""
        with self._lock.hold():
            meta = self._read_json(VERSIONS_FILE)
            known = [v.number for v in self._versions()]
            known += [n for n in (version_number(self.alias, m) for m in meta) if n is not None]
            number = max(known, default=0) + 1
            name = physical_name(self.alias, number)
            self._create_shard(self.directory / name, self._config(dense_dim))
            meta[name] = {"owner": owner, "created_at": datetime.now(UTC).isoformat()}
            self._write_json(VERSIONS_FILE, meta)
            self._write_aliases({**self._aliases(), building_alias(self.alias): name})
            logger.info("building embedded collection version %s", name)
            return next(v for v in self._versions() if v.name == name)

    def at(self, version: str) -> EdgeStore:
        """A store bound to one shard (no alias, no mirrored writes)."""
        return EdgeStore(
            self.directory,
            self.alias,
            lock_timeout_s=self.lock_timeout_s,
            batch_size=self.batch_size,
            pinned=version,
        )

    def activate(self, version: str) -> None:
        """Point the alias at `version` in one atomic file replace; retire the previous one."""
        with self._lock.hold():
            if self._existing(version) is None or version_number(self.alias, version) is None:
                raise StoreError(f"no collection version {version}")
            aliases = self._aliases()
            previous = aliases.get(self.alias)
            meta = self._read_json(VERSIONS_FILE)
            if previous is not None and previous != version:
                meta.setdefault(previous, {})["retired_at"] = datetime.now(UTC).isoformat()
            meta.setdefault(version, {})["retired_at"] = None
            self._write_json(VERSIONS_FILE, meta)
            aliases[self.alias] = version
            if aliases.get(building_alias(self.alias)) == version:
                del aliases[building_alias(self.alias)]
            self._write_aliases(aliases)
            logger.info("alias %s now points to %s (was %s)", self.alias, version, previous)

    def drop_version(self, version: str) -> None:
        """Delete a shard the alias does not point to (also one being built)."""
        with self._lock.hold():
            aliases = self._aliases()
            if aliases.get(self.alias) == version:
                raise StoreError(f"{version} is the live version of {self.alias}")
            if version_number(self.alias, version) is None:
                raise StoreError(f"{version} is not a version of {self.alias}")
            if aliases.get(building_alias(self.alias)) == version:
                del aliases[building_alias(self.alias)]
                self._write_aliases(aliases)
            shutil.rmtree(self.directory / version, ignore_errors=True)
            meta = self._read_json(VERSIONS_FILE)
            if meta.pop(version, None) is not None:
                self._write_json(VERSIONS_FILE, meta)
            logger.info("dropped collection version %s", version)

    def count(self, tenant: str | None = None) -> int:
        """The number of points of a tenant, or of the whole collection."""
        filter_ = None if tenant is None else _tenant_filter(tenant)
        with self._open(write=False) as shard:
            if shard is None:
                return 0
            return shard.count(qe.CountRequest(exact=True, filter=filter_))

    def ping(self) -> None:
        """Check that the lock can be taken and the shard (if any) loads."""
        try:
            with self._open(write=False) as shard:
                if shard is not None:
                    shard.info()
        except Exception as exc:
            raise StoreUnavailableError(f"embedded vector store unusable: {exc}") from exc

    def close(self) -> None:
        """Nothing to release: the shard is never left open between calls."""
