"""The local stack's building blocks (orchestration/stack.py): process groups stopped
whole, a server refuses a port in use, deployments registered from a temporary
configuration, and a worker stopped mid-run leaves no run holding its deployment's slot."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta

import psutil
import pytest
import yaml
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Completed, Failed

from tests.conftest import write_export_slice
from tests.orchestration.conftest import HOLD_LOCK, wait_for
from turbine_monitor.orchestration import stack
from turbine_monitor.orchestration.flows import prefect_config
from turbine_monitor.sandbox import Sandbox

pytestmark = pytest.mark.slow

# A process that ignores SIGTERM and starts a grandchild in its group, then says so.
STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print(child.pid, flush=True)
time.sleep(600)
"""


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_stop_group_kills_the_whole_group_even_a_process_ignoring_sigterm():
    process = subprocess.Popen([sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE, text=True,
                               start_new_session=True)
    grandchild = int(process.stdout.readline())
    assert alive(grandchild)
    stack.stop_group(process, grace_s=1)
    assert process.returncode == -signal.SIGKILL
    wait_for(lambda: not alive(grandchild), "the grandchild to be gone")


def test_a_server_cannot_start_on_a_port_in_use(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        expected = f"127.0.0.1:{port}: Address already in use.*PREFECT_API_URL="
        with pytest.raises(RuntimeError, match=expected), stack.prefect_server(port=port, home=tmp_path):
            pass


@pytest.fixture(scope="module")
def api_url(tmp_path_factory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("prefect-home")
    with stack.prefect_server(port=stack.free_port(), home=home, log_file=home / "server.log") as server, \
            temporary_settings({PREFECT_API_URL: server.api_url}):
        yield server.api_url


def test_deployments_carry_the_configuration_they_were_registered_from(api_url, workspace):
    (workspace.conf / "local" / "prefect.yml").write_text(yaml.safe_dump({"prefect": {"deployments": {
        "inference": {"interval_seconds": 7}}}}))
    ids = stack.register_deployments(conf_source=str(workspace.conf), env="local")
    assert set(ids) == {"training", "inference"}
    with get_client(sync_client=True) as client:
        inference = client.read_deployment(ids["inference"])
        training = client.read_deployment(ids["training"])
    assert inference.parameters == {"env": "local", "conf_source": str(workspace.conf)}
    assert [s.schedule.interval for s in inference.schedules] == [timedelta(seconds=7)]
    assert [s.schedule.interval for s in training.schedules] == [timedelta(seconds=120)]  # from base


def test_a_worker_stopped_mid_run_leaves_it_crashed_and_frees_its_slot(api_url, workspace: Sandbox,
                                                                        tmp_path):
    """Inference stuck on a warehouse another process holds locked: stop the worker while
    the run is Running; the run ends Crashed and the deployment's slot is free again."""
    write_export_slice(workspace.landing / "jan.csv", "2014-01-01", "2014-01-02")
    (workspace.conf / "local" / "prefect.yml").write_text(yaml.safe_dump({"prefect": {
        "deployments": {"inference": {"interval_seconds": 3600}}, "worker": {"query_seconds": 1}}}))
    ids = stack.register_deployments(conf_source=str(workspace.conf))
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(workspace.warehouse)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    runs = FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[ids["inference"]]))
    try:
        assert holder.stdout.readline().strip() == "locked"
        with get_client(sync_client=True) as client:
            client.create_flow_run_from_deployment(ids["inference"])  # now, not at the next interval
            with stack.prefect_worker(prefect_config(str(workspace.conf))["work_pool"]["name"], api_url,
                                      conf_source=str(workspace.conf), log_file=tmp_path / "worker.log"):
                running = wait_for(lambda: [r for r in client.read_flow_runs(flow_run_filter=runs)
                                            if r.state.is_running()], "an inference run to be running")
            stopped = [client.read_flow_run(run.id) for run in running]
            deployment = client.read_deployment(ids["inference"])
    finally:
        holder.stdin.close()
        holder.wait()
    # Crashed by its own engine on the SIGTERM, or else by the stack once the grace is over.
    assert {r.state.name for r in stopped} == {"Crashed"}
    assert {r.state.message for r in stopped} <= {"Execution was aborted by a termination signal.",
                                                  stack.STOPPED_WITH_WORKER}
    assert deployment.global_concurrency_limit.active_slots == 0


def test_a_run_the_stack_stopped_ends_crashed_even_if_it_reported_failed_as_it_went(api_url, workspace):
    """The stop can surface in a run's code as an error, which the run reports as Failed on
    its way out: a run whose process the stack stopped is set Crashed all the same; a run
    that failed on its own, or completed, keeps its state."""
    ids = stack.register_deployments(conf_source=str(workspace.conf))
    with get_client(sync_client=True) as client:
        stopped, failed, completed = (client.create_flow_run_from_deployment(ids["training"])
                                      for _ in range(3))
        for run, state in ((stopped, Failed()), (failed, Failed()), (completed, Completed())):
            client.set_flow_run_state(run.id, state, force=True)
        crashed = stack._crash_runs(api_url, {stopped.id, failed.id, completed.id}, stack.WORKER_DIED,
                                    failed_too={stopped.id})
        states = {name: client.read_flow_run(run.id).state
                  for name, run in (("stopped", stopped), ("failed", failed), ("completed", completed))}
    assert crashed == 1
    assert (states["stopped"].name, states["stopped"].message) == ("Crashed", stack.WORKER_DIED)
    assert (states["failed"].name, states["completed"].name) == ("Failed", "Completed")
