"""The Dask task runner every parallel flow uses."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any
from uuid import uuid4

import dask.config
from distributed import LocalCluster
from prefect.context import FlowRunContext
from prefect_dask.client import PrefectDaskClient
from prefect_dask.task_runners import DaskTaskRunner, PrefectDaskFuture

from core.settings import get_settings

# Without a scheduler address: threads in the flow-run process. Worker processes cannot
# reach an ephemeral Prefect server, and one process loads the model only once.
_IN_PROCESS_CLUSTER: dict[str, Any] = {
    "n_workers": 1,
    "threads_per_worker": 2,
    "processes": False,
    "dashboard_address": None,
}


# Worker settings (see the file): `octavius up` applies them to its LocalCluster, and
# `dask worker` processes read them when DASK_CONFIG names the file.
WORKER_CONFIG_FILE = Path(__file__).resolve().parents[1] / "deployments" / "dask.yaml"
WORKER_CONFIG_ENV = {"DASK_CONFIG": str(WORKER_CONFIG_FILE)}


def local_cluster(workers: int, dashboard_address: str | None = None) -> LocalCluster:
    """A LocalCluster of `workers` single-thread worker processes, as `octavius up` runs it."""
    with dask.config.set(_dotted(dask.config.collect([str(WORKER_CONFIG_FILE)], env={}))):
        return LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=dashboard_address,
        )


def _dotted(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as dotted keys: dask.config.set would replace whole subtrees."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


class SettingsDaskTaskRunner(DaskTaskRunner):
    """A DaskTaskRunner that reads OCTAVIUS_DASK_ADDRESS when it first connects.

    Flows are decorated at import time, when settings must not be read; the Dask client
    is only made on the first submission, so a run that submits nothing starts nothing.
    """

    @property
    def client(self) -> PrefectDaskClient:
        """The Dask client, connected to the configured scheduler or a new local cluster."""
        if self._client is None and self.address is None and self._cluster is None:
            address = get_settings().dask_address
            if address:
                self.address = address
            else:
                self.cluster_kwargs = {**_IN_PROCESS_CLUSTER, **self.cluster_kwargs}
        return super().client

    def submit(  # type: ignore[override]
        self,
        task: Any,
        parameters: dict[str, Any],
        wait_for: Iterable[PrefectDaskFuture[Any]] | None = None,
        dependencies: dict[str, Any] | None = None,
    ) -> PrefectDaskFuture[Any]:
        """DaskTaskRunner.submit with a unique Dask key of our own.

        Without a key, Dask derives one by tokenizing the call, which for a Prefect task run
        includes the whole serialized run context: about 60 ms of the flow process's CPU per
        submission, for a key that is unique anyway (each submission is a new task run).
        """
        if not self._started:
            raise RuntimeError("The task runner must be started before submitting work.")
        future = self.client.submit(  # type: ignore[no-untyped-call]
            task,
            key=f"{task.name}-{uuid4().hex}",
            parameters=self._optimize_futures(parameters),
            wait_for=self._optimize_futures(wait_for) if wait_for else None,
            dependencies=dependencies,
            return_type="state",
        )
        return PrefectDaskFuture[Any](wrapped_future=future, task_run_id=future.task_run_id)


def worker_slots(default: int = 1) -> int:
    """Threads across the Dask workers of the running flow's task runner, or `default`."""
    context = FlowRunContext.get()
    runner = context.task_runner if context is not None else None
    if not isinstance(runner, DaskTaskRunner):
        return default
    try:
        workers = runner.client.scheduler_info()["workers"].values()
    except (KeyError, OSError, RuntimeError):
        return default
    return sum(int(worker["nthreads"]) for worker in workers) or default
