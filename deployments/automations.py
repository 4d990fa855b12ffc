"""Prefect automations of Octavius, defined here and applied by `octavius up` and `make alerts`.

- Crash zombie runs: every flow run sends a heartbeat event (PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
  set by the stack); a run that sent one and then nothing (no heartbeat, no final state) for
  OCTAVIUS_CRASH_AFTER_S is marked CRASHED, so a killed worker's run never stays RUNNING.
- Queue backlog: fires when the alert threshold of runs turned Late (scheduled, not started
  in time) within the alert window.
- Deployment failures: fires when one deployment has the threshold of failed or crashed runs
  within the alert window.

The alerts fire events that the Prefect UI lists under the automation; attach a notification
(Slack, e-mail, webhook block) to them there or with `prefect automation` commands.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Final

from prefect.automations import AutomationCore
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState, DoNothing
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification

from core.settings import Settings
from deployments.stack import HEARTBEAT_S

__all__ = ["BACKLOG", "FAILURES", "HEARTBEAT_S", "ZOMBIE", "apply_automations", "automations"]

logger = logging.getLogger(__name__)


ZOMBIE: Final = "octavius-crash-zombie-runs"
BACKLOG: Final = "octavius-queue-backlog"
FAILURES: Final = "octavius-deployment-failures"

_FINAL_EVENTS = {
    "prefect.flow-run.Completed",
    "prefect.flow-run.Failed",
    "prefect.flow-run.Cancelled",
    "prefect.flow-run.Crashed",
}


def automations(settings: Settings) -> list[AutomationCore]:
    """Every automation the repository defines, for the given thresholds."""
    window = timedelta(minutes=settings.alert_window_minutes)
    flow_runs = ResourceSpecification({"prefect.resource.id": "prefect.flow-run.*"})
    return [
        AutomationCore(
            name=ZOMBIE,
            description="Marks a flow run CRASHED when its heartbeats stop before a final state "
            "(the process or machine running it died).",
            trigger=EventTrigger(
                match=flow_runs,
                after={"prefect.flow-run.heartbeat"},
                expect={"prefect.flow-run.heartbeat", *_FINAL_EVENTS},
                for_each={"prefect.resource.id"},
                posture=Posture.Proactive,
                threshold=1,
                within=timedelta(seconds=settings.crash_after_s),
            ),
            actions=[
                ChangeFlowRunState(
                    state=StateType.CRASHED,
                    message=f"No heartbeat for {settings.crash_after_s} s: the process running "
                    "it died.",
                )
            ],
        ),
        AutomationCore(
            name=BACKLOG,
            description=f"{settings.alert_queue_threshold} or more runs waited past their start "
            f"time within {settings.alert_window_minutes} min: workers cannot keep up.",
            trigger=EventTrigger(
                match=flow_runs,
                expect={"prefect.flow-run.Late"},
                posture=Posture.Reactive,
                threshold=settings.alert_queue_threshold,
                within=window,
            ),
            actions=[DoNothing()],
        ),
        AutomationCore(
            name=FAILURES,
            description=f"A deployment had {settings.alert_failures} or more failed or crashed "
            f"runs within {settings.alert_window_minutes} min.",
            trigger=EventTrigger(
                match=flow_runs,
                match_related=ResourceSpecification({"prefect.resource.role": "deployment"}),
                expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
                for_each={"related:deployment:prefect.resource.id"},
                posture=Posture.Reactive,
                threshold=settings.alert_failures,
                within=window,
            ),
            actions=[DoNothing()],
        ),
    ]


def apply_automations(settings: Settings) -> list[str]:
    """Creates the automations, or updates the ones that exist by name; returns their names."""
    applied = []
    with get_client(sync_client=True) as client:
        for automation in automations(settings):
            existing = client.read_automations_by_name(automation.name)
            if existing:
                client.update_automation(existing[0].id, automation)
                for duplicate in existing[1:]:
                    client.delete_automation(duplicate.id)
            else:
                client.create_automation(automation)
            applied.append(automation.name)
            logger.info("automation %s applied", automation.name)
    return applied


def main() -> None:
    """Applies the automations to the Prefect server of PREFECT_API_URL."""
    from core.settings import get_settings

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    apply_automations(get_settings())


if __name__ == "__main__":
    main()
