"""The scale-out store: a Qdrant server (or cluster) reached with qdrant-client.

The collection is a versioned physical collection ("octavius_v1") behind a real alias, so a
reindex can build the next version and swap the alias. Every call is retried on transient
failures; writes use explicit point ids, so a retried upsert overwrites and never duplicates.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

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
    TransientStoreError,
    batched,
    building_alias,
    documents_from,
    hit_from,
    payload_of,
    physical_name,
    version_number,
)
from core.store.retry import call_with_retry, is_transient

logger = logging.getLogger(__name__)

T = TypeVar("T")

WRITE_ATTEMPTS = 5
READ_ATTEMPTS = 3


def _match(key: str, value: str | int) -> models.FieldCondition:
    """A payload condition `key == value`."""
    return models.FieldCondition(key=key, match=models.MatchValue(value=value))


def _tenant_filter(tenant: str, doc_ids: Sequence[str] | None = None) -> models.Filter:
    """The filter every read and delete carries: the tenant, optionally some documents."""
    must: list[models.Condition] = [_match("tenant", tenant)]
    if doc_ids is not None:
        must.append(models.FieldCondition(key="doc_id", match=models.MatchAny(any=list(doc_ids))))
    return models.Filter(must=must)


def _point_struct(point: Point) -> models.PointStruct:
    """A qdrant-client point from a model point."""
    sparse = models.SparseVector(indices=point.sparse.indices, values=point.sparse.values)
    return models.PointStruct(
        id=point.id, vector={DENSE: point.dense, SPARSE: sparse}, payload=payload_of(point)
    )


def _is_missing(exc: Exception) -> bool:
    """Whether an error says the collection does not exist (server 404, or local mode)."""
    if isinstance(exc, UnexpectedResponse):
        return exc.status_code == 404
    return isinstance(exc, ValueError) and "not found" in str(exc)


def _retrying(call: Callable[[], T], what: str, attempts: int = WRITE_ATTEMPTS) -> T:
    """The result of a server call, retried; still failing transiently, a TransientStoreError."""
    try:
        return call_with_retry(call, what=what, attempts=attempts)
    except Exception as exc:
        if is_transient(exc):
            raise TransientStoreError(f"Qdrant {what} kept failing: {exc}") from exc
        raise


class ServerStore:
    """The `VectorStore` over a Qdrant server, through qdrant-client."""

    def __init__(
        self, client: QdrantClient, alias: str, *, batch_size: int, pinned: str | None = None
    ) -> None:
        """A store over `client` whose collection is named `alias` (or one pinned version)."""
        self.client = client
        self.alias = alias
        self.batch_size = batch_size
        self.pinned = pinned
        self._name = pinned or alias

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerStore:
        """The store at `settings.qdrant_url`."""
        api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        client = QdrantClient(
            url=settings.qdrant_url,
            api_key=api_key,
            timeout=math.ceil(settings.qdrant_timeout_s),
        )
        return cls(client, settings.collection, batch_size=settings.upsert_batch_size)

    def _read(self, call: Callable[[], T], what: str, empty: T) -> T:
        """The result of a read, or `empty` when the collection does not exist yet."""
        try:
            return _retrying(call, what, READ_ATTEMPTS)
        except Exception as exc:
            if _is_missing(exc):
                return empty
            raise

    def _write(self, call: Callable[[], Any], what: str) -> None:
        """Run a write with retries; a missing collection is an error."""
        try:
            _retrying(call, what)
        except Exception as exc:
            if _is_missing(exc):
                raise CollectionMissingError(f"collection {self.alias} does not exist") from exc
            raise

    def _aliases(self) -> dict[str, str]:
        """Every alias of the server and the collection it points to."""
        aliases = _retrying(self.client.get_aliases, "get aliases").aliases
        return {a.alias_name: a.collection_name for a in aliases}

    def _alias_target(self) -> str | None:
        """The physical collection the alias points to, if the alias exists."""
        return self._aliases().get(self.alias)

    def _write_targets(self) -> list[str]:
        """Where a write goes: the live collection first, then the one a reindex is building."""
        if self.pinned is not None:
            return [self.pinned]
        aliases = self._aliases()
        building = aliases.get(building_alias(self.alias))
        if building is None or building == aliases.get(self.alias):
            return [self.alias]
        return [self.alias, building]

    def _dense_size(self, collection: str) -> int | None:
        """The dense vector size of a collection."""
        info = _retrying(lambda: self.client.get_collection(collection), "get collection")
        vectors = info.config.params.vectors
        params = vectors.get(DENSE) if isinstance(vectors, dict) else None
        return params.size if params is not None else None

    def ensure_collection(self, dense_dim: int) -> None:
        """Create the versioned collection, its indexes and its alias, unless they exist."""
        target = self._alias_target()
        if target is not None:
            size = self._dense_size(target)
            if size != dense_dim:
                raise StoreError(f"collection {target} has dense size {size}, not {dense_dim}")
            return
        physical = physical_name(self.alias)
        self._create_physical(physical, dense_dim, None)
        operation = models.CreateAliasOperation(
            create_alias=models.CreateAlias(collection_name=physical, alias_name=self.alias)
        )
        _retrying(lambda: self.client.update_collection_aliases([operation]), "create alias")
        logger.info("created Qdrant collection %s -> %s", self.alias, physical)

    def _create_physical(
        self, physical: str, dense_dim: int, metadata: dict[str, Any] | None
    ) -> None:
        """Create a physical collection with its payload indexes, unless it exists."""
        if not _retrying(lambda: self.client.collection_exists(physical), "collection exists"):
            try:
                _retrying(
                    lambda: self.client.create_collection(
                        physical,
                        vectors_config={
                            DENSE: models.VectorParams(
                                size=dense_dim, distance=models.Distance.COSINE
                            )
                        },
                        sparse_vectors_config={
                            SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)
                        },
                        metadata=metadata,
                    ),
                    "create collection",
                )
            except UnexpectedResponse as exc:
                # Another process (or our own timed-out first attempt) created it meanwhile.
                if exc.status_code != 409:
                    raise
        for field in KEYWORD_FIELDS:
            schema = models.KeywordIndexParams(
                type=models.KeywordIndexType.KEYWORD, is_tenant=field == "tenant"
            )
            self._create_index(physical, field, schema)
        for field in INTEGER_FIELDS:
            schema_int = models.IntegerIndexParams(
                type=models.IntegerIndexType.INTEGER, lookup=True, range=True
            )
            self._create_index(physical, field, schema_int)

    def _create_index(
        self, collection: str, field: str, schema: models.PayloadSchemaParams
    ) -> None:
        """Create one payload index (idempotent on the server)."""
        _retrying(
            lambda: self.client.create_payload_index(
                collection, field_name=field, field_schema=schema, wait=True
            ),
            f"index {field}",
        )

    def upsert(self, points: Sequence[Point]) -> None:
        """Write points in bounded batches, each retried on transient failures."""
        for batch in batched(points, self.batch_size):
            structs = [_point_struct(point) for point in batch]
            live, *building = self._write_targets()
            self._write(partial(self.client.upsert, live, points=structs, wait=True), "upsert")
            for target in building:
                self._mirror(partial(self.client.upsert, target, points=structs, wait=True))

    def _scroll(self, filter_: models.Filter, with_payload: Any) -> list[models.Record]:
        """Every record matching a filter, page by page."""
        records: list[models.Record] = []
        offset: models.ExtendedPointId | None = None
        empty: tuple[list[models.Record], models.ExtendedPointId | None] = ([], None)
        while True:
            call = partial(
                self.client.scroll,
                self._name,
                scroll_filter=filter_,
                limit=SCROLL_PAGE,
                offset=offset,
                with_payload=with_payload,
            )
            page, offset = self._read(call, "scroll", empty)
            records.extend(page)
            if offset is None:
                return records

    def documents(self, tenant: str) -> dict[str, StoredDocument]:
        """The tenant's indexed documents by doc_id, read from their first chunks."""
        filter_ = models.Filter(must=[_match("tenant", tenant), _match("chunk_index", 0)])
        records = self._scroll(filter_, DOCUMENT_FIELDS)
        return documents_from([record.payload or {} for record in records])

    def _delete(self, filter_: models.Filter) -> None:
        """Delete the points matching a filter (nothing to do without a collection)."""
        selector = models.FilterSelector(filter=filter_)
        live, *building = self._write_targets()
        try:
            self._write(
                partial(self.client.delete, live, points_selector=selector, wait=True), "delete"
            )
        except CollectionMissingError:
            return
        for target in building:
            self._mirror(partial(self.client.delete, target, points_selector=selector, wait=True))

    def _mirror(self, call: Callable[[], Any]) -> None:
        """Repeat a write on the version a reindex builds; it may have been dropped meanwhile."""
        try:
            self._write(call, "mirrored write")
        except CollectionMissingError:
            logger.info("the version being built was dropped; write not mirrored")

    def delete_stale_chunks(self, tenant: str, doc_id: str, keep_version: str) -> None:
        """Delete the document's points whose version is not `keep_version`."""
        filter_ = _tenant_filter(tenant, [doc_id])
        filter_.must_not = [_match("version", keep_version)]
        self._delete(filter_)

    def delete_documents(self, tenant: str, doc_ids: Sequence[str]) -> None:
        """Delete every point of the given documents of a tenant."""
        if doc_ids:
            self._delete(_tenant_filter(tenant, doc_ids))

    def _query(self, what: str, **kwargs: Any) -> list[SearchHit]:
        """Run one query and turn its points into hits."""
        empty: list[models.ScoredPoint] = []
        points = self._read(
            lambda: self.client.query_points(self._name, with_payload=True, **kwargs).points,
            what,
            empty,
        )
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
        return self._query(
            "dense search",
            query=list(vector),
            using=DENSE,
            query_filter=_tenant_filter(tenant, doc_ids),
            limit=k,
        )

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
        idf = models.IdfCorpusParams(corpus=_tenant_filter(tenant))
        return self._query(
            "sparse search",
            query=models.SparseVector(indices=vector.indices, values=vector.values),
            using=SPARSE,
            query_filter=_tenant_filter(tenant, doc_ids),
            search_params=models.SearchParams(idf=idf),
            limit=k,
        )

    def scroll(
        self, tenant: str, doc_ids: Sequence[str] | None = None
    ) -> list[tuple[str, ChunkPayload]]:
        """Every point id and payload of a tenant, optionally of some documents only."""
        records = self._scroll(_tenant_filter(tenant, doc_ids), True)
        return [(str(r.id), ChunkPayload.model_validate(r.payload)) for r in records]

    def tenants(self) -> list[str]:
        """Every tenant with at least one indexed document, sorted."""
        records = self._scroll(models.Filter(must=[_match("chunk_index", 0)]), ["tenant"])
        return sorted({str((r.payload or {})["tenant"]) for r in records})

    def versions(self) -> list[CollectionVersion]:
        """Every physical collection of the alias, oldest first, with its role and metadata."""
        aliases = self._aliases()
        collections = _retrying(self.client.get_collections, "list collections").collections
        found = []
        for collection in collections:
            number = version_number(self.alias, collection.name)
            if number is None:
                continue
            info = _retrying(partial(self.client.get_collection, collection.name), "get collection")
            meta = info.config.metadata or {}
            found.append(
                CollectionVersion(
                    name=collection.name,
                    number=number,
                    live=aliases.get(self.alias) == collection.name,
                    building=aliases.get(building_alias(self.alias)) == collection.name,
                    owner=meta.get("owner"),
                    created_at=meta.get("created_at"),
                    retired_at=meta.get("retired_at"),
                )
            )
        return sorted(found, key=lambda v: v.number)

    def create_version(self, dense_dim: int, owner: str | None = None) -> CollectionVersion:
        """Create the next collection, empty, and point the building alias at it."""
        number = max((v.number for v in self.versions()), default=0) + 1
        name = physical_name(self.alias, number)
        created = datetime.now(UTC).isoformat()
        self._create_physical(name, dense_dim, {"owner": owner, "created_at": created})
        building = building_alias(self.alias)
        operations: list[models.AliasOperations] = []
        if building in self._aliases():
            operations.append(
                models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=building))
            )
        operations.append(
            models.CreateAliasOperation(
                create_alias=models.CreateAlias(collection_name=name, alias_name=building)
            )
        )
        _retrying(lambda: self.client.update_collection_aliases(operations), "building alias")
        logger.info("building Qdrant collection version %s", name)
        return next(v for v in self.versions() if v.name == name)

    def at(self, version: str) -> ServerStore:
        """A store bound to one physical collection (no alias, no mirrored writes)."""
        return ServerStore(self.client, self.alias, batch_size=self.batch_size, pinned=version)

    def _set_metadata(self, collection: str, metadata: dict[str, Any]) -> None:
        """Merge keys into a collection's metadata."""
        _retrying(lambda: self.client.update_collection(collection, metadata=metadata), "metadata")

    def activate(self, version: str) -> None:
        """Swap the alias to `version` in one atomic alias request; retire the previous one."""
        if version_number(self.alias, version) is None or not _retrying(
            lambda: self.client.collection_exists(version), "collection exists"
        ):
            raise StoreError(f"no collection version {version}")
        aliases = self._aliases()
        previous = aliases.get(self.alias)
        # Retirement is stamped first: a stamp on the live version means nothing, a missing
        # one would keep an old version forever.
        if previous is not None and previous != version:
            self._set_metadata(previous, {"retired_at": datetime.now(UTC).isoformat()})
        self._set_metadata(version, {"retired_at": None})
        operations: list[models.AliasOperations] = []
        if previous is not None:
            operations.append(
                models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=self.alias))
            )
        operations.append(
            models.CreateAliasOperation(
                create_alias=models.CreateAlias(collection_name=version, alias_name=self.alias)
            )
        )
        building = building_alias(self.alias)
        if aliases.get(building) == version:
            operations.append(
                models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=building))
            )
        _retrying(lambda: self.client.update_collection_aliases(operations), "swap alias")
        logger.info("alias %s now points to %s (was %s)", self.alias, version, previous)

    def drop_version(self, version: str) -> None:
        """Delete a physical collection the alias does not point to (also one being built)."""
        aliases = self._aliases()
        if aliases.get(self.alias) == version:
            raise StoreError(f"{version} is the live version of {self.alias}")
        if version_number(self.alias, version) is None:
            raise StoreError(f"{version} is not a version of {self.alias}")
        building = building_alias(self.alias)
        if aliases.get(building) == version:
            operation = models.DeleteAliasOperation(
                delete_alias=models.DeleteAlias(alias_name=building)
            )
            _retrying(lambda: self.client.update_collection_aliases([operation]), "drop alias")
        _retrying(lambda: self.client.delete_collection(version), "drop collection")
        logger.info("dropped collection version %s", version)

    def count(self, tenant: str | None = None) -> int:
        """The number of points of a tenant, or of the whole collection."""
        filter_ = None if tenant is None else _tenant_filter(tenant)
        result = self._read(
            lambda: self.client.count(self._name, count_filter=filter_, exact=True),
            "count",
            models.CountResult(count=0),
        )
        return result.count

    def ping(self) -> None:
        """Check that the server answers."""
        try:
            self.client.get_collections()
        except Exception as exc:
            raise StoreUnavailableError(f"Qdrant server unusable: {exc}") from exc

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()
