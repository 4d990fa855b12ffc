"""The embedded stack: Prefect server, Dask cluster, served deployments and the API."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from pydantic import BaseModel, Field

from core.settings import Settings
from deployments.names import MULTIPROCESS_ENV

logger = logging.getLogger(__name__)

STACK_FILE = "stack.json"
#: Seconds between flow-run heartbeats in every process of the stack (Prefect's minimum is 30).
HEARTBEAT_S = 30
TOKENS_FILE = "api-tokens.json"


class StackInfo(BaseModel):
    """Where a running embedded stack can be reached; written to OCTAVIUS_HOME/stack.json."""

    pid: int
    api_token: str | None = Field(
        default=None, description="Local API token written by the stack, when none is configured."
    )
    prefect_api_url: str
    prefect_ui_url: str
    api_url: str
    dask_address: str


def read_stack(settings: Settings) -> StackInfo | None:
    """The running stack of this OCTAVIUS_HOME, or None when none is up."""
    path = settings.home / STACK_FILE
    try:
        info = StackInfo.model_validate_json(path.read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(info.pid, 0)
    except OSError:
        return None
    return info


def child_environment(settings: Settings, prefect_api_url: str) -> dict[str, str]:
    """Environment every process of the stack shares."""
    home = settings.home.resolve()
    env = dict(os.environ)
    env.update(
        {
            "OCTAVIUS_HOME": str(home),
            "PREFECT_API_URL": prefect_api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_RUNNER_POLL_FREQUENCY": env.get("PREFECT_RUNNER_POLL_FREQUENCY", "1"),
            # Heartbeats let the crash automation (deployments/automations.py) mark the runs
            # of a killed process CRASHED.
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": env.get(
                "PREFECT_FLOWS_HEARTBEAT_FREQUENCY", str(HEARTBEAT_S)
            ),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
    )
    env.setdefault("PREFECT_HOME", str(home / "prefect"))
    env.setdefault("PREFECT_LOCAL_STORAGE_PATH", str(home / "results"))
    return env


def api_environment(env: dict[str, str], settings: Settings) -> dict[str, str]:
    """The API's environment. With several workers on one port, request metrics go to files
    that every worker writes (Prometheus multiprocess mode, in a folder emptied here), so the
    /metrics of whichever worker answers counts the requests of all."""
    if settings.api_workers == 1:
        return env
    folder = settings.home.resolve() / "prometheus"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return {**env, MULTIPROCESS_ENV: str(folder)}


def wait_healthy(url: str, timeout_s: float, alive: Callable[[], bool]) -> None:
    """Polls a health URL until it answers 200; raises when it never does."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"process behind {url} exited before it was healthy")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not healthy after {timeout_s:.0f} s")


def _warm_worker() -> str:
    from core.embedder import get_embedder
    from core.settings import get_settings

    return get_embedder(get_settings()).model_id


@dataclass
class Stack:
    """Starts and stops the processes of the embedded stack."""

    settings: Settings
    echo: Callable[[str], None] = print
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    cluster: object | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)

    def _spawn(
        self, args: list[str], env: dict[str, str], log_name: str
    ) -> subprocess.Popen[bytes]:
        log_dir = self.settings.home / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        log = (log_dir / f"{log_name}.log").open("ab")
        process = subprocess.Popen(
            args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.processes.append(process)
        return process

    def run(self) -> None:
        """Starts everything, waits until interrupted, then stops every child."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self._stopping.set())
        try:
            info = self.start()
            self.echo(f"Prefect UI   {info.prefect_ui_url}")
            self.echo(f"Prefect API  {info.prefect_api_url}")
            self.echo(f"Octavius API {info.api_url}  (docs at {info.api_url}/docs)")
            if info.api_token:
                self.echo(
                    f"API token    {info.api_token}  (user {self.settings.tenant}; "
                    f"curl -H 'Authorization: Bearer {info.api_token}' ...)"
                )
            self.echo(f"Dask         {info.dask_address}")
            self.echo("Ready. Ctrl-C stops the stack.")
            while not self._stopping.wait(1.0):
                for process in self.processes:
                    if process.poll() is not None:
                        self.echo(f"a stack process exited ({process.args!r}); stopping")
                        self._stopping.set()
        finally:
            self.stop()

    def start(self) -> StackInfo:
        """Starts the server (unless one is configured), the cluster, serve() and the API."""
        settings = self.settings
        settings.home.mkdir(parents=True, exist_ok=True)
        external_api = os.environ.get("PREFECT_API_URL")
        prefect_api_url = external_api or f"http://127.0.0.1:{settings.prefect_port}/api"
        env = child_environment(settings, prefect_api_url)
        if not external_api:
            self.echo(f"Starting Prefect server on SQLite under {env['PREFECT_HOME']} ...")
            server = self._spawn(
                [
                    sys.executable,
                    "-m",
                    "prefect",
                    "server",
                    "start",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(settings.prefect_port),
                ],
                env,
                "prefect-server",
            )
            wait_healthy(f"{prefect_api_url}/health", 120, lambda: server.poll() is None)
        self._apply_automations(prefect_api_url)
        token = self._ensure_token(env)
        dask_address = settings.dask_address or self._start_cluster(env)
        env["OCTAVIUS_DASK_ADDRESS"] = dask_address
        self.echo("Serving deployments and starting the API ...")
        self._spawn([sys.executable, "-m", "deployments.serve"], env, "serve")
        api = self._spawn(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "api.main:app",
                "--host",
                settings.api_host,
                "--port",
                str(settings.api_port),
                "--workers",
                str(settings.api_workers),
            ],
            api_environment(env, settings),
            "api",
        )
        api_url = f"http://{settings.api_host}:{settings.api_port}"
        wait_healthy(f"{api_url}/healthz", 120, lambda: api.poll() is None)
        info = StackInfo(
            pid=os.getpid(),
            api_token=token,
            prefect_api_url=prefect_api_url,
            prefect_ui_url=prefect_api_url.removesuffix("/api"),
            api_url=api_url,
            dask_address=dask_address,
        )
        (settings.home / STACK_FILE).write_text(json.dumps(info.model_dump(), indent=2))
        return info

    def _apply_automations(self, prefect_api_url: str) -> None:
        """Creates or updates the repository's automations; a failure only warns."""
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from deployments.automations import apply_automations

        try:
            with temporary_settings({PREFECT_API_URL: prefect_api_url}):
                apply_automations(self.settings)
        except Exception as exc:
            logger.warning("could not apply the automations: %s", exc)
            self.echo(f"Automations not applied ({exc}); run `make alerts` later.")

    def _ensure_token(self, env: dict[str, str]) -> str | None:
        """A local API token for OCTAVIUS_TENANT when no token is configured; returns it."""
        settings = self.settings
        if settings.api_tokens or settings.service_token or settings.api_tokens_file:
            return None
        path = settings.home.resolve() / TOKENS_FILE
        if not path.exists():
            path.touch(mode=0o600)
            path.write_text(json.dumps({secrets.token_urlsafe(24): settings.tenant}))
        env["OCTAVIUS_API_TOKENS_FILE"] = str(path)
        return str(next(iter(json.loads(path.read_text()))))

    def _start_cluster(self, env: dict[str, str]) -> str:
        from distributed import Client

        from core.dask import local_cluster

        self.echo(f"Starting a Dask LocalCluster with {self.settings.dask_workers} workers ...")
        # Worker processes inherit this process's environment.
        os.environ.update(env)
        cluster = local_cluster(self.settings.dask_workers, dashboard_address=":0")
        self.cluster = cluster
        with Client(cluster) as client:  # type: ignore[no-untyped-call]
            client.run(_warm_worker)
        return str(cluster.scheduler_address)

    def stop(self) -> None:
        """Stops every child process group, the cluster, and forgets the stack file."""
        (self.settings.home / STACK_FILE).unlink(missing_ok=True)
        for process in reversed(self.processes):
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in reversed(self.processes):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()
        self.processes.clear()
        if self.cluster is not None:
            self.cluster.close()  # type: ignore[attr-defined]
            self.cluster = None


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
