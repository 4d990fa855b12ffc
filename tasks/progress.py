"""Progress of a flow run, shown in the Prefect UI (artifact), to the API (events) and the CLI."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.context import get_run_context
from prefect.events import emit_event
from pydantic import BaseModel, Field

from deployments.names import PROGRESS_EVENT

logger = logging.getLogger(__name__)


class ProgressUpdate(BaseModel):
    """One progress report of a flow run."""

    stage: str
    done: int = Field(ge=0)
    total: int = Field(ge=0)
    percent: float = Field(ge=0, le=100)
    message: str


Listener = Callable[[ProgressUpdate], None]
_listeners: list[Listener] = []


def add_listener(listener: Listener) -> None:
    """Registers an in-process callback (the CLI's progress bar) for every update."""
    _listeners.append(listener)


def remove_listener(listener: Listener) -> None:
    """Unregisters a callback added with add_listener."""
    if listener in _listeners:
        _listeners.remove(listener)


class ProgressReporter:
    """Reports weighted stages of one flow run; call only from the flow's own process."""

    def __init__(self, stages: dict[str, float], min_interval_s: float = 0.5) -> None:
        total = sum(stages.values())
        self._bands: dict[str, tuple[float, float]] = {}
        start = 0.0
        for name, weight in stages.items():
            width = 100.0 * weight / total
            self._bands[name] = (start, start + width)
            start += width
        self._min_interval_s = min_interval_s
        self._last_sent = 0.0
        self._last_stage = ""
        self._flow_run_id = self._current_flow_run_id()
        self._artifact_id: UUID | None = None
        if self._flow_run_id is not None:
            created = create_progress_artifact(0.0, description="Starting")
            self._artifact_id = created if isinstance(created, UUID) else None

    @staticmethod
    def _current_flow_run_id() -> str | None:
        context = get_run_context()
        flow_run = getattr(context, "flow_run", None)
        return str(flow_run.id) if flow_run is not None else None

    def update(self, stage: str, done: int, total: int, message: str) -> ProgressUpdate:
        """Reports `done` of `total` in `stage`; throttled except at stage boundaries."""
        low, high = self._bands[stage]
        fraction = done / total if total else 1.0
        update = ProgressUpdate(
            stage=stage,
            done=done,
            total=total,
            percent=round(low + (high - low) * min(fraction, 1.0), 1),
            message=message,
        )
        for listener in list(_listeners):
            listener(update)
        now = time.monotonic()
        boundary = stage != self._last_stage or done >= total
        if boundary or now - self._last_sent >= self._min_interval_s:
            self._send(update)
            self._last_sent = now
            self._last_stage = stage
        return update

    def finish(self, message: str) -> None:
        """Reports 100 % with a closing message."""
        last = list(self._bands)[-1]
        update = ProgressUpdate(stage=last, done=1, total=1, percent=100.0, message=message)
        for listener in list(_listeners):
            listener(update)
        self._send(update)

    def _send(self, update: ProgressUpdate) -> None:
        if self._flow_run_id is None:
            return
        if self._artifact_id is not None:
            update_progress_artifact(self._artifact_id, update.percent, description=update.message)
        emit_event(
            event=PROGRESS_EVENT,
            resource={"prefect.resource.id": f"prefect.flow-run.{self._flow_run_id}"},
            payload=update.model_dump(),
        )
