"""`make up`'s supervision (orchestration/stack.py): a service that dies is restarted with
backoff until it dies too often; and, for real, a Prefect server, both deployments and a
worker under the Supervisor, the worker killed with SIGKILL in the middle of a training
flow run: the runs it held end Crashed, a new worker starts and inference runs complete
again within 60 s, and the next training run ends the killed training's MLflow run."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
import yaml
from mlflow import MlflowClient
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId
from prefect.settings import PREFECT_API_URL, temporary_settings

from tests.conftest import FAST_TRAINING, write_export_slice
from tests.orchestration.conftest import wait_for
from turbine_monitor.orchestration import stack
from turbine_monitor.orchestration.flows import FLOW_RUN_TAG, prefect_config
from turbine_monitor.sandbox import Sandbox


def exiting(code: int, name: str = "exiting service", **kwargs) -> stack.Service:
    return stack.Service(name, [sys.executable, "-c", f"import sys; sys.exit({code})"], **kwargs)


def check_until(supervisor: stack.Supervisor, condition, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        supervisor.check()
        time.sleep(0.05)


def test_a_dying_service_is_restarted_with_backoff_then_given_up():
    said: list[str] = []
    policy = stack.RestartPolicy(max_restarts=2, window_s=60, first_backoff_s=0.2, max_backoff_s=0.3)
    with stack.Supervisor(policy, say=said.append) as supervisor:
        service = supervisor.add(exiting(3))
        started = time.monotonic()
        check_until(supervisor, lambda: sum("was restarted" in m for m in said) == 2)
        assert time.monotonic() - started >= 0.2 + 0.3  # backoff 0.2 s, then doubled, capped at 0.3 s
        with pytest.raises(stack.GaveUp, match=r"exiting service exited with code 3 after 2 restarts"):
            check_until(supervisor, lambda: False)
    assert service.poll() == 3
    assert [m for m in said if "restarting it in" in m] == [
        f"The exiting service exited with code 3; restarting it in {backoff} s (restart {n} of at most 2 "
        "within 60 s)." for n, backoff in ((1, 0.2), (2, 0.3))]


def test_a_service_that_finishes_is_not_restarted():
    said: list[str] = []
    with stack.Supervisor(stack.RestartPolicy(first_backoff_s=0.1), say=said.append) as supervisor:
        done = supervisor.add(exiting(0, "replay", restart_on_success=False))
        check_until(supervisor, lambda: said)
        for _ in range(5):
            supervisor.check()
            time.sleep(0.05)
    assert said == ["The replay has finished."] and done.poll() == 0


@contextmanager
def supervised(supervisor: stack.Supervisor, tick_s: float = 0.5) -> Iterator[None]:
    """Run `supervisor.check()` every `tick_s` in a thread, as `make up` does in its loop."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(tick_s):
            supervisor.check()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@pytest.mark.slow
def test_a_killed_worker_is_replaced_its_runs_crashed_and_inference_resumes(
        champion_workspace: Sandbox, tmp_path):
    ws = champion_workspace
    write_export_slice(ws.landing / "2014-02.csv", "2014-02-01", "2014-02-04")  # enough for training to train
    (ws.conf / "local" / "prefect.yml").write_text(yaml.safe_dump({"prefect": {
        "deployments": {"inference": {"interval_seconds": 5}, "training": {
            "interval_seconds": 3600,
            # A fit of a minute or more, so that the worker is killed while it is still training.
            "parameters": {"runtime_params": {"training": {
                "holdout_days": 5, "estimator": {"max_iter": 20000}}}}}},
        "stale_after_intervals": 20, "worker": {"query_seconds": 1},
        "supervisor": {"stop_grace_seconds": 10}}}))
    config = prefect_config(str(ws.conf))
    home = tmp_path / "prefect-home"
    said: list[str] = []
    mlflow = MlflowClient()
    with (stack.prefect_server(port=stack.free_port(), home=home, log_file=tmp_path / "server.log") as server,
          temporary_settings({PREFECT_API_URL: server.api_url}), get_client(sync_client=True) as client):
        ids = stack.register_deployments(conf_source=str(ws.conf))

        def runs(deployment: str) -> list:
            return client.read_flow_runs(flow_run_filter=FlowRunFilter(
                deployment_id=FlowRunFilterDeploymentId(any_=[ids[deployment]])))

        with stack.Supervisor(stack.restart_policy(config), say=said.append) as supervisor:
            worker = supervisor.add(stack.worker_service(
                config["work_pool"]["name"], server.api_url, env={"PREFECT_HOME": str(home)},
                log_file=tmp_path / "worker.log", conf_source=str(ws.conf)))
            first_pid = worker.process.pid
            with supervised(supervisor):
                wait_for(lambda: any(r.state.is_completed() for r in runs("inference")), "an inference run",
                         timeout_s=90)
                training = client.create_flow_run_from_deployment(ids["training"])
                experiment = mlflow.get_experiment_by_name("turbine-monitor")  # the champion's
                tracked = f"attributes.status = 'RUNNING' and tags.{FLOW_RUN_TAG} = '{training.id}'"
                (mlflow_run,) = wait_for(lambda: mlflow.search_runs([experiment.experiment_id], tracked),
                                         "the training flow run's MLflow run", timeout_s=90, poll_s=0.1)
                os.kill(first_pid, signal.SIGKILL)
                killed_at = datetime.now(UTC)

                wait_for(lambda: worker.process.pid != first_pid and worker.poll() is None,
                         "a new worker", timeout_s=30, poll_s=0.2)
                restarted_at = datetime.now(UTC)
                resumed = wait_for(lambda: [r for r in runs("inference") if r.state.is_completed()
                                            and r.start_time > restarted_at],
                                   "an inference run started by the new worker to complete", timeout_s=60)
                assert (resumed[0].end_time - killed_at).total_seconds() <= 60
                crashed = client.read_flow_run(training.id).state
                assert crashed.is_crashed(), crashed
                # Its fit ran on in a task thread past the stop grace, so the process was
                # SIGKILLed before its crashed hook could end the MLflow run: the next
                # training run ends it.
                client.create_flow_run_from_deployment(
                    ids["training"], parameters={"runtime_params": FAST_TRAINING})
                wait_for(lambda: mlflow.get_run(mlflow_run.info.run_id).info.status == "KILLED",
                         "the killed training's MLflow run ended KILLED", timeout_s=90)
                in_flight_at_kill = [r for name in ids for r in runs(name)
                                     if r.start_time and r.start_time < killed_at and not r.state.is_final()]
                assert in_flight_at_kill == []
    assert any("The Prefect worker exited with code -9; restarting it" in m for m in said), said
    assert any("The Prefect worker was restarted" in m for m in said), said
