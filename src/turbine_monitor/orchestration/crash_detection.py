"""Crash detection for flow runs whose host died: Prefect automations (as Prefect's
"detect zombie flows" guide describes) that set Crashed a flow run of the project's
deployments (those tagged `tag`)

- that went Running or sent a heartbeat and then, for `within_seconds`, neither a
  heartbeat nor a final state (its process was killed with its host or its worker,
  perhaps before its first heartbeat; the deployments make the flow-run processes send
  one every `heartbeat_seconds` from the start of the run, see `flows.register_deployment`);
- that went Pending and then, for `pending_seconds`, neither Running nor a final state
  (its worker died between taking it and starting its process).

Crashed ends the run's hold on its deployment's concurrency slot, so the next scheduled
run starts and does its work. A run is therefore never Running longer than about
`within_seconds` after its process died. Everything comes from `prefect.yml`
(`crash_detection:`); registering the deployments creates or updates both automations
by name, or deletes them when disabled.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any
from uuid import UUID

from prefect import get_client
from prefect.automations import AutomationCore, EventTrigger, Posture
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState

from turbine_monitor.orchestration.flows import prefect_config
from turbine_monitor.orchestration.notifications import save_automation

logger = logging.getLogger(__name__)

FINAL = {f"prefect.flow-run.{state}" for state in ("Completed", "Failed", "Cancelled", "Crashed")}


def crash_automations(config: dict[str, Any]) -> list[AutomationCore]:
    """The two automations of `config` (`prefect.yml`: crash_detection). A worker takes a
    run by setting it Pending (named Submitting while it starts the process, then
    Pending): the events are named after the state, so both start the second one's clock."""
    def crash_silent(name: str, after: set[str], expect: set[str], seconds: float,
                     why: str) -> AutomationCore:
        return AutomationCore(
            name=name,
            description=f"Sets Crashed a flow run {why}; made from prefect.yml (crash_detection) by the "
                        f"deployments' registration: edits here are overwritten.",
            trigger=EventTrigger(after=after, expect=expect | FINAL,
                                 match={"prefect.resource.id": "prefect.flow-run.*"},
                                 match_related={"prefect.resource.role": "tag",
                                                "prefect.resource.id": f"prefect.tag.{config['tag']}"},
                                 for_each={"prefect.resource.id"}, posture=Posture.Proactive,
                                 threshold=1, within=timedelta(seconds=seconds)),
            actions=[ChangeFlowRunState(state=StateType.CRASHED,
                                        message=f"No sign of life from its process: {why}.")])

    name = config["automation_name"]
    return [
        crash_silent(name, {"prefect.flow-run.Running", "prefect.flow-run.heartbeat"},
                     {"prefect.flow-run.heartbeat"}, config["within_seconds"],
                     f"no heartbeat for {config['within_seconds']} s while Running"),
        crash_silent(f"{name}-pending", {"prefect.flow-run.Submitting", "prefect.flow-run.Pending"},
                     {"prefect.flow-run.Running"},
                     config["pending_seconds"], f"left Pending for {config['pending_seconds']} s"),
    ]


def register_crash_detection(conf_source: str | None = None, env: str | None = None) -> list[UUID]:
    """Create or update (by name) the crash-detection automations on the server of
    PREFECT_API_URL from `prefect.yml` read from `conf_source`/`env`, or delete them when
    `crash_detection.enabled` is false. Returns their ids."""
    config = prefect_config(conf_source, env)["crash_detection"]
    ids = []
    with get_client(sync_client=True) as client:
        for automation in crash_automations(config):
            if config["enabled"]:
                ids.append(save_automation(client, automation))
                continue
            for stale in client.read_automations_by_name(automation.name):
                client.delete_automation(stale.id)
    if ids:
        logger.info("Crash detection on: a flow run is set Crashed %d s after its last heartbeat, or %d s "
                    "after it went Pending without starting.", config["within_seconds"],
                    config["pending_seconds"])
    return ids
