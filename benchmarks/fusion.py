"""Retrieval quality per language for dense, sparse and weighted-RRF fusion; picks the weights.

Run: .venv/bin/python benchmarks/fusion.py

Indexes benchmarks/corpus (the Debian reference chapters, English and Spanish) with the
project's own parse, chunk, embed and index functions into a temporary embedded store, then
scores benchmarks/retrieval_{en,es}.jsonl: recall@1, recall@5 and MRR@10 for dense, sparse, and
fusion at several (dense, sparse) weights. The best ranking per language by MRR@10 sets the
defaults of OCTAVIUS_FUSION_WEIGHTS_EN / _ES (dense alone is (1, 0), sparse alone (0, 1)).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.update(
    {
        "OCTAVIUS_HOME": tempfile.mkdtemp(prefix="octavius-fusion-"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
)

from core.embedder import get_embedder  # noqa: E402
from core.evaluation import load_questions, score_rankings  # noqa: E402
from core.language import detect_language  # noqa: E402
from core.search import fuse, hybrid_search  # noqa: E402
from core.settings import get_settings  # noqa: E402
from tasks.documents import parse_and_chunk  # noqa: E402
from tasks.indexing import index_document  # noqa: E402
from tasks.planning import plan_file  # noqa: E402

TENANT = "eval"
WEIGHTS = [
    (1.0, 0.1),
    (1.0, 0.25),
    (1.0, 0.5),
    (1.0, 1.0),
    (0.5, 1.0),
    (0.25, 1.0),
    (0.1, 1.0),
]
DEPTH = 40


def index_corpus() -> int:
    """Indexes every corpus chapter; returns the number of chunks."""
    settings = get_settings()
    embedder = get_embedder(settings)
    total = 0
    for path in sorted((REPO / "benchmarks" / "corpus").glob("*/*.html")):
        planned = plan_file(path, TENANT, settings)
        document = parse_and_chunk(planned)
        vectors = embedder.embed_documents(document.embed_texts)
        total += index_document(document, vectors, TENANT)
    return total


def main() -> None:
    started = time.perf_counter()
    chunks = index_corpus()
    print(f"indexed {chunks} chunks in {time.perf_counter() - started:.0f} s")
    for language in ("en", "es"):
        questions = load_questions(REPO / "benchmarks" / f"retrieval_{language}.jsonl")
        detected = sum(detect_language(q.query) == language for q in questions)
        dense = [hybrid_search(q.query, tenant=TENANT, k=DEPTH, mode="dense") for q in questions]
        sparse = [hybrid_search(q.query, tenant=TENANT, k=DEPTH, mode="sparse") for q in questions]
        print(f"\n{language}: {len(questions)} questions ({detected} detected as {language})")
        print(f"{'ranking':<22}{'R@1':>7}{'R@5':>7}{'MRR@10':>8}")
        rows = [("dense", dense), ("sparse", sparse)]
        rows += [
            (
                f"fused {w[0]:g}/{w[1]:g}",
                [fuse([d, s], w, DEPTH) for d, s in zip(dense, sparse, strict=True)],
            )
            for w in WEIGHTS
        ]
        best = ("", -1.0)
        for name, rankings in rows:
            scores = score_rankings(
                questions, [[(h.text, h.source) for h in r] for r in rankings], k=5
            )
            print(
                f"{name:<22}{scores.recall_at_1:7.3f}{scores.recall_at_k:7.3f}"
                f"{scores.mrr_at_10:8.3f}"
            )
            if scores.mrr_at_10 > best[1]:
                best = (name, scores.mrr_at_10)
        print(f"best for {language}: {best[0]} (MRR@10 {best[1]:.3f})")


if __name__ == "__main__":
    main()
