"""Wall time of a full document audit, and logo-detection throughput on 1 and 2 Dask workers.

Run: .venv/bin/python benchmarks/audit.py [--pages 20 100]

Generates text PDFs (embedded fonts, the shipped Octavius logo on page 1, the default policy's
Spanish disclaimer on the last page, page numbers), then in one run:
1. the audit-document flow with the shipped default policy against a real Prefect server (the
   test harness) and a warm Dask LocalCluster of two single-thread worker processes, as
   `octavius up` runs it: wall time per document (target: 20 pages under 30 s), per-auditor
   seconds, and an unchanged re-audit (every auditor a cache hit);
2. logo detection alone (tasks.audit.logo.detect_logos, the body of logo_pages_task) over every
   page of the largest document, in batches of 8 pages on a LocalCluster of 1 and then 2
   single-thread worker processes: pages per second.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
WORK = Path(tempfile.mkdtemp(prefix="octavius-bench-audit-"))
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

SENTENCES = [
    "El servidor de copias de seguridad se ejecuta cada noche y conserva siete copias diarias.",
    "La red interna usa direcciones privadas y el cortafuegos solo admite conexiones cifradas.",
    "Los informes trimestrales se publican en el portal interno una vez revisados por el comité.",
    "Cada equipo mantiene su inventario actualizado y registra los cambios en el sistema.",
    "Las contraseñas caducan a los noventa días y no pueden repetirse en el último año.",
    "El acceso remoto requiere un segundo factor de autenticación para todos los usuarios.",
    "Los datos personales se conservan solo el tiempo necesario para la finalidad declarada.",
    "La auditoría anual revisa los permisos de cada cuenta con privilegios de administración.",
]
LOGO_BATCH = 8


def make_document(path: Path, pages: int) -> Path:
    """A Spanish report of `pages` pages with the logo on page 1 and the disclaimer at the end."""
    from PIL import Image

    from tasks.audit.policy import POLICIES_DIR, load_policy
    from tests.audit_docgen import LogoSpec, make_audit_pdf

    disclaimer = load_policy().disclaimers[0].text["es"]
    content = []
    for number in range(pages):
        paragraphs = [f"# Sección {number + 1}"]
        for block in range(5):
            start = (number + block) % len(SENTENCES)
            paragraphs.append(" ".join(SENTENCES[start:] + SENTENCES[:start])[:520])
        content.append(paragraphs)
    content[-1].append(disclaimer)
    image = POLICIES_DIR / "octavius-logo.png"
    with Image.open(image) as opened:
        aspect = opened.height / opened.width
    logo = LogoSpec(image, page=1, x=400, y=745, width=125, height=125 * aspect)
    return make_audit_pdf(path, content, logos=[logo])


def detect_batch(pdf: str, pages: list[int]) -> int:
    """Runs logo detection on one batch of pages (on a Dask worker); returns the page count."""
    from tasks.audit.logo import detect_logos
    from tasks.audit.policy import load_policy

    return len(detect_logos(Path(pdf), pages, load_policy()))


def logo_throughput(pdf: Path, pages: int, workers: int) -> float:
    """Pages per second of logo detection over every page on `workers` worker processes."""
    from distributed import Client, LocalCluster

    batches = [
        list(range(i, min(i + LOGO_BATCH, pages + 1))) for i in range(1, pages + 1, LOGO_BATCH)
    ]
    with (
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        client.run(detect_batch, str(pdf), [1])  # warm: imports, reference features
        started = time.perf_counter()
        done = sum(client.gather(client.map(detect_batch, [str(pdf)] * len(batches), batches)))
        seconds = time.perf_counter() - started
    assert done == pages, (done, pages)
    return pages / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pages", type=int, nargs="+", default=[20, 100])
    parser.add_argument(
        "--logo-pages", type=int, default=None, help="Pages for the logo throughput (all)."
    )
    args = parser.parse_args()

    from distributed import Client, LocalCluster
    from prefect.testing.utilities import prefect_test_harness

    from core.settings import get_settings

    documents = {n: make_document(WORK / f"report-{n}p.pdf", n) for n in args.pages}
    warmup = make_document(WORK / "warmup.pdf", 1)
    with (
        prefect_test_harness(server_startup_timeout=120),
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
    ):
        os.environ["OCTAVIUS_DASK_ADDRESS"] = str(cluster.scheduler_address)
        get_settings.cache_clear()
        from flows.audit import audit_document

        with Client(cluster) as client:  # type: ignore[no-untyped-call]
            client.run(detect_batch, str(warmup), [1])
        started = time.perf_counter()
        audit_document(paths=[str(warmup)])
        print(f"warm-up audit (1 page, first flow run):  {time.perf_counter() - started:6.1f} s")
        for pages, pdf in documents.items():
            started = time.perf_counter()
            report = audit_document(paths=[str(pdf)])
            seconds = time.perf_counter() - started
            (file,) = report.reports
            target = "  (target < 30 s)" if pages == 20 else ""
            print(f"full audit, {pages:3d} pages:                {seconds:6.1f} s{target}")
            print(
                "   verdict "
                + file.verdict.value
                + "; auditors: "
                + ", ".join(
                    f"{a.auditor.value} {a.verdict.value} {a.seconds:.1f} s "
                    f"({len(a.findings)} findings)"
                    for a in file.auditors
                )
            )
            notable = [f for a in file.auditors for f in a.findings if f.severity != "info"]
            for finding in notable[:3]:
                print(f"   {finding.rule} p.{finding.page}: {finding.message_en}")
            started = time.perf_counter()
            audit_document(paths=[str(pdf)])
            print(
                f"unchanged re-audit, {pages:3d} pages:        "
                f"{time.perf_counter() - started:6.1f} s"
            )
    largest = max(documents)
    pages = min(args.logo_pages or largest, largest)
    for workers in (1, 2):
        rate = logo_throughput(documents[largest], pages, workers)
        print(
            f"logo detection, {workers} Dask worker(s):        {rate:6.2f} pages/s "
            f"({pages} pages, batches of {LOGO_BATCH})"
        )
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
