"""Dask workers keep glibc's adaptive malloc: Dask's trim threshold slows PyTorch down."""

from __future__ import annotations

import os
import subprocess
import sys

from distributed import Client

from core.dask import WORKER_CONFIG_ENV, local_cluster


def _trim_threshold() -> str | None:
    return os.environ.get("MALLOC_TRIM_THRESHOLD_")


def test_local_cluster_workers_keep_glibc_malloc_defaults() -> None:
    with local_cluster(1) as cluster, Client(cluster) as client:  # type: ignore[no-untyped-call]
        assert list(client.run(_trim_threshold).values()) == [None]
        assert list(client.run(os.environ.get, "OMP_NUM_THREADS").values()) == ["1"]


def test_dask_worker_config_file_drops_the_trim_threshold() -> None:
    """What `dask worker` processes with DASK_CONFIG set get from their nanny."""
    script = (
        "from distributed.nanny import _get_env_variables\n"
        "print(sorted(_get_env_variables('distributed.nanny.pre-spawn-environ')))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_TRIM_THRESHOLD_"}
    defaults = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout
    configured = subprocess.run(
        [sys.executable, "-c", script],
        env={**env, **WORKER_CONFIG_ENV},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "MALLOC_TRIM_THRESHOLD_" in defaults
    assert "MALLOC_TRIM_THRESHOLD_" not in configured
    assert "OMP_NUM_THREADS" in configured
