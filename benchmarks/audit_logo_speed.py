"""Logo detection pages per second: one process, and fanned out over 1 and 2 Dask workers.

Run: .venv/bin/python benchmarks/audit_logo_speed.py [--pages 40] [--batch 5]

Builds a PDF whose pages each carry body text and the logo re-encoded as JPEG (so every page
goes through rendering and feature matching, not the exact embedded-image shortcut), then times
the body of `logo_pages_task` (detect_logos) on batches of pages: in this process, and on a
LocalCluster of 1 and of 2 single-thread worker processes. Cluster start-up and the first
(warm-up) batch per worker are not timed. `measure_logo_speed` is importable for
benchmarks/audit.py.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.audit_models import AuditPolicy, LogoRule  # noqa: E402
from tasks.audit.logo import LogoPageResult, detect_logos  # noqa: E402
from tests.audit_logogen import LOGO_PNG, Placement, logo_pdf  # noqa: E402


def make_speed_pdf(path: Path, pages: int) -> Path:
    """A PDF of `pages` text pages with the logo (JPEG) in each header."""
    placement = Placement(160, 780, 150, jpeg=True)
    return logo_pdf(path, [[placement] for _ in range(pages)])


def speed_policy() -> AuditPolicy:
    """A policy whose one logo rule wants the logo on every page."""
    return AuditPolicy(logos=[LogoRule(id="octavius", image=str(LOGO_PNG), pages="all")])


def _batches(pages: int, size: int) -> list[list[int]]:
    numbers = list(range(1, pages + 1))
    return [numbers[i : i + size] for i in range(0, pages, size)]


def _warm(pdf: str, policy: AuditPolicy) -> int:
    """Loads the reference and the libraries in a worker process."""
    return len(detect_logos(Path(pdf), [1], policy))


def _detect(pdf: str, pages: list[int], policy: AuditPolicy) -> list[LogoPageResult]:
    return detect_logos(Path(pdf), pages, policy)


def measure_logo_speed(pdf: Path, policy: AuditPolicy, workers: int, batch_size: int = 5) -> float:
    """Pages per second of logo detection over `workers` Dask worker processes (0: in process)."""
    page_count = _page_count(pdf)
    batches = _batches(page_count, batch_size)
    if workers == 0:
        _warm(str(pdf), policy)
        started = time.perf_counter()
        for batch in batches:
            _detect(str(pdf), batch, policy)
        return page_count / (time.perf_counter() - started)
    from distributed import Client, LocalCluster

    with (
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        client.run(_warm, str(pdf), policy)
        started = time.perf_counter()
        futures = [client.submit(_detect, str(pdf), b, policy, pure=False) for b in batches]
        results = client.gather(futures)
        elapsed = time.perf_counter() - started
    assert sum(len(r) for r in results) == page_count
    return page_count / elapsed


def _page_count(pdf: Path) -> int:
    from tasks.audit.layout import inspect_pdf

    return inspect_pdf(pdf, max_pages=10_000).page_count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=40)
    parser.add_argument("--batch", type=int, default=5)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="octavius-logo-speed-"))
    pdf = make_speed_pdf(folder / "speed.pdf", args.pages)
    policy = speed_policy()
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"logo detection, {args.pages} pages (A4, 100 dpi), batches of {args.batch}:")
    print(f"  (load average before: {load}; {os.cpu_count()} cores)")
    for workers, label in (
        (0, "one process, no Dask"),
        (1, "1 Dask worker"),
        (2, "2 Dask workers"),
    ):
        rate = measure_logo_speed(pdf, policy, workers, args.batch)
        print(f"  {label:22s} {rate:6.2f} pages/s")


if __name__ == "__main__":
    main()
