"""Embedded vector engines compared: qdrant-client path mode, qdrant-edge, and our EdgeStore.

Run: .venv/bin/python benchmarks/store.py [--points 10000] [--dim 384]

For each engine: the time to upsert N points (384-dim dense + BM25 sparse + a chunk payload),
to open the stored collection again, and a tenant-filtered dense and sparse query. EdgeStore
is the project's embedded store, which takes the cross-process lock and loads and closes the
shard on every call, so its query figure is what an API search really pays.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import qdrant_edge as qe
from qdrant_client import QdrantClient, models

from core.models import ChunkPayload, DocumentFormat, Point
from core.sparse import encode_document, encode_query
from core.store.edge import EdgeStore

BATCH = 256
TENANT = "bench"
_WORDS = (
    "network package install kernel module boot disk partition user group permission service "
    "daemon socket firewall route address interface mirror repository release upgrade backup "
    "archive compress config editor shell script variable process signal memory swap cache"
)
VOCABULARY = _WORDS.split()


def make_points(count: int, dim: int, seed: int = 0) -> list[Point]:
    """Synthetic chunks with random unit vectors and ~100-word texts."""
    rng = np.random.default_rng(seed)
    dense = rng.standard_normal((count, dim)).astype(np.float32)
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    points = []
    for i in range(count):
        text = " ".join(rng.choice(VOCABULARY, size=100))
        payload = ChunkPayload(
            tenant=TENANT if i % 2 else "other",
            doc_id=f"doc-{i // 20}",
            source=f"doc-{i // 20}.txt",
            title="Benchmark",
            language="en",
            format=DocumentFormat.TEXT,
            version="v1",
            content_hash="0" * 64,
            page_count=1,
            chunk_count=20,
            chunk_index=i % 20,
            text=text,
            pages=[1],
            heading_path=[],
            char_start=0,
            char_end=len(text),
        )
        points.append(
            Point(
                id=str(uuid.UUID(int=i + 1)),
                dense=dense[i].tolist(),
                sparse=encode_document(text, "en"),
                payload=payload,
            )
        )
    return points


def median_ms(run: Callable[[], object], repeat: int) -> float:
    """Median wall time of `run`, in milliseconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def bench_edge(points: list[Point], dim: int, root: Path) -> dict[str, float]:
    """qdrant-edge used directly: one shard open for the whole upsert."""
    path = str(root / "edge")
    config = qe.EdgeConfig(
        vectors={"dense": qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)},
        sparse_vectors={"sparse": qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
    )
    shard = qe.EdgeShard.create(path, config)
    shard.update(
        qe.UpdateOperation.create_field_index("tenant", qe.KeywordIndexParams(is_tenant=True))
    )
    start = time.perf_counter()
    for i in range(0, len(points), BATCH):
        batch = [
            qe.Point(
                p.id,
                {
                    "dense": p.dense,
                    "sparse": qe.SparseVector(p.sparse.indices, p.sparse.values),
                },
                p.payload.model_dump(mode="json"),
            )
            for p in points[i : i + BATCH]
        ]
        shard.update(qe.UpdateOperation.upsert_points(batch))
    shard.flush()
    upsert_s = time.perf_counter() - start
    shard.close()
    open_ms = median_ms(lambda: qe.EdgeShard.load(path).close(), 5)
    shard = qe.EdgeShard.load(path)
    tenant = qe.Filter(must=[qe.FieldCondition("tenant", match=qe.MatchValue(TENANT))])
    dense = qe.QueryRequest(
        limit=10,
        query=qe.Query.Nearest(points[0].dense, using="dense"),
        filter=tenant,
        with_payload=True,
    )
    query = encode_query("network firewall route", "en")
    sparse = qe.QueryRequest(
        limit=10,
        query=qe.Query.Nearest(qe.SparseVector(query.indices, query.values), using="sparse"),
        filter=tenant,
        with_payload=True,
        params=qe.SearchParams(idf=qe.IdfParams(corpus=tenant)),
    )
    result = {
        "upsert_s": upsert_s,
        "open_ms": open_ms,
        "dense_ms": median_ms(lambda: shard.query(dense), 20),
        "sparse_ms": median_ms(lambda: shard.query(sparse), 20),
    }
    shard.close()
    return result


def bench_client_path(points: list[Point], dim: int, root: Path) -> dict[str, float]:
    """qdrant-client local mode on disk (its Python engine)."""
    path = str(root / "client")
    client = QdrantClient(path=path)
    client.create_collection(
        "bench",
        vectors_config={"dense": models.VectorParams(size=dim, distance=models.Distance.COSINE)},
        sparse_vectors_config={"sparse": models.SparseVectorParams(modifier=models.Modifier.IDF)},
    )
    start = time.perf_counter()
    for i in range(0, len(points), BATCH):
        batch = [
            models.PointStruct(
                id=p.id,
                vector={
                    "dense": p.dense,
                    "sparse": models.SparseVector(indices=p.sparse.indices, values=p.sparse.values),
                },
                payload=p.payload.model_dump(mode="json"),
            )
            for p in points[i : i + BATCH]
        ]
        client.upsert("bench", points=batch)
    upsert_s = time.perf_counter() - start
    client.close()
    open_ms = median_ms(lambda: QdrantClient(path=path).close(), 3)
    client = QdrantClient(path=path)
    tenant = models.Filter(
        must=[models.FieldCondition(key="tenant", match=models.MatchValue(value=TENANT))]
    )
    query = encode_query("network firewall route", "en")
    sparse = models.SparseVector(indices=query.indices, values=query.values)
    result = {
        "upsert_s": upsert_s,
        "open_ms": open_ms,
        "dense_ms": median_ms(
            lambda: client.query_points(
                "bench", query=points[0].dense, using="dense", query_filter=tenant, limit=10
            ),
            10,
        ),
        "sparse_ms": median_ms(
            lambda: client.query_points(
                "bench", query=sparse, using="sparse", query_filter=tenant, limit=10
            ),
            10,
        ),
    }
    client.close()
    return result


def bench_edge_store(points: list[Point], dim: int, root: Path) -> dict[str, float]:
    """The project's EdgeStore: lock, load, work, flush, close on every call."""
    store = EdgeStore(root / "store", "bench", lock_timeout_s=60, batch_size=BATCH)
    store.ensure_collection(dim)
    start = time.perf_counter()
    store.upsert(points)
    upsert_s = time.perf_counter() - start
    query = encode_query("network firewall route", "en")
    return {
        "upsert_s": upsert_s,
        "open_ms": median_ms(store.ping, 5),
        "dense_ms": median_ms(lambda: store.search_dense(points[0].dense, tenant=TENANT, k=10), 20),
        "sparse_ms": median_ms(lambda: store.search_sparse(query, tenant=TENANT, k=10), 20),
    }


def main() -> None:
    """Run every engine on the same points and print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=384)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    points = make_points(args.points, args.dim)
    engines = {
        "qdrant-edge (direct)": bench_edge,
        "EdgeStore (lock+open per call)": bench_edge_store,
        "qdrant-client path mode": bench_client_path,
    }
    print(f"{args.points} points x {args.dim} dims, batches of {BATCH}, half in the queried tenant")
    columns = ("upsert s", "points/s", "open ms", "dense ms", "sparse ms")
    print(f"{'engine':32} " + " ".join(f"{c:>9}" for c in columns))
    with tempfile.TemporaryDirectory(prefix="octavius-bench-") as tmp:
        for name, bench in engines.items():
            r = bench(points, args.dim, Path(tmp))
            rate = args.points / r["upsert_s"]
            print(
                f"{name:32} {r['upsert_s']:9.2f} {rate:9.0f} {r['open_ms']:9.1f} "
                f"{r['dense_ms']:9.1f} {r['sparse_ms']:9.1f}",
                flush=True,
            )
    print("open ms for EdgeStore = lock + load + close (its ping); queries include the same.")


if __name__ == "__main__":
    main()
