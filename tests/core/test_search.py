"""Tests of hybrid search and its reciprocal rank fusion, on both stores."""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from core.models import ChunkPayload, DocumentFormat, Language, Point, SearchHit
from core.search import fuse, fusion_weights, hybrid_search
from core.settings import Settings
from core.sparse import encode_document, encode_query
from core.store import VectorStore
from core.store.edge import EdgeStore
from core.store.server import ServerStore

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")

DIM = 384
ALIAS = "kb"

DOCS_ES = [
    "La configuración de la red se guarda en el archivo interfaces",
    "Para instalar paquetes se usa apt con permisos de administrador",
    "El cortafuegos filtra el tráfico de red entrante y saliente",
    "Las copias de seguridad se programan con cron cada noche",
    "El núcleo carga los módulos del sistema durante el arranque",
    "Los usuarios y grupos determinan los permisos de cada archivo",
]
DOCS_EN = [
    "The network configuration lives in the interfaces file",
    "Install packages with apt as the administrator",
    "The firewall filters incoming and outgoing network traffic",
    "Backups are scheduled with cron every night",
    "The kernel loads system modules during boot",
    "Users and groups decide the permissions of every file",
]


def _unit(seed_text: str) -> list[float]:
    """A random unit vector seeded by a text (stable across runs and processes)."""
    rng = np.random.default_rng(zlib.crc32(seed_text.encode()))
    vector = rng.standard_normal(DIM)
    return (vector / np.linalg.norm(vector)).tolist()


class SeededEmbedder:
    """Stand-in for the embedding model: a random vector per text, so dense ranks are arbitrary."""

    def embed_query(self, text: str) -> list[float]:
        """The vector of a query."""
        return _unit(f"query:{text}")


def make_points(tenant: str, texts: list[str], language: Language) -> list[Point]:
    """One single-chunk document per text."""
    points = []
    for i, text in enumerate(texts):
        doc_id = f"{language}-{i}"
        payload = ChunkPayload(
            tenant=tenant,
            doc_id=doc_id,
            source=f"{doc_id}.md",
            title=doc_id,
            language=language,
            format=DocumentFormat.MARKDOWN,
            version="v1",
            content_hash="h",
            page_count=1,
            chunk_count=1,
            chunk_index=0,
            text=text,
            pages=[],
            heading_path=[],
            char_start=0,
            char_end=len(text),
        )
        points.append(
            Point(
                id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant}/{doc_id}")),
                dense=_unit(f"doc:{text}"),
                sparse=encode_document(text, language),
                payload=payload,
            )
        )
    return points


@pytest.fixture(params=["edge", "server"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    """Each store holding the Spanish and English documents for tenant "t1"."""
    if request.param == "edge":
        made: VectorStore = EdgeStore(tmp_path / "store", ALIAS, lock_timeout_s=30, batch_size=4)
    else:
        made = ServerStore(QdrantClient(path=str(tmp_path / "qdrant")), ALIAS, batch_size=4)
    made.ensure_collection(DIM)
    made.upsert(make_points("t1", DOCS_ES, "es") + make_points("t1", DOCS_EN, "en"))
    yield made
    made.close()


def _hit(point_id: str, score: float = 0.0) -> SearchHit:
    return SearchHit(
        point_id=point_id,
        score=score,
        text="",
        doc_id=point_id,
        source="",
        title="",
        pages=[],
        heading_path=[],
        chunk_index=0,
        language="en",
    )


def _ids(hits: list[SearchHit]) -> list[str]:
    return [hit.point_id for hit in hits]


def test_fuse_weighted_rrf_scores() -> None:
    dense = [_hit("a"), _hit("b"), _hit("c")]
    sparse = [_hit("c"), _hit("a")]
    fused = fuse([dense, sparse], (1.0, 2.0), k=10, rrf_k=60)
    scores = {hit.point_id: hit.score for hit in fused}
    assert _ids(fused) == ["c", "a", "b"]
    assert scores["a"] == pytest.approx(1 / 61 + 2 / 62)
    assert scores["c"] == pytest.approx(1 / 63 + 2 / 61)
    assert scores["b"] == pytest.approx(1 / 62)


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ((1.0, 0.0), ["a", "b", "c", "d"]),  # dense only: the dense order, then sparse-only hits
        ((0.0, 1.0), ["c", "d", "a", "b"]),  # sparse only: the sparse order, then dense-only
        ((1.0, 1.0), ["c", "a", "b", "d"]),  # equal: c (3rd + 1st) first; b, d tie, by id
    ],
)
def test_fuse_weights_pick_order(weights: tuple[float, float], expected: list[str]) -> None:
    dense = [_hit("a"), _hit("b"), _hit("c")]
    sparse = [_hit("c"), _hit("d")]
    assert _ids(fuse([dense, sparse], weights, k=10)) == expected


def test_fuse_dedupes_and_cuts_to_k() -> None:
    dense = [_hit("a"), _hit("a"), _hit("b")]
    sparse = [_hit("b"), _hit("c"), _hit("b")]
    fused = fuse([dense, sparse], (1.0, 1.0), k=2)
    assert _ids(fused) == ["b", "a"]
    assert fused[0].score == pytest.approx(1 / 62 + 1 / 61)


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("en", (1.0, 0.5)),  # English weights from settings
        ("es", (0.5, 2.0)),  # Spanish weights from settings
        ("other", (0.75, 1.25)),  # unknown language: the mean of both
    ],
)
def test_fusion_weights_per_language(language: Language, expected: tuple[float, float]) -> None:
    settings = Settings(fusion_weights_en=(1.0, 0.5), fusion_weights_es=(0.5, 2.0))
    assert fusion_weights(language, settings) == expected


@pytest.mark.parametrize(
    "mode",
    [
        "dense",  # the store's dense ranking as is
        "sparse",  # the store's BM25 ranking as is
    ],
)
def test_hybrid_search_single_mode_is_store_ranking(store: VectorStore, mode: str) -> None:
    query = "configuración de la red"
    hits = hybrid_search(
        query, tenant="t1", k=5, mode=mode, store=store, embedder=SeededEmbedder(), language="es"
    )
    if mode == "dense":
        expected = store.search_dense(SeededEmbedder().embed_query(query), tenant="t1", k=5)
    else:
        expected = store.search_sparse(encode_query(query, "es"), tenant="t1", k=5)
    assert _ids(hits) == _ids(expected)
    assert hits


@pytest.mark.parametrize(
    ("query", "language", "follows"),
    [
        ("cortafuegos tráfico de red", "es", "sparse"),  # Spanish weights (0, 1)
        ("firewall network traffic", "en", "dense"),  # English weights (1, 0)
    ],
)
def test_hybrid_search_fused_follows_language_weights(
    store: VectorStore, query: str, language: Language, follows: str
) -> None:
    settings = Settings(fusion_weights_en=(1.0, 0.0), fusion_weights_es=(0.0, 1.0))
    embedder = SeededEmbedder()
    dense = store.search_dense(embedder.embed_query(query), tenant="t1", k=3)
    sparse = store.search_sparse(encode_query(query, language), tenant="t1", k=3)
    assert _ids(dense) != _ids(sparse)  # otherwise the test could not tell them apart
    fused = hybrid_search(
        query,
        tenant="t1",
        k=3,
        store=store,
        embedder=embedder,
        language=language,
        settings=settings,
    )
    leading, other = (dense, sparse) if follows == "dense" else (sparse, dense)
    # The weighted ranking leads; hits of the zero-weight ranking only fill it up to k.
    assert _ids(fused)[: len(leading)] == _ids(leading)
    assert set(_ids(fused)[len(leading) :]) <= set(_ids(other))
    assert len(fused) == min(3, len(set(_ids(dense)) | set(_ids(sparse))))
    assert [h.score for h in fused] == sorted((h.score for h in fused), reverse=True)


def test_hybrid_search_detects_query_language(store: VectorStore) -> None:
    settings = Settings(fusion_weights_en=(1.0, 0.0), fusion_weights_es=(0.0, 1.0))
    query = "¿Cómo se programan las copias de seguridad con cron?"
    fused = hybrid_search(
        query, tenant="t1", k=3, store=store, embedder=SeededEmbedder(), settings=settings
    )
    sparse = store.search_sparse(encode_query(query, "es"), tenant="t1", k=3)
    assert _ids(fused)[: len(sparse)] == _ids(sparse)  # the Spanish weights were applied
    assert fused[0].doc_id == "es-3"


@pytest.mark.parametrize(
    ("query", "language", "doc_id"),
    [
        ("configuracion red", "es", "es-0"),  # typed without accents, stored with
        ("módulos del núcleo", "es", "es-4"),  # accents and plural in the query
        ("installing package", "en", "en-1"),  # English inflections
    ],
)
def test_hybrid_search_finds_keyword_match(
    store: VectorStore, query: str, language: Language, doc_id: str
) -> None:
    embedder = SeededEmbedder()
    sparse = hybrid_search(
        query, tenant="t1", k=3, mode="sparse", store=store, embedder=embedder, language=language
    )
    fused = hybrid_search(
        query, tenant="t1", k=3, store=store, embedder=embedder, language=language
    )
    assert sparse[0].doc_id == doc_id
    assert doc_id in {h.doc_id for h in fused}
    assert len({h.point_id for h in fused}) == len(fused) == 3


def test_hybrid_search_other_tenant_sees_nothing(store: VectorStore) -> None:
    hits = hybrid_search(
        "configuración de la red", tenant="t2", k=5, store=store, embedder=SeededEmbedder()
    )
    assert hits == []


def test_hybrid_search_default_store_from_settings(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    writer = EdgeStore.from_settings(settings)
    writer.ensure_collection(DIM)
    writer.upsert(make_points(settings.tenant, DOCS_EN, "en"))
    hits = hybrid_search(
        "backups with cron",
        tenant=settings.tenant,
        k=2,
        embedder=SeededEmbedder(),
        language="en",
        settings=settings,
    )
    assert hits[0].doc_id == "en-3"
    assert (tmp_path / "home" / "qdrant" / "aliases.json").exists()
