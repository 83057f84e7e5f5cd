"""Crash detection (orchestration/crash_detection.py) on a real `prefect server`: the
automations registered from prefect.yml set Crashed a run of the project's deployments
whose heartbeats stopped, one that never sent one, and one left Pending; they leave alone
a run that ends and another project's run, and are deleted when disabled. (The chaos
test, test_chaos.py, kills a worker's host for real.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
from prefect import flow, get_client
from prefect.client.schemas.objects import StateType
from prefect.events import Event
from prefect.events.clients import PrefectEventsClient
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Completed, Pending, Running

from turbine_monitor.orchestration import stack
from turbine_monitor.orchestration.crash_detection import crash_automations, register_crash_detection
from turbine_monitor.orchestration.flows import prefect_config

pytestmark = pytest.mark.slow

WITHIN_S = 20  # the test's bound instead of prefect.yml's 75 s and 90 s


@flow
def silent() -> None:
    """The flow of the runs the test drives by hand."""


async def heartbeat(api_url: str, flow_run_id: UUID, tag: str) -> None:
    """A flow run's heartbeat event, as its process sends it, with its tag (through a
    client of its own: the process-wide events worker would outlive this test's server)."""
    async with PrefectEventsClient(api_url) as events:
        await events.emit(Event(event="prefect.flow-run.heartbeat",
                                resource={"prefect.resource.id": f"prefect.flow-run.{flow_run_id}"},
                                related=[{"prefect.resource.id": f"prefect.tag.{tag}",
                                          "prefect.resource.role": "tag"}]))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    with stack.prefect_server(port=stack.free_port(), home=tmp_path / "prefect",
                              log_file=tmp_path / "server.log") as running, \
            temporary_settings({PREFECT_API_URL: running.api_url}):
        yield running.api_url


def test_registration_follows_the_configuration(server):
    names = {a.name for a in crash_automations(prefect_config(env="cluster")["crash_detection"])}
    assert len(register_crash_detection(env="cluster")) == 2
    assert len(register_crash_detection(env="cluster")) == 2  # updated in place, not doubled
    with get_client(sync_client=True) as client:
        assert {a.name for a in client.read_automations()} == names
        assert register_crash_detection(env="local") == []  # base: disabled, so deleted
        assert client.read_automations() == []


def test_silent_runs_are_crashed_and_finished_or_foreign_ones_left_alone(server):
    config = prefect_config(env="cluster")["crash_detection"] | {"within_seconds": WITHIN_S,
                                                                  "pending_seconds": WITHIN_S}
    tag = config["tag"]
    with get_client(sync_client=True) as client:
        for automation in crash_automations(config):
            client.create_automation(automation)
        time.sleep(2)  # the server loads new automations every second or so
        beating, mute, pending, finished = (client.create_flow_run(silent, tags=[tag]) for _ in range(4))
        foreign = client.create_flow_run(silent, tags=["another-project"])
        for run in (beating, mute, finished, foreign):
            client.set_flow_run_state(run.id, Running(), force=True)
        for run in (beating, finished):
            asyncio.run(heartbeat(server, run.id, tag))
        client.set_flow_run_state(pending.id, Pending(), force=True)
        client.set_flow_run_state(finished.id, Completed(), force=True)
        crashed = (beating, mute, pending)
        deadline = time.monotonic() + 3 * WITHIN_S
        while time.monotonic() < deadline and not all(
                client.read_flow_run(r.id).state_type == StateType.CRASHED for r in crashed):
            time.sleep(2)
        time.sleep(WITHIN_S / 2)  # as long again for the foreign run, as late as the others
        states = {name: client.read_flow_run(run.id).state for name, run in
                  {"beating": beating, "mute": mute, "pending": pending, "finished": finished,
                   "foreign": foreign}.items()}
    for name in ("beating", "mute"):  # killed after its last heartbeat; before its first one
        assert states[name].type == StateType.CRASHED and "heartbeat" in states[name].message, name
    assert states["pending"].type == StateType.CRASHED and "Pending" in states["pending"].message
    assert states["finished"].type == StateType.COMPLETED
    assert states["foreign"].type == StateType.RUNNING
