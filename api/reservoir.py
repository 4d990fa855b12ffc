"""Flow runs created ahead of demand, so a POST answers 202 without waiting for Prefect.

Per deployment the API starts, each process keeps `reserved_runs` runs in Prefect as
Scheduled "Reserved" far in the future (no worker or runner looks that far ahead, and the
late-runs service only marks runs whose time passed), tagged `octavius:reserved` and with the
process's instance. A request claims one in the local claims table (api/claims.py) and answers
with its id; one pusher per process then writes the claim to Prefect (parameters, tags, then
Scheduled now, or Cancelled when the owner cancelled first), idempotently and with backoff while
Prefect is busy. Refills run in the background in small batches, and wait while claims are
waiting to be pushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from uuid import UUID

from fastapi import HTTPException
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun, State, StateType
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelled, Cancelling, Scheduled

from api.claims import Claim, ClaimStore
from deployments.names import RESERVED_STATE, RESERVED_TAG

logger = logging.getLogger(__name__)

INSTANCE_TAG: Final = "octavius:instance:"
# Pushed runs carry their scoped idempotency key, so any API process finds them in Prefect.
KEY_TAG: Final = "octavius:key:"
# Far enough that nothing schedules it: runners prefetch seconds ahead, workers minutes.
RESERVED_AHEAD: Final = timedelta(days=36525)
_BATCH: Final = 20  # runs per bulk creation: one short Prefect transaction
_BATCH_PAUSE_S: Final = 0.2
_IDLE_S: Final = 2.0
_PUSH_CONCURRENCY: Final = 4
_PUSH_LEASE_S: Final = 30.0
_PUSH_QUIET_S: Final = 0.05
_PUSH_HOLD_S: Final = 1.0
_BACKOFF_S: Final = (0.5, 30.0)
_HEARTBEAT_S: Final = 10.0
_FINAL: Final = frozenset(
    {StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED}
)


def is_reserved(run: FlowRun) -> bool:
    """Whether a run is still a reserved one, not yet given to a task."""
    return run.state is not None and run.state.name == RESERVED_STATE


class Reservoir:
    """One process's reserved runs per deployment, and its pusher of claims."""

    def __init__(
        self,
        store: ClaimStore,
        client: PrefectClient,
        deployment_ids: Callable[[PrefectClient, str], Awaitable[UUID]],
        deployments: Sequence[str],
        size: int,
    ) -> None:
        """A reservoir of `size` runs per deployment; `deployment_ids` finds a deployment's id."""
        self.store = store
        self.instance = uuid.uuid4().hex[:12]
        self._client = client
        self._deployment_id = deployment_ids
        self._deployments = list(deployments)
        self._size = size
        self._claimed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.pushed = 0
        self.push_failures = 0

    def start(self) -> None:
        """Starts the pusher (always: claims of an earlier process may wait) and the refill."""
        self.store.heartbeat(self.instance)
        self._tasks.append(asyncio.create_task(self._push_forever(), name="octavius-pusher"))
        if self._size > 0:
            self._tasks.append(asyncio.create_task(self._refill_forever(), name="octavius-refill"))

    async def stop(self) -> None:
        """Stops both loops and hands this process's reserved runs to the next one."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self.store.leave(self.instance)

    async def claim(
        self,
        deployment: str,
        *,
        user: str,
        kind: str,
        parameters: dict[str, Any],
        scoped_key: str | None,
    ) -> tuple[Claim, bool] | None:
        """A reserved run claimed for a new task (True), the key's earlier claim (False) or None."""
        claimed = await self.store.claim(
            deployment, user=user, kind=kind, parameters=parameters, scoped_key=scoped_key
        )
        if claimed is not None and claimed[1]:
            self._claimed.set()
        return claimed

    async def _refill_forever(self) -> None:
        delay = _BACKOFF_S[0]
        last_beat = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                if loop.time() - last_beat > _HEARTBEAT_S:
                    adopted = self.store.heartbeat(self.instance)
                    if adopted:
                        logger.info("adopted %d reserved runs of stopped API processes", adopted)
                    last_beat = loop.time()
                    await self._retire_expired()
                if self.store.count_unpushed():
                    # Claims first: Prefect's writes go to the pusher while there is a backlog.
                    await asyncio.sleep(_BATCH_PAUSE_S)
                    continue
                made = await self._refill_once()
                delay = _BACKOFF_S[0]
                await asyncio.sleep(_BATCH_PAUSE_S if made else _IDLE_S)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("reserving runs failed (%r); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, _BACKOFF_S[1])

    async def _refill_once(self) -> int:
        """Reserves one batch for the first deployment below its size; how many were made.

        Deployments fill in the order given (ingestion first: uploads come in bursts). One
        that is not registered yet (serve() registers it after the API starts) is skipped.
        """
        for name in self._deployments:
            deficit = self._size - self.store.count_reserved(name, self.instance)
            if deficit <= 0:
                continue
            try:
                deployment_id = await self._deployment_id(self._client, name)
            except HTTPException:
                continue
            runs = await self._create_reserved(deployment_id, min(deficit, _BATCH))
            self.store.add_reserved(name, runs, self.instance)
            return len(runs)
        return 0

    async def _create_reserved(self, deployment_id: UUID, count: int) -> list[tuple[str, datetime]]:
        base = datetime.now(UTC) + RESERVED_AHEAD
        # Distinct times, in the order the runs are handed out: a listing sorts by them.
        times = [base + timedelta(milliseconds=i) for i in range(count)]
        body = [
            {
                "state": {
                    "type": StateType.SCHEDULED.value,
                    "name": RESERVED_STATE,
                    "state_details": {"scheduled_time": at.isoformat()},
                },
                "tags": [RESERVED_TAG, f"{INSTANCE_TAG}{self.instance}"],
                "parameters": {},
                # The task's parameters come with its claim; none are valid before.
                "enforce_parameter_schema": False,
            }
            for at in times
        ]
        response = await self._client._client.post(
            f"/deployments/{deployment_id}/create_flow_run/bulk", json=body
        )
        results = response.json()["results"]
        return [
            (str(result["flow_run_id"]), at)
            for result, at in zip(results, times, strict=True)
            if result.get("flow_run_id") is not None
        ]

    async def _retire_expired(self) -> None:
        for run_id in self.store.take_expired(self.instance):
            with contextlib.suppress(ObjectNotFound):
                await self._client.delete_flow_run(UUID(run_id))

    async def _quiet(self) -> None:
        """Waits until claims stop arriving for a moment (at most _PUSH_HOLD_S): a burst of
        POSTs is answered first, since pushing parses Prefect's answers on the same loop."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _PUSH_HOLD_S
        while loop.time() < deadline:
            self._claimed.clear()
            try:
                await asyncio.wait_for(self._claimed.wait(), _PUSH_QUIET_S)
            except TimeoutError:
                return

    async def _push_forever(self) -> None:
        while True:
            if self._claimed.is_set():
                await self._quiet()
            try:
                claims = self.store.lease_due(_PUSH_CONCURRENCY, _PUSH_LEASE_S)
            except sqlite3.Error as exc:
                logger.warning("reading claims to push failed (%r); retrying in 1 s", exc)
                await asyncio.sleep(1.0)
                continue
            if not claims:
                self._claimed.clear()
                # Other processes' claims and postponed pushes are picked up within a second.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._claimed.wait(), 1.0)
                continue
            await asyncio.gather(*(self._push_one(claim) for claim in claims))

    async def _push_one(self, claim: Claim) -> None:
        try:
            await push_claim(self._client, self.store, claim)
            self.pushed += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.push_failures += 1
            with contextlib.suppress(sqlite3.Error):
                self._postpone(claim, exc)

    def _postpone(self, claim: Claim, exc: Exception) -> None:
        """Leaves a failed push for an exponentially growing, jittered while."""
        low, high = _BACKOFF_S
        delay = min(high, low * 2 ** self.store.attempts(claim.run_id)) * random.uniform(0.5, 1.0)
        self.store.postpone(claim, delay)
        logger.warning(
            "pushing the claim on run %s failed (%r); retrying in %.1f s", claim.run_id, exc, delay
        )


def claim_tags(run: FlowRun, claim: Claim) -> list[str]:
    """The run's tags once claimed: reserved and instance tags gone, kind, owner and key added."""
    from api.prefect_tasks import KIND_TAG, USER_TAG

    kept = [t for t in run.tags if t != RESERVED_TAG and not t.startswith(INSTANCE_TAG)]
    added = [f"{KIND_TAG}{claim.kind}", f"{USER_TAG}{claim.user}"]
    if claim.scoped_key is not None:
        added.append(f"{KEY_TAG}{claim.scoped_key}")
    return sorted(set(kept) | set(added))


async def push_claim(client: PrefectClient, store: ClaimStore, claim: Claim) -> None:
    """Writes a claim to Prefect; safe to repeat at any point, as a retry or another process.

    The run gets its parameters and tags first, then leaves the Reserved state: Scheduled now,
    or Cancelled when the owner cancelled before the push. A run that already left it is only
    cancelled (as DELETE does) when the cancellation came after the push.
    """
    try:
        run = await client.read_flow_run(UUID(claim.run_id))
    except ObjectNotFound:
        # Only deleting the deployment (or the run) takes a reserved run away.
        store.mark_pushed(claim, error="its reserved flow run was deleted before it started")
        logger.error("reserved run %s of a claim no longer exists", claim.run_id)
        return
    await client.update_flow_run(run.id, parameters=claim.parameters, tags=claim_tags(run, claim))
    if is_reserved(run):
        state: State[Any] = (
            Cancelled(message="Cancelled by its owner") if claim.cancelled else Scheduled()
        )
        await client.set_flow_run_state(run.id, state, force=True)
    elif claim.cancelled and run.state is not None and run.state.type not in _FINAL:
        await client.set_flow_run_state(run.id, Cancelling(message="Cancelled by its owner"))
    # False when cancelled meanwhile: the lease is cleared and the next push cancels the run.
    store.mark_pushed(claim)
