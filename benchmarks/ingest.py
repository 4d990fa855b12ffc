"""Ingestion throughput against the embedder alone, and the cost of an unchanged re-run.

Run: .venv/bin/python benchmarks/ingest.py [--copies N]

Builds a corpus of at least 1,000 chunks from the Debian reference chapters in
benchmarks/corpus (English and Spanish HTML; N copies with a distinguishing line each, so every
copy is a new document), then in one run:
1. the embedder alone: the corpus's chunks through the bundled model in this process (the limit);
2. end to end: the ingest-documents flow against a real Prefect server (the test harness) and
   a warm Dask LocalCluster of two single-thread worker processes, as `octavius up` runs it;
3. the same flow again on the unchanged corpus.
It prints chunks/s for 1 and 2, their ratio (target >= 0.85), the second run's time as a
fraction of the first (target < 0.05) and the embedding task runs of the second run (target 0).
For 2 it also prints where the CPU time went: the flow-run process (this one, with the Dask
scheduler), the Prefect server and the Dask workers, against the cores the machine has.
`--log-level INFO` shows every task run's start and end with timestamps.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
WORK = Path(tempfile.mkdtemp(prefix="octavius-bench-"))
os.environ.update(
    {
        "PREFECT_HOME": str(WORK / "prefect"),
        "PREFECT_LOCAL_STORAGE_PATH": str(WORK / "results"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "OCTAVIUS_HOME": str(WORK / "home"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
)


def build_corpus(target: Path, copies: int) -> list[Path]:
    """Copies of the reference chapters, each made a distinct document."""
    files = []
    for copy in range(copies):
        for source in sorted((REPO / "benchmarks" / "corpus").glob("*/*.html")):
            text = source.read_text(encoding="utf-8")
            marker = f"<p>Benchmark copy {copy} of {source.name}.</p>"
            path = target / f"copy{copy}" / source.name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text.replace("<body", f"{marker}<body", 1), encoding="utf-8")
            files.append(path)
    return files


def chunk_texts(files: list[Path]) -> list[str]:
    """The texts the flow will embed, made with the same functions."""
    from core.models import PlannedDocument, SourceFile
    from tasks.documents import parse_and_chunk

    texts: list[str] = []
    for path in files:
        planned = PlannedDocument(
            file=SourceFile(path=str(path), source=str(path), doc_id="x", size=path.stat().st_size),
            content_hash="x",
            version="x",
        )
        texts.extend(parse_and_chunk(planned).embed_texts)
    return texts


async def embed_task_runs(flow_run_id: str) -> int:
    """Embedding task runs recorded in Prefect for one flow run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        TaskRunFilter,
        TaskRunFilterName,
    )

    async with get_client() as client:
        runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="embed-batch")),
        )
    return len(runs)


def cpu_seconds(meters: dict[str, list[psutil.Process]]) -> dict[str, float]:
    """User plus system CPU seconds so far of each group of processes."""
    spent = {}
    for name, processes in meters.items():
        total = 0.0
        for process in processes:
            times = process.cpu_times()
            total += times.user + times.system
        spent[name] = total
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--copies", type=int, default=2)
    parser.add_argument("--log-level", default="WARNING", help="Prefect's logging level")
    args = parser.parse_args()
    os.environ["PREFECT_LOGGING_LEVEL"] = args.log_level

    from distributed import Client
    from prefect.testing.utilities import prefect_test_harness

    from core.dask import local_cluster
    from core.embedder import get_embedder
    from core.settings import get_settings

    files = build_corpus(WORK / "corpus", args.copies)
    texts = chunk_texts(files)
    print(f"corpus: {len(files)} documents, {len(texts)} chunks")
    if len(texts) < 1000:
        sys.exit("corpus too small: raise --copies")

    embedder = get_embedder(get_settings())
    embedder.embed_documents(texts[:8])
    started = time.perf_counter()
    embedder.embed_documents(texts)
    alone_s = time.perf_counter() - started
    alone = len(texts) / alone_s
    print(f"embedder alone (1 process):       {alone:7.2f} chunks/s  ({alone_s:.1f} s)")

    with (
        prefect_test_harness(server_startup_timeout=120),
        local_cluster(2) as cluster,
    ):
        os.environ["OCTAVIUS_DASK_ADDRESS"] = str(cluster.scheduler_address)
        get_settings.cache_clear()
        from deployments.stack import _warm_worker
        from flows.ingest import ingest_documents

        with Client(cluster) as client:
            client.run(_warm_worker)
            worker_pids = list(client.run(os.getpid).values())
        meters = {
            "flow process": [psutil.Process()],
            "Prefect server": psutil.Process().children(recursive=True),
            "Dask workers": [psutil.Process(pid) for pid in worker_pids],
        }
        meters["Prefect server"] = [
            p
            for p in meters["Prefect server"]
            if p.pid not in worker_pids and "uvicorn" in " ".join(p.cmdline())
        ]
        before = cpu_seconds(meters)
        started = time.perf_counter()
        first = ingest_documents(paths=[str(WORK / "corpus")], tenant="bench", return_state=True)
        first_s = time.perf_counter() - started
        used = {name: spent - before[name] for name, spent in cpu_seconds(meters).items()}
        report = first.result()
        assert report.failed == 0, report
        end_to_end = report.chunks_embedded / first_s
        print(
            f"end to end (flow, 2 Dask workers): {end_to_end:7.2f} chunks/s  ({first_s:.1f} s, "
            f"{report.chunks_embedded} chunks)"
        )
        print(f"ratio end to end / embedder alone: {end_to_end / alone:7.2f}  (target >= 0.85)")
        cores = os.cpu_count() or 1
        print(
            "CPU during the end-to-end run:     "
            + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in used.items())
            + f"  (of {first_s * cores:.1f} core-seconds on {cores} cores)"
        )

        started = time.perf_counter()
        second = ingest_documents(paths=[str(WORK / "corpus")], tenant="bench", return_state=True)
        second_s = time.perf_counter() - started
        rerun = second.result()
        calls = asyncio.run(embed_task_runs(str(second.state_details.flow_run_id)))
        print(
            f"unchanged re-run:                  {second_s:7.2f} s = {second_s / first_s:.3f} of "
            f"the first run (target < 0.05); {rerun.unchanged} unchanged, embedding task runs: "
            f"{calls} (target 0)"
        )
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
