"""Latency the per-user limits add to an API request, against a real Prefect server on SQLite.

Run: .venv/bin/python benchmarks/limits.py [--requests 240] [--concurrency 1 4 8]

Starts `prefect server start` in a temporary PREFECT_HOME, then times, with N requests in
waves of C concurrent users: the rate check every authenticated request makes (one Prefect
write) and the task slot a POST that starts a task holds (a write, two reads, a write).
Baselines from the same run: Prefect's /health round trip (any HTTP call to Prefect), and the
same rate check through a Prefect client without the API's busy-retry hook.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

Check = Callable[[str], Awaitable[Any]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A Prefect server on SQLite under home; returns it and its API URL once healthy."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    log = (home / "server.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return server, url
        except httpx.HTTPError:
            time.sleep(0.5)
    server.kill()
    raise TimeoutError("Prefect server not healthy in 120 s")


async def timed(check: Check, requests: int, concurrency: int) -> list[float]:
    """Milliseconds per call, `requests` calls in waves of `concurrency` distinct users."""
    users = [f"bench-{uuid.uuid4().hex[:8]}" for _ in range(concurrency)]
    await asyncio.gather(*(check(user) for user in users))  # creates each user's limits

    async def one(user: str) -> float:
        start = time.perf_counter()
        await check(user)
        return (time.perf_counter() - start) * 1e3

    times: list[float] = []
    for _ in range(max(1, requests // concurrency)):
        times += await asyncio.gather(*(one(user) for user in users))
    return times


def summary(label: str, concurrency: int, times: list[float]) -> str:
    times = sorted(times)
    p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
    return (
        f"{label:<34} c={concurrency:<2} n={len(times):<4} p50 {statistics.median(times):7.1f} ms"
        f"  p95 {p95:7.1f} ms  max {times[-1]:7.1f} ms"
    )


async def measure(requests: int, levels: list[int]) -> None:
    from prefect.client.orchestration import get_client

    from api.limits_prefect import check_rate, task_slot
    from api.prefect_client import prefect_httpx_settings
    from core.settings import Settings

    settings = Settings(rate_limit_per_minute=10**6, rate_limit_burst=10**6)
    async with get_client(httpx_settings=prefect_httpx_settings()) as client:

        async def health(_: str) -> None:
            await client.api_healthcheck()

        async def rate(user: str) -> None:
            await check_rate(client, user, settings)

        async def slot(user: str) -> None:
            async with task_slot(client, user, settings):
                pass

        for concurrency in levels:
            print(
                summary(
                    "Prefect /health (baseline)",
                    concurrency,
                    await timed(health, requests, concurrency),
                )
            )
            print(
                summary(
                    "rate check (API client)", concurrency, await timed(rate, requests, concurrency)
                )
            )
            print(
                summary(
                    "task slot (API client)",
                    concurrency,
                    await timed(slot, requests // 2, concurrency),
                )
            )

    async with get_client() as plain:

        async def plain_rate(user: str) -> None:
            await check_rate(plain, user, settings)

        worst = max(levels)
        times = await timed(plain_rate, min(requests, 8 * worst), worst)
        print(summary("rate check (plain Prefect client)", worst, times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=240)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="octavius-bench-limits-") as tmp:
        server, url = start_server(Path(tmp))
        os.environ |= {"PREFECT_API_URL": url, "PREFECT_HOME": str(Path(tmp) / "client")}
        try:
            asyncio.run(measure(args.requests, args.concurrency))
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
