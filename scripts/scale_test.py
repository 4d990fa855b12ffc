"""`make scale-test`: the scale-out configuration on loopback, 100 tasks through two APIs.

Starts, all under one temporary folder: PostgreSQL (initdb; run as the `postgres` user when this
runs as root), a Prefect server on it, the `octavius` process work pool with every deployment of
prefect.yaml (`prefect deploy --all`), two `prefect worker` processes, a Dask scheduler with two
`dask worker` processes (reached through OCTAVIUS_DASK_ADDRESS), and two API processes (uvicorn)
sharing per-user limits through Prefect (OCTAVIUS_LIMITS_BACKEND=prefect). Then it submits the
tasks at once, alternating between the two APIs, waits for every one to reach a final state and
checks: every task COMPLETED, exactly one Prefect flow run per task and each ran once (one
RUNNING state, run_count 1), no other ingestion run, and every uploaded document in the
vector store exactly once with all its chunks. Every process is stopped at the end, and the
script checks that none is left. SIGTERM (CI's `timeout`) or Ctrl-C stops everything the same way
before exiting. Exit code 0 when every check passes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from core.dask import WORKER_CONFIG_ENV
from deployments.names import INGEST

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
USERS = 10
TOPICS = [
    "backup rotation keeps seven daily copies on the external disk",
    "the firewall allows only ssh and https and logs every rejected packet",
    "disk quotas are enabled with the usrquota option in the file system table",
    "el resolvedor lee sus servidores de nombres del fichero de configuración",
    "los registros se comprimen cada semana y se borran al cabo de un año",
]


def log(message: str) -> None:
    """One timestamped line on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout_s: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Polls `url` until it answers 200."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process behind {url} exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=3).status_code == 200:
                return
        time.sleep(0.5)
    raise TimeoutError(f"{url} not healthy after {timeout_s:.0f} s")


@dataclass
class Processes:
    """Every process the script started, each in its own session, stopped together."""

    logs: Path
    # An environment entry every spawned process (and each of its descendants) inherits.
    marker: str
    started: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Starts `args` with its output in logs/<name>.log."""
        out = (self.logs / f"{name}.log").open("ab")
        process = subprocess.Popen(
            args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.started.append((name, process))
        return process

    def stop(self) -> list[str]:
        """SIGTERM to every process group (newest first), SIGKILL after 20 s; the names left.

        Then SIGKILL to any process still carrying `marker` in its environment (flow runs a
        worker started in a session of their own); those count as left too.
        """
        for _, process in reversed(self.started):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for _, process in reversed(self.started):
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
        for _, process in self.started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        time.sleep(0.5)
        left = [name for name, process in self.started if _group_alive(process.pid)]
        for pid, command in _marked_processes(self.marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            left.append(f"{pid} {command[:80]}")
        return left


def _group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is still in the process group."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _marked_processes(marker: str) -> list[tuple[int, str]]:
    """Live processes (not this one) whose environment holds the entry `marker`; their commands."""
    found = []
    needle = marker.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        found.append((int(entry.name), command.strip()))
    return found


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGINT arrived: stop everything, report, exit non-zero."""


def _on_signal(signum: int, _frame: object) -> None:
    """Turns the first SIGTERM/SIGINT into `Interrupted` in the main thread; ignores the rest."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise Interrupted(signal.Signals(signum).name)


def _apt_install(package: str) -> None:
    """`apt-get install`, after `apt-get update` when the first attempt fails (empty lists)."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", package]
    if subprocess.run(install, env=env).returncode != 0:
        log(f"apt-get install {package} failed: apt-get update, then once more")
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True)
        subprocess.run(install, env=env, check=True)


@dataclass
class Postgres:
    """A throwaway PostgreSQL cluster on loopback."""

    root: Path
    port: int
    bindir: Path
    user: str | None

    @classmethod
    def find_or_install(cls, root: Path) -> Postgres:
        """A cluster folder under `root`, installing the Debian package when it is absent."""
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            if os.geteuid() != 0 or shutil.which("apt-get") is None:
                raise SystemExit("PostgreSQL is not installed and apt-get cannot install it here")
            log("Installing PostgreSQL (apt-get install postgresql) ...")
            _apt_install("postgresql")
            found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
            if not found:
                raise SystemExit("apt-get installed postgresql but no initdb is in /usr/lib")
        user = "postgres" if os.geteuid() == 0 else None  # initdb refuses to run as root
        root.mkdir(parents=True, exist_ok=True)
        if user:
            shutil.chown(root, user)
        return cls(root, free_port(), Path(found[-1]).parent, user)

    def _run(self, args: list[str]) -> None:
        prefix = ["runuser", "-u", self.user, "--"] if self.user else []
        subprocess.run(prefix + args, check=True, stdout=subprocess.DEVNULL)

    def start(self) -> str:
        """initdb, start, create the `prefect` database; the asyncpg URL."""
        data = self.root / "data"
        self._run([str(self.bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "octavius"])
        self._run(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(self.root / "postgres.log"),
                "-o",
                f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                "-c max_connections=300 -c fsync=off",
                "-w",
                "start",
            ]
        )
        subprocess.run(
            [str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
             "octavius", "prefect"],
            check=True,
        )  # fmt: skip
        return f"postgresql+asyncpg://octavius@127.0.0.1:{self.port}/prefect"

    def stop(self) -> None:
        """Fast shutdown of the cluster (no-op when it never started)."""
        if (self.root / "data" / "postmaster.pid").exists():
            self._run([str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast",
                       "-w", "stop"])  # fmt: skip


def document(number: int) -> bytes:
    """A small unique Markdown document (one or two chunks)."""
    topic = TOPICS[number % len(TOPICS)]
    body = " ".join(f"Scale note {number}.{line}: {topic}." for line in range(5))
    return f"# Scale document {number}\n\n{body}\n".encode()


@dataclass
class Submitted:
    """One task as the client saw it."""

    number: int
    user: str
    api: str
    task_id: str
    seconds: float


async def submit_all(apis: list[str], tokens: list[str], count: int) -> list[Submitted]:
    """POSTs `count` uploads at once, alternating APIs and users; each with an idempotency key."""
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(timeout=900, limits=limits) as client:

        async def one(number: int) -> Submitted:
            api = apis[number % len(apis)]
            token = tokens[number % len(tokens)]
            started = time.monotonic()
            for attempt in range(1, 4):
                try:
                    response = await client.post(
                        f"{api}/api/documents/upload",
                        headers={
                            "Authorization": f"Bearer {token}",
                            "Idempotency-Key": f"scale-{number}",
                        },
                        files=[
                            ("files", (f"scale-{number:03d}.md", document(number), "text/markdown"))
                        ],
                    )
                    break
                except httpx.TransportError as exc:
                    # The idempotency key makes the repeat return the same task, never a second.
                    if attempt == 3:
                        raise
                    log(f"upload {number}: {type(exc).__name__}; sending it again")
            seconds = time.monotonic() - started
            if response.status_code != 202:
                raise RuntimeError(f"upload {number}: {response.status_code} {response.text}")
            user = f"user{number % len(tokens)}"
            return Submitted(number, user, api, response.json()["task_id"], seconds)

        return list(await asyncio.gather(*(one(n) for n in range(count))))


def wait_reserved(home: Path, deployment: str, count: int, timeout_s: float) -> int:
    """Waits until the APIs hold `count` reserved runs of the deployment; how many they hold.

    Each API process fills its reserve in the background after it starts; submitting before
    that creates the runs on the request path. Gives up quietly after `timeout_s`.
    """
    from api.claims import CLAIMS_FILE, ClaimStore

    deadline = time.monotonic() + timeout_s
    store = ClaimStore(home / CLAIMS_FILE)
    try:
        while (held := store.count_reserved(deployment)) < count:
            if time.monotonic() > deadline:
                break
            time.sleep(1)
    finally:
        store.close()
    return held


async def wait_all_final(
    apis: list[str], tokens: dict[str, str], tasks: list[Submitted], timeout_s: float
) -> dict[str, dict[str, Any]]:
    """Polls every task (through both APIs in turn, 10 at a time) until each is final."""
    final: dict[str, dict[str, Any]] = {}
    unanswered: Counter[str] = Counter()
    deadline = time.monotonic() + timeout_s
    gate = asyncio.Semaphore(10)
    async with httpx.AsyncClient(timeout=120) as client:

        async def poll(task: Submitted, api: str) -> None:
            try:
                async with gate:
                    response = await client.get(
                        f"{api}/api/tasks/{task.task_id}",
                        headers={"Authorization": f"Bearer {tokens[task.user]}"},
                    )
            except httpx.TransportError as exc:
                # A keep-alive connection the API closed as it was reused, a slow answer: the
                # next sweep asks again; a task never answered ends as "not final".
                unanswered[type(exc).__name__] += 1
                return
            if response.status_code == 429 or response.status_code >= 500:
                unanswered[str(response.status_code)] += 1
                return
            response.raise_for_status()
            body = response.json()
            if body["state"] in FINAL:
                final[task.task_id] = body

        sweep = 0
        reported = (-1, 0.0)
        while len(final) < len(tasks) and time.monotonic() < deadline:
            pending = [task for task in tasks if task.task_id not in final]
            await asyncio.gather(
                *(poll(task, apis[(sweep + n) % len(apis)]) for n, task in enumerate(pending))
            )
            sweep += 1
            if len(final) != reported[0] or time.monotonic() - reported[1] > 30:
                log(f"{len(final)}/{len(tasks)} tasks final")
                reported = (len(final), time.monotonic())
            await asyncio.sleep(2)
    if unanswered:
        log(f"polls asked again after no answer: {dict(unanswered)}")
    return final


def check_runs(prefect_api_url: str, tasks: list[Submitted]) -> list[str]:
    """Problems found in Prefect's records: lost, duplicated or repeated runs."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from deployments.names import INGEST_FLOW, RESERVED_TAG

    problems: list[str] = []
    ids = {task.task_id for task in tasks}
    if len(ids) != len(tasks):
        problems.append(f"{len(tasks)} submissions got only {len(ids)} distinct task ids")
    # Prefect's settings were read when it was first imported: name the server explicitly.
    with (
        temporary_settings(updates={PREFECT_API_URL: prefect_api_url}),
        get_client(sync_client=True) as prefect,
    ):
        runs = []
        offset = 0
        while True:
            page = prefect.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[INGEST_FLOW])),
                limit=200,
                offset=offset,
            )
            runs.extend(page)
            if len(page) < 200:
                break
            offset += 200
        # Runs the APIs reserved ahead of demand and never handed out are nobody's task.
        ingest_runs = [r for r in runs if RESERVED_TAG not in r.tags]
        extra = {str(r.id) for r in ingest_runs} - ids
        if extra:
            problems.append(f"{len(extra)} ingestion runs nobody submitted")
        missing = ids - {str(r.id) for r in ingest_runs}
        if missing:
            problems.append(f"{len(missing)} submitted tasks have no flow run")
        for run in ingest_runs:
            if str(run.id) not in ids:
                continue
            states = prefect.read_flow_run_states(run.id)
            running = sum(1 for s in states if s.type.value == "RUNNING")
            completed = sum(1 for s in states if s.type.value == "COMPLETED")
            if running != 1 or completed != 1 or run.run_count != 1:
                problems.append(
                    f"run {run.id}: {running} RUNNING, {completed} COMPLETED states, "
                    f"run_count {run.run_count}"
                )
    return problems


def check_points(home: Path, tasks: list[Submitted]) -> tuple[list[str], int]:
    """Problems in the vector store (every document once, all chunks, no others); points."""
    os.environ["OCTAVIUS_HOME"] = str(home)
    from core.settings import get_settings
    from core.store import get_store
    from tasks.indexing import point_id

    get_settings.cache_clear()
    store = get_store(get_settings())
    problems: list[str] = []
    expected = {(t.user, f"scale-{t.number:03d}.md") for t in tasks}
    seen: Counter[tuple[str, str]] = Counter()
    points = 0
    for user in sorted({t.user for t in tasks}):
        by_doc: dict[str, list[tuple[str, int, int, str, str]]] = {}
        for pid, payload in store.scroll(user):
            by_doc.setdefault(payload.doc_id, []).append(
                (pid, payload.chunk_index, payload.chunk_count, payload.version,
                 Path(payload.source).name)
            )  # fmt: skip
            points += 1
        for doc_id, rows in by_doc.items():
            name = rows[0][4]
            seen[(user, name)] += 1
            version = rows[0][3]
            count = rows[0][2]
            ids = {point_id(user, doc_id, version, i) for i in range(count)}
            if {r[0] for r in rows} != ids or len(rows) != count:
                problems.append(f"{user}/{name}: {len(rows)} points, {count} chunks expected")
    for key in expected - set(seen):
        problems.append(f"{key[0]}/{key[1]} is not in the store")
    for key, number in seen.items():
        if key not in expected:
            problems.append(f"{key[0]}/{key[1]} is in the store but was never submitted")
        elif number != 1:
            problems.append(f"{key[0]}/{key[1]} is stored {number} times")
    return problems, points


def main() -> int:
    """Runs the whole scale test; 0 when every check passes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100, help="tasks to submit at once")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds for all to finish")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    # `timeout` (CI) sends SIGTERM: unwind through `finally` so every process is stopped.
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    root = Path(tempfile.mkdtemp(prefix="octavius-scale-"))
    root.chmod(0o755)
    logs = root / "logs"
    logs.mkdir()
    home = root / "home"
    prefect_home = root / "prefect-home"
    processes = Processes(logs, marker=f"PREFECT_HOME={prefect_home}")
    postgres = Postgres.find_or_install(root / "postgres")
    timings: dict[str, float] = {}
    problems: list[str] = []
    tokens = {f"user{n}": f"token-{n}-{uuid.uuid4().hex}" for n in range(USERS)}
    started = time.monotonic()
    try:
        mark = time.monotonic()
        database_url = postgres.start()
        timings["postgres start"] = time.monotonic() - mark
        log(f"PostgreSQL on port {postgres.port}")

        prefect_port = free_port()
        prefect_api_url = f"http://127.0.0.1:{prefect_port}/api"
        env = dict(os.environ)
        for name in list(env):
            if name.startswith(("OCTAVIUS_", "PREFECT_")):
                del env[name]
        env.update(
            {
                "PREFECT_HOME": str(prefect_home),
                "PREFECT_API_URL": prefect_api_url,
                "PREFECT_API_DATABASE_CONNECTION_URL": database_url,
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                # No scheduled reindex or cleanup runs while we count ingestion runs.
                "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
                "PREFECT_LOCAL_STORAGE_PATH": str(home / "results"),
                "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
                "PREFECT_RUNNER_POLL_FREQUENCY": "1",
                "PREFECT_WORKER_QUERY_SECONDS": "2",
                "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30",
                "OCTAVIUS_HOME": str(home),
                "OCTAVIUS_PROJECT_DIR": str(REPO),
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false",
                "PATH": f"{BIN}:{env.get('PATH', '')}",
            }
        )

        mark = time.monotonic()
        server = processes.spawn(
            "prefect-server",
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port",
             str(prefect_port)],
            env,
        )  # fmt: skip
        wait_http(f"{prefect_api_url}/health", 240, server)
        timings["prefect server on PostgreSQL healthy"] = time.monotonic() - mark
        log(f"Prefect server {prefect_api_url}")

        mark = time.monotonic()
        subprocess.run(
            [str(BIN / "prefect"), "work-pool", "create", "octavius", "--type", "process"],
            cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        subprocess.run(
            [str(BIN / "prefect"), "--no-prompt", "deploy", "--all"],
            cwd=REPO, env=env, check=True, stdout=(logs / "deploy.log").open("wb"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        timings["work pool + prefect deploy --all"] = time.monotonic() - mark

        mark = time.monotonic()
        dask_port = free_port()
        dask_address = f"tcp://127.0.0.1:{dask_port}"
        processes.spawn(
            "dask-scheduler",
            [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(dask_port),
             "--no-dashboard"],
            env,
        )  # fmt: skip
        # Workers keep glibc's adaptive malloc (deployments/dask.yaml).
        worker_env = {**env, **WORKER_CONFIG_ENV}
        for n in (1, 2):
            processes.spawn(
                f"dask-worker-{n}",
                [str(BIN / "dask"), "worker", dask_address, "--nthreads", "1", "--nworkers",
                 "1", "--name", f"worker-{n}", "--no-dashboard", "--memory-limit", "2GiB"],
                worker_env,
            )  # fmt: skip
        _wait_dask_workers(dask_address, 2, 120)
        timings["dask scheduler + 2 workers"] = time.monotonic() - mark
        env["OCTAVIUS_DASK_ADDRESS"] = dask_address
        log(f"Dask scheduler {dask_address} with 2 workers")

        for n in (1, 2):
            processes.spawn(
                f"prefect-worker-{n}",
                [str(BIN / "prefect"), "worker", "start", "--pool", "octavius", "--name",
                 f"scale-worker-{n}"],
                env,
            )  # fmt: skip

        mark = time.monotonic()
        api_env = dict(
            env,
            OCTAVIUS_LIMITS_BACKEND="prefect",
            OCTAVIUS_API_TOKENS=json.dumps({token: user for user, token in tokens.items()}),
        )
        apis = []
        for n in (1, 2):
            port = free_port()
            api = processes.spawn(
                f"api-{n}",
                [str(BIN / "python"), "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1",
                 "--port", str(port)],
                api_env,
            )  # fmt: skip
            apis.append((f"http://127.0.0.1:{port}", api))
        for url, api in apis:
            wait_http(f"{url}/readyz", 240, api)
        timings["2 API processes ready"] = time.monotonic() - mark
        mark = time.monotonic()
        held = wait_reserved(home, INGEST, args.tasks, 300)
        timings["reserved ingestion runs filled"] = time.monotonic() - mark
        log(f"{held} reserved ingestion runs ready")
        api_urls = [url for url, _ in apis]
        log(f"APIs {', '.join(api_urls)}; submitting {args.tasks} tasks at once")

        mark = time.monotonic()
        token_list = [tokens[f"user{n}"] for n in range(USERS)]
        tasks = asyncio.run(submit_all(api_urls, token_list, args.tasks))
        timings["submit all (wall)"] = time.monotonic() - mark
        latencies = sorted(t.seconds for t in tasks)
        timings["202 latency min"] = latencies[0]
        timings["202 latency p50"] = statistics.median(latencies)
        timings["202 latency max"] = latencies[-1]

        mark = time.monotonic()
        final = asyncio.run(wait_all_final(api_urls, tokens, tasks, args.timeout))
        timings["until every task final"] = time.monotonic() - mark
        states = Counter(body["state"] for body in final.values())
        log(f"final states: {dict(states)}")
        if len(final) != len(tasks):
            problems.append(f"{len(tasks) - len(final)} tasks not final after {args.timeout} s")
        for task_id, body in final.items():
            if body["state"] != "COMPLETED":
                problems.append(f"task {task_id} ended {body['state']}: {body.get('error')}")
            elif body["result"]["indexed"] != 1:
                problems.append(f"task {task_id} indexed {body['result']['indexed']} documents")
        problems.extend(check_runs(prefect_api_url, tasks))
        point_problems, points = check_points(home, tasks)
        problems.extend(point_problems)
        timings["points in the store"] = points
    except Interrupted as exc:
        problems.append(f"interrupted by {exc} after {time.monotonic() - started:.0f} s")
    except Exception as exc:  # report, then still stop everything
        problems.append(f"scale test aborted: {type(exc).__name__}: {exc}")
    finally:
        # Nothing interrupts the cleanup (CI's `timeout --kill-after` is the last resort).
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        mark = time.monotonic()
        left = processes.stop()
        postgres.stop()
        timings["stop everything"] = time.monotonic() - mark
        if left:
            problems.append(f"processes left running: {left}")
        timings["total"] = time.monotonic() - started

    for name, value in timings.items():
        unit = "" if name == "points in the store" else " s"
        print(f"{name:40s} {value:10.2f}{unit}" if unit else f"{name:40s} {value:10.0f}")
    if problems:
        print(f"\nFAILED ({len(problems)} problems); logs in {root}")
        for problem in problems[:50]:
            print(f"  - {problem}")
        return 1
    print(f"\nOK: {args.tasks} tasks, each COMPLETED once; every document stored exactly once")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"kept {root}")
    return 0


def _wait_dask_workers(address: str, count: int, timeout_s: float) -> None:
    """Blocks until `count` workers are connected to the scheduler."""
    from distributed import Client

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with Client(address, timeout=10) as client:  # type: ignore[no-untyped-call]
                client.wait_for_workers(count, timeout=max(1, deadline - time.monotonic()))
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


if __name__ == "__main__":
    try:
        code = main()
    except Interrupted as exc:  # before anything was started (e.g. during apt-get)
        print(f"interrupted by {exc}", file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    # A Prefect client thread can keep the interpreter from exiting; every child is stopped.
    os._exit(code)
