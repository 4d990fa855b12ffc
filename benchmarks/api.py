"""Task API latency and throughput under 100 concurrent clients, against `octavius up`.

Run: .venv/bin/python benchmarks/api.py [--clients 100] [--timeout 1800]

Starts the embedded stack (`octavius up`) as a subprocess in a temporary OCTAVIUS_HOME on free
loopback ports, reads its API token from OCTAVIUS_HOME/stack.json, runs one ingestion end to end
as a warm-up, waits (at most 120 s) until the API processes hold a reserved ingestion run for
every client, as they do seconds after they start (README, "Reserved runs"), then, with N
concurrent clients (one httpx.AsyncClient and connection each):
1. baseline: each client sends 5 GET /healthz at once with the others (idle stack);
2. once the stack is quiet (a second in which all its processes together used under 100 ms
   of CPU, waited for at most 60 s: the reserve refill and Prefect's periodic services pause),
   each client uploads one small, distinct, real document (Markdown, or a two-page PDF for
   every fourth client) at the same moment: POST /api/documents/upload latency, target p99 of
   the 202 under 100 ms, with the same burst of GET /healthz just before as its baseline, and
   the CPU each part of the stack (API, Prefect server, flow runs, ...) and this client used
   during the burst: on two cores, anything else busy then takes CPU from the API;
3. from its 202 on, each client polls its task with GET /api/tasks/{id} once a second, with a
   GET /healthz beside each poll as the baseline under the same load, until the task is final:
   the time from the burst until all are final, and how many COMPLETED, FAILED, ended otherwise,
   were lost (an id that answered 202 but then three polls in a row got no answer within 30 s
   or an error), were still unfinished at --timeout, or were never accepted (no 202 in 120 s).
   Every task must be COMPLETED with its document indexed.
Percentiles are nearest-rank; with 100 uploads, p99 is the second slowest.

The bursts of phase 2 are sent by a minimal HTTP/1.1 client: one open connection per client,
each request encoded (by httpx) before the burst and written at once, its latency taken from
the write to the end of the response. httpx itself spends about 0.7 ms of CPU per multipart
request on the client's one event loop, which on two cores adds 60-80 ms to the p99 of 100
requests at once: against a bare Starlette endpoint that parses the form and answers, p99 was
70-108 ms with httpx clients and 13-22 ms with this client. Polls (phase 3) use httpx.

Per-user limits: every client acts as the stack's one local user (the token in stack.json), so
the stack is started with OCTAVIUS_RATE_LIMIT_PER_MINUTE, OCTAVIUS_RATE_LIMIT_BURST and
OCTAVIUS_MAX_TASKS_IN_FLIGHT raised far above what the run needs: no request is refused, while
the limiter's own checks still run on every request, as in production.

Flow-run processes: `deployments/serve.py` runs at most OCTAVIUS_FLOW_RUN_LIMIT (4) flow runs
at once. By default the run also gives the served `ingest-documents/default` deployment the
concurrency limit prefect.yaml declares for it (4), through Prefect's API, with Prefect's wait
before a run retries for a slot cut from 30 s to
PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS=5; `--run-limit 0` measures the stack
as shipped. The peak number of flow-run processes and their memory are printed either way.

Output is line-buffered, so a run's figures show as they come even when redirected to a file.

The stack is stopped with SIGINT (as Ctrl-C does) at the end and on any error; the temporary
folder is removed after a clean run and kept, with the stack's logs, after a failed one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from api.claims import CLAIMS_FILE, ClaimStore  # noqa: E402
from deployments.names import INGEST  # noqa: E402
from tests.docgen import make_pdf  # noqa: E402
from tests.processes import alive, descendants, free_port  # noqa: E402

FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
TARGET_UPLOAD_P99_S = 0.100
UPLOAD_TIMEOUT_S = 120.0
QUIET_TIMEOUT_S = 60.0
QUIET_CPU_MS = 100.0  # in one second, all the stack's processes together
POLL_TIMEOUT_S = 30.0
# Polls in a row that get no answer or an error before a task counts as lost.
FAILED_POLLS_LOST = 3
_VOCABULARY = (
    "backup rotation keeps seven daily snapshots of the database while the mail server relays "
    "messages through postfix and the resolver reads its configuration from the network file "
    "red servidor copia seguridad correo archivo configuración usuario disco cuota registro "
    "kernel swap memory process scheduler firewall route interface package mirror release"
)


@dataclass
class Samples:
    """Latencies of one kind of request, in seconds, and the status codes seen."""

    latencies: list[float] = field(default_factory=list)
    statuses: dict[int | str, int] = field(default_factory=dict)

    def add(self, seconds: float, status: int | str) -> None:
        """Records one request: its status code, or the error that ended it."""
        self.latencies.append(seconds)
        self.statuses[status] = self.statuses.get(status, 0) + 1

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile, in seconds."""
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    def line(self, label: str) -> str:
        """One printed line: count, p50/p95/p99/max in ms and the status codes."""
        if not self.latencies:
            return f"{label:<58} no samples"
        ms = [1000 * self.percentile(q) for q in (0.5, 0.95, 0.99, 1.0)]
        codes = ", ".join(f"{code}: {n}" for code, n in sorted(self.statuses.items(), key=str))
        return (
            f"{label:<58} n={len(self.latencies):<5} p50 {ms[0]:7.1f}  p95 {ms[1]:7.1f}  "
            f"p99 {ms[2]:7.1f}  max {ms[3]:7.1f} ms  ({codes})"
        )


def reserved_answers(home: Path, task_ids: list[str]) -> int:
    """How many of the task ids the API answered by claiming a reserved run."""
    path = home / CLAIMS_FILE
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(path)) as db:
        claimed = {run_id for (run_id,) in db.execute("SELECT run_id FROM claims")}
    return len(claimed & set(task_ids))


def wait_reserved(home: Path, count: int, timeout_s: float) -> tuple[int, float]:
    """Waits until the API processes hold `count` reserved ingestion runs (as they do a few
    seconds after they start); how many they hold and the seconds waited."""
    started = time.monotonic()
    store = ClaimStore(home / CLAIMS_FILE)
    try:
        while (held := store.count_reserved(INGEST)) < count:
            if time.monotonic() - started > timeout_s:
                break
            time.sleep(0.5)
    finally:
        store.close()
    return held, time.monotonic() - started


def make_documents(folder: Path, count: int) -> list[tuple[str, bytes, str]]:
    """Small distinct documents: Markdown, and a two-page PDF for every fourth one."""
    folder.mkdir(parents=True)
    documents = []
    for i in range(count):
        rng = random.Random(i)
        paragraphs = [
            " ".join(rng.choices(_VOCABULARY.split(), k=70)) + f" Documento {i}." for _ in range(3)
        ]
        if i % 4 == 3:
            path = make_pdf(
                folder / f"informe-{i}.pdf",
                [[f"# Informe {i}", paragraphs[0]], [paragraphs[1], paragraphs[2]]],
                title=f"Informe {i}",
            )
            documents.append((path.name, path.read_bytes(), "application/pdf"))
        else:
            text = f"# Notes {i}\n\n" + "\n\n".join(paragraphs) + "\n"
            documents.append((f"notes-{i}.md", text.encode(), "text/markdown"))
    return documents


def stack_environment(home: Path) -> dict[str, str]:
    """A newcomer's environment for `octavius up`, on free ports, with the limits raised."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "OCTAVIUS_"))}
    env.update(
        {
            "OCTAVIUS_HOME": str(home),
            "OCTAVIUS_API_PORT": str(free_port()),
            "OCTAVIUS_PREFECT_PORT": str(free_port()),
            "OCTAVIUS_RATE_LIMIT_PER_MINUTE": "1000000",
            "OCTAVIUS_RATE_LIMIT_BURST": "100000",
            "OCTAVIUS_MAX_TASKS_IN_FLIGHT": "100000",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "5",
        }
    )
    return env


async def limit_runs(prefect_api_url: str, limit: int, timeout_s: float) -> None:
    """Gives the served ingestion deployment a concurrency limit, once serve() registered it."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=prefect_api_url, timeout=30) as prefect:
        while (found := await prefect.get(f"/deployments/name/{INGEST}")).status_code == 404:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{INGEST} not registered after {timeout_s:.0f} s")
            await asyncio.sleep(1)
        found.raise_for_status()
        # 503: the embedded server's SQLite is busy (the API processes fill their reserves).
        while (
            updated := await prefect.patch(
                f"/deployments/{found.json()['id']}", json={"concurrency_limit": limit}
            )
        ).status_code == 503 and time.monotonic() < deadline:
            await asyncio.sleep(1)
        updated.raise_for_status()


@dataclass
class FlowProcesses:
    """The most flow-run processes of the stack seen at once, and their memory then."""

    peak: int = 0
    peak_rss_mb: float = 0.0

    def sample(self, stack_pid: int) -> None:
        """Counts the stack's flow-run processes now (read from /proc)."""
        count, rss = 0, 0
        for pid in descendants(stack_pid):
            try:
                if b"prefect.engine" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                    continue
                rss += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
            except (OSError, IndexError, ValueError):
                continue
            count += 1
        if count > self.peak:
            self.peak, self.peak_rss_mb = count, rss * os.sysconf("SC_PAGE_SIZE") / 2**20

    async def watch(self, stack_pid: int, interval_s: float = 2.0) -> None:
        """Samples until cancelled."""
        while True:
            await asyncio.to_thread(self.sample, stack_pid)
            await asyncio.sleep(interval_s)


# Names for the stack's processes in the CPU figures, by a part of their command line.
_PROCESS_ROLES: Final = (
    ("uvicorn api.main", "API"),
    ("prefect server", "Prefect server"),
    ("prefect.engine", "flow runs"),
    ("deployments.serve", "runner (serve)"),
    ("multiprocessing", "Dask"),
    ("core.cli up", "octavius up"),
)


def cpu_seconds(pids: Iterable[int]) -> dict[int, float]:
    """Seconds each process (all its threads) has run on a CPU (/proc/<pid>/task/*/schedstat)."""
    seconds: dict[int, float] = {}
    for pid in pids:
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
            seconds[pid] = sum(int((t / "schedstat").read_text().split()[0]) for t in tasks) / 1e9
        except (OSError, ValueError, IndexError):
            continue
    return seconds


def role(pid: int) -> str:
    """The stack role of a process, from its command line."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "gone"
    return next((name for part, name in _PROCESS_ROLES if part in command), "other")


def stack_cpu(stack_pid: int) -> dict[int, float]:
    """CPU seconds so far of the stack's processes and of this one (the client)."""
    return cpu_seconds({stack_pid, os.getpid(), *descendants(stack_pid)})


def cpu_by_role(before: dict[int, float], after: dict[int, float]) -> dict[str, float]:
    """CPU milliseconds per role between two stack_cpu readings."""
    by_role: dict[str, float] = {}
    for pid, seconds in after.items():
        name = "this client" if pid == os.getpid() else role(pid)
        by_role[name] = by_role.get(name, 0.0) + (seconds - before.get(pid, seconds)) * 1000
    return by_role


def cpu_line(by_role: dict[str, float]) -> str:
    """The roles' CPU milliseconds, busiest first (those under half a millisecond left out)."""
    busy = sorted(((ms, name) for name, ms in by_role.items() if ms > 0.5), reverse=True)
    return ", ".join(f"{name} {ms:.0f} ms" for ms, name in busy)


def wait_quiet(stack_pid: int, timeout_s: float) -> tuple[float, str]:
    """Waits (at most timeout_s) for a second in which the stack used under QUIET_CPU_MS of
    CPU: the reserve refill and Prefect's periodic services pause. Returns the seconds waited
    and the CPU of the last second, per role."""
    start = time.monotonic()
    while True:
        before = stack_cpu(stack_pid)
        time.sleep(1.0)
        used = cpu_by_role(before, stack_cpu(stack_pid))
        if sum(used.values()) < QUIET_CPU_MS or time.monotonic() - start > timeout_s:
            return time.monotonic() - start, cpu_line(used)


def wait_for_stack(process: subprocess.Popen[bytes], home: Path, timeout_s: float) -> dict:
    """The stack's stack.json once `octavius up` has written it."""
    deadline = time.monotonic() + timeout_s
    path = home / "stack.json"
    while not path.exists():
        if process.poll() is not None:
            raise RuntimeError(f"octavius up exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"stack not up after {timeout_s:.0f} s")
        time.sleep(1)
    return json.loads(path.read_text())


def stop_stack(process: subprocess.Popen[bytes]) -> None:
    """Ctrl-C for `octavius up`; anything it leaves behind is killed by process id."""
    children = descendants(process.pid)
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in children:
        if alive(pid):
            print(f"killing leftover stack process {pid}", file=sys.stderr)
            os.kill(pid, signal.SIGKILL)


async def timed(samples: Samples, request: Awaitable[httpx.Response]) -> httpx.Response | None:
    """Awaits a request, recording its latency and status; None when it got no answer."""
    started = time.perf_counter()
    try:
        response = await request
    except httpx.HTTPError as exc:
        samples.add(time.perf_counter() - started, type(exc).__name__)
        return None
    samples.add(time.perf_counter() - started, response.status_code)
    return response


async def upload(client: httpx.AsyncClient, document: tuple[str, bytes, str]) -> httpx.Response:
    """Starts the ingestion of one document."""
    return await client.post("/api/documents/upload", files=[("files", document)])


@dataclass
class RawClient:
    """One keep-alive HTTP/1.1 connection that sends requests encoded beforehand."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    @classmethod
    async def connect(cls, api_url: str) -> RawClient:
        """A connection to the API."""
        host, port = httpx.URL(api_url).host, httpx.URL(api_url).port
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def send(self, request: bytes) -> tuple[int, bytes]:
        """Writes one request; its response's status code and body (Content-Length framed)."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
        length = int({k.strip().lower(): v for k, v in headers.items()}["content-length"])
        return int(lines[0].split()[1]), await self.reader.readexactly(length)

    def close(self) -> None:
        """Closes the connection."""
        self.writer.close()


def encode(request: httpx.Request) -> bytes:
    """The bytes of an HTTP/1.1 request, as httpx builds its headers and body."""
    body = request.read()
    target = request.url.raw_path.decode()
    head = "".join(f"{name}: {value}\r\n" for name, value in request.headers.items())
    return f"{request.method} {target} HTTP/1.1\r\n{head}\r\n".encode("latin-1") + body


async def raw_burst(
    clients: list[RawClient], requests: list[bytes], samples: Samples
) -> list[tuple[int, bytes] | None]:
    """Sends request i on connection i, all at once; each answer, None when there was none."""

    async def one(client: RawClient, request: bytes) -> tuple[int, bytes] | None:
        started = time.perf_counter()
        try:
            answer = await asyncio.wait_for(client.send(request), UPLOAD_TIMEOUT_S)
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            samples.add(time.perf_counter() - started, type(exc).__name__)
            return None
        samples.add(time.perf_counter() - started, answer[0])
        return answer

    return list(await asyncio.gather(*map(one, clients, requests)))


async def warm_up(
    client: httpx.AsyncClient, document: tuple[str, bytes, str], timeout_s: float
) -> float:
    """One ingestion end to end, once the deployment is served; returns its seconds."""
    started = time.monotonic()
    deadline = started + timeout_s
    while (response := await upload(client, document)).status_code == 503:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(1)  # the deployment is registered a moment after the API answers
    if response.status_code != 202:
        raise RuntimeError(f"warm-up upload answered {response.status_code}: {response.text}")
    status_url = response.json()["status_url"]
    while time.monotonic() < deadline:
        body = (await client.get(status_url)).json()
        if body["state"] in FINAL:
            if body["state"] != "COMPLETED":
                raise RuntimeError(f"warm-up ingestion ended {body['state']}: {body['error']}")
            return time.monotonic() - started
        await asyncio.sleep(1)
    raise TimeoutError("warm-up ingestion not final in time")


@dataclass
class Outcome:
    """How one client's task ended."""

    state: str = "lost"
    seconds: float | None = None
    indexed: bool = False
    detail: str = ""


async def follow(
    client: httpx.AsyncClient,
    task_id: str,
    submitted: float,
    gets: Samples,
    health: Samples,
    interval_s: float,
    deadline: float,
    rng: random.Random,
) -> Outcome:
    """Polls one task until it is final, timing each GET and a /healthz beside it."""
    outcome = Outcome()
    failed = 0
    await asyncio.sleep(rng.uniform(0, interval_s))
    while time.monotonic() < deadline:
        response = await timed(gets, client.get(f"/api/tasks/{task_id}", timeout=POLL_TIMEOUT_S))
        await timed(health, client.get("/healthz", timeout=POLL_TIMEOUT_S))
        if response is None or response.status_code != 200:
            failed += 1
            answer = f"{response.status_code}: {response.text[:120]}" if response else "nothing"
            outcome.detail = f"{failed} polls in a row answered {answer}"
            if failed >= FAILED_POLLS_LOST:
                outcome.state = "lost"
                return outcome
            await asyncio.sleep(interval_s)
            continue
        failed = 0
        body = response.json()
        if body["state"] in FINAL:
            documents = (body.get("result") or {}).get("documents") or []
            outcome.state = body["state"]
            outcome.seconds = time.perf_counter() - submitted
            outcome.indexed = [d.get("status") for d in documents] == ["indexed"]
            outcome.detail = body.get("error") or ""
            return outcome
        outcome.state, outcome.detail = "unfinished", body["state"]
        await asyncio.sleep(interval_s)
    return outcome


async def measure(
    info: dict, stack_pid: int, documents: list, args: argparse.Namespace, home: Path
) -> bool:
    """Runs the three phases and prints their figures; True when every task completed."""
    if args.run_limit:
        await limit_runs(info["prefect_api_url"], args.run_limit, args.timeout)
    headers = {"Authorization": f"Bearer {info['api_token']}"}
    timeout = httpx.Timeout(UPLOAD_TIMEOUT_S)
    clients = [
        httpx.AsyncClient(base_url=info["api_url"], headers=headers, timeout=timeout)
        for _ in range(args.clients)
    ]
    processes = FlowProcesses()
    watcher = asyncio.create_task(processes.watch(stack_pid))
    try:
        warm_s = await warm_up(clients[0], documents[-1], args.timeout)
        print(f"warm-up: one ingestion end to end in {warm_s:.1f} s")
        held, waited_s = await asyncio.to_thread(wait_reserved, home, args.clients, 120)
        print(f"reserved ingestion runs: {held} after waiting {waited_s:.1f} s more")
        await asyncio.gather(*(client.get("/healthz") for client in clients))

        idle = Samples()

        async def baseline(client: httpx.AsyncClient) -> None:
            for _ in range(args.baseline_rounds):
                await timed(idle, client.get("/healthz"))

        await asyncio.gather(*(baseline(client) for client in clients))

        uploads, gets, health, burst_health = Samples(), Samples(), Samples(), Samples()
        deadline = time.monotonic() + args.timeout
        rng = random.Random(0)
        # Before connecting: uvicorn closes connections idle for 5 s.
        quiet_s, quiet_cpu = await asyncio.to_thread(wait_quiet, stack_pid, QUIET_TIMEOUT_S)
        raw = [await RawClient.connect(info["api_url"]) for _ in range(args.clients)]
        try:
            host = httpx.URL(info["api_url"]).netloc.decode()
            health_requests = [
                encode(httpx.Request("GET", f"{info['api_url']}/healthz", headers={"Host": host}))
            ] * args.clients
            upload_requests = [
                encode(
                    httpx.Request(
                        "POST",
                        f"{info['api_url']}/api/documents/upload",
                        headers={**headers, "Host": host},
                        files=[("files", document)],
                    )
                )
                for document in documents[: args.clients]
            ]
            await raw_burst(raw, health_requests, Samples())  # every connection used once
            await raw_burst(raw, health_requests, burst_health)
            cpu_before = stack_cpu(stack_pid)
            submitted = time.perf_counter()
            answers = await raw_burst(raw, upload_requests, uploads)
            burst_ms = (time.perf_counter() - submitted) * 1000
            burst_cpu = cpu_line(cpu_by_role(cpu_before, stack_cpu(stack_pid)))
        finally:
            for connection in raw:
                connection.close()

        async def session(client: httpx.AsyncClient, answer: tuple[int, bytes] | None) -> Outcome:
            if answer is None or answer[0] != 202:
                code = answer[0] if answer is not None else "no answer"
                return Outcome(state="upload not accepted", detail=f"upload: {code}")
            task_id = json.loads(answer[1])["task_id"]
            accepted_ids.append(task_id)
            return await follow(
                client, task_id, submitted, gets, health, args.interval, deadline, rng
            )

        accepted_ids: list[str] = []
        outcomes = await asyncio.gather(
            *(session(client, answer) for client, answer in zip(clients, answers, strict=True))
        )
    finally:
        watcher.cancel()
        await asyncio.gather(*(client.aclose() for client in clients))

    n = args.clients
    print(idle.line(f"baseline GET /healthz, idle ({n} clients x {args.baseline_rounds})"))
    print(f"stack quiet after {quiet_s:.1f} s (its last second: {quiet_cpu or 'no CPU'})")
    print(burst_health.line(f"baseline GET /healthz ({n} at once, raw client)"))
    print(uploads.line(f"POST /api/documents/upload ({n} at once, raw client)"))
    print(f"{'':<58} CPU during the {burst_ms:.0f} ms of the burst: {burst_cpu}")
    p99 = uploads.percentile(0.99)
    accepted = sum(1 for answer in answers if answer is not None and answer[0] == 202)
    verdict = "MET" if p99 < TARGET_UPLOAD_P99_S and accepted == n else "MISSED"
    print(
        f"{'':<58} target p99 of the 202 < {1000 * TARGET_UPLOAD_P99_S:.0f} ms: {verdict} "
        f"({1000 * p99:.1f} ms, {accepted}/{n} answered 202)"
    )
    print(
        f"{'':<58} answered from reserved runs: {reserved_answers(home, accepted_ids)}"
        f"/{len(accepted_ids)} (the rest created on the request path)"
    )
    print(gets.line("GET /api/tasks/{id} (each client after its 202, 1/s)"))
    print(health.line("baseline GET /healthz beside each poll"))

    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.state] = counts.get(outcome.state, 0) + 1
    finished = [o.seconds for o in outcomes if o.seconds is not None]
    not_indexed = [o for o in outcomes if o.state == "COMPLETED" and not o.indexed]
    ok = counts.get("COMPLETED", 0) == n and not not_indexed
    summary = ", ".join(f"{state} {count}" for state, count in sorted(counts.items()))
    print(
        f"ingestion of {n} tasks submitted at once: all final after "
        f"{max(finished, default=float('nan')):.1f} s (first {min(finished, default=0):.1f} s; "
        f"polled each {args.interval:g} s): {summary}; completed without an indexed "
        f"document: {len(not_indexed)} -> {'OK' if ok else 'FAILED'}"
    )
    limit = f"deployment concurrency limit {args.run_limit}" if args.run_limit else "no limit"
    print(
        f"flow-run processes ({limit}): at most {processes.peak} at once, "
        f"{processes.peak_rss_mb:.0f} MB resident then"
    )
    problems: dict[str, int] = {}
    for outcome in outcomes:
        if outcome.state != "COMPLETED" or not outcome.indexed:
            key = f"{outcome.state}: {outcome.detail}"
            problems[key] = problems.get(key, 0) + 1
    for problem, count in sorted(problems.items()):
        print(f"  {count} x {problem}")
    return ok


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=100, help="concurrent clients")
    parser.add_argument("--baseline-rounds", type=int, default=5, help="GET /healthz per client")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds for ingestion")
    parser.add_argument(
        "--run-limit", type=int, default=4, help="ingestion runs at once; 0: as shipped (none)"
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="octavius-bench-api-"))
    home = work / "home"
    documents = make_documents(work / "documents", args.clients + 1)
    env = stack_environment(home)
    log = (work / "up.log").open("wb")
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "core.cli", "up"], cwd=REPO, env=env, stdout=log, stderr=log
    )
    ok = False
    try:
        info = wait_for_stack(process, home, 300)
        print(f"stack up in {time.monotonic() - started:.1f} s at {info['api_url']}")
        ok = asyncio.run(measure(info, process.pid, documents, args, home))
        server_log = (home / "logs" / "prefect-server.log").read_text(errors="replace")
        print(f"Prefect server log: {server_log.count('database is locked')} 'database is locked'")
    finally:
        stop_stack(process)
        log.close()
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work} (logs: up.log, home/logs/)", file=sys.stderr)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
