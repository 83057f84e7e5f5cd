"""The Prefect flows against a temporary Prefect server (one per module), real
temporary warehouses and a real MLflow store: nodes as named task runs with Kedro's
logs, a held warehouse lock waited for or failing the run, the training summary and
MLflow tag, the alert event, the stale-run skip, and the deployments."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from kedro.io import DataCatalog
from kedro.pipeline import Pipeline, node
from mlflow import MlflowClient
from prefect import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    DeploymentFilter,
    DeploymentFilterName,
    FlowRunFilter,
    FlowRunFilterDeploymentId,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import TaskRun
from prefect.events.filters import EventFilter, EventNameFilter
from prefect.flow_engine import run_flow
from prefect.settings import PREFECT_API_URL
from prefect.states import Scheduled
from prefect.testing.utilities import prefect_test_harness

from tests.conftest import FAST_TRAINING, HEADER, Fleet, landing_only_workspace, write_export_slice
from tests.orchestration.conftest import HOLD_LOCK
from turbine_monitor.orchestration import stack
from turbine_monitor.orchestration.flows import (
    inference_flow,
    prefect_config,
    register_deployment,
    stale_skip_message,
    training_flow,
)
from turbine_monitor.orchestration.runner import PrefectTaskRunner
from turbine_monitor.pipelines import inference, ingestion, training
from turbine_monitor.project import load_config
from turbine_monitor.synthetic import farm_id

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prefect_api() -> Iterator[None]:
    """A temporary Prefect server and database for the module (starting one takes ~12 s)."""
    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture(scope="module")
def trained(prefect_api, tmp_path_factory) -> Iterator[dict[str, Any]]:
    """The training flow run on a warehouse holding January 2014, into a fresh MLflow
    store that stays the module's store (its champion scores the other tests' data)."""
    root = tmp_path_factory.mktemp("trained")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        ws = landing_only_workspace(root)
        write_export_slice(ws.landing / "jan.csv", "2014-01-01", "2014-02-01")
        ws.run("ingestion")
        state = training_flow(conf_source=str(ws.conf), runtime_params=FAST_TRAINING, return_state=True)
        yield {"state": state, "client": MlflowClient(uri)}


def eventually(read: Callable[[], Any], timeout_s: float = 15) -> Any:
    """`read()` once it returns something truthy (logs and events reach the API in batches)."""
    deadline = time.monotonic() + timeout_s
    while not (result := read()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return result


def task_runs(flow_run_id) -> list[TaskRun]:
    with get_client(sync_client=True) as client:
        return client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))


def task_logs(flow_run_id) -> dict[str | None, list[str]]:
    """Log messages of a flow run by task run name (None: the flow run itself)."""
    names = {run.id: run.name for run in task_runs(flow_run_id)}
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    by_task: dict[str | None, list[str]] = {}
    for log in logs:
        by_task.setdefault(names.get(log.task_run_id), []).append(log.message)
    return by_task


def artifacts(flow_run_id) -> dict[str, Any]:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return {artifact.key: artifact for artifact in found}


def alert_events(flow_run_id) -> list:
    with get_client(sync_client=True) as client:
        page = client.read_events(EventFilter(event=EventNameFilter(name=["turbine-monitor.alert.opened"])),
                                  limit=50)  # the client default (100) is over the server maximum
    return [e for e in page.events if f"prefect.flow-run.{flow_run_id}" in {r.id for r in e.related}]


def test_task_options_follow_node_tags():
    runner = PrefectTaskRunner({"default": {"retries": 0, "timeout_seconds": None},
                                "by_tag": {"model_fit": {"timeout_seconds": 1800}, "slow": {"retries": 1}}})
    nodes = {n.name: n for n in (inference.create_pipeline() + training.create_pipeline()).nodes}
    assert runner.task_options(nodes["fit_power_model"]) == {
        "retries": 0, "timeout_seconds": 1800, "name": "fit_power_model", "task_run_name": "fit_power_model"}
    assert runner.task_options(nodes["score_new_rows"]) == {
        "retries": 0, "timeout_seconds": None, "name": "score_new_rows", "task_run_name": "score_new_rows"}


def test_the_shipped_configuration_retries_no_node():
    """The warehouse datasets' lock wait is the one retry layer (README: Orchestration)."""
    runner = PrefectTaskRunner(prefect_config()["tasks"])
    nodes = (inference.create_pipeline() + training.create_pipeline()).nodes
    assert {runner.task_options(n)["retries"] for n in nodes} == {0}
    fit = next(n for n in nodes if n.name == "fit_power_model")
    assert runner.task_options(fit)["timeout_seconds"] == 1800


def test_the_runner_refuses_to_run_outside_a_flow_run():
    with pytest.raises(RuntimeError, match="inside a Prefect flow run"):
        PrefectTaskRunner().run(Pipeline([node(lambda: 1, None, "one", name="one")]), DataCatalog())


def test_stale_skip_message():
    scheduled = datetime(2026, 1, 1, tzinfo=UTC)
    assert stale_skip_message(scheduled, scheduled + timedelta(seconds=30), 10, 3) is None
    assert stale_skip_message(scheduled, scheduled + timedelta(seconds=95), 10, 3) == (
        "Skipped: started 95 s after its scheduled time (limit 30 s).")


def test_inference_nodes_and_farm_partitions_are_task_runs_with_kedro_logs(trained, workspace):
    write_export_slice(workspace.landing / "feb.csv", "2014-02-01", "2014-02-02")
    state = inference_flow(conf_source=str(workspace.conf), return_state=True)
    assert state.is_completed(), state.message
    flow_run_id = state.state_details.flow_run_id

    runs = task_runs(flow_run_id)
    partitions = ["score_new_rows [la-haute-borne]", "update_alerts [la-haute-borne]",
                  "report_days [la-haute-borne]"]
    assert sorted(run.name for run in runs) == sorted([n.name for n in inference.create_pipeline().nodes]
                                                      + partitions)
    assert {run.state.name for run in runs} == {"Completed"}

    rows = workspace.scalar("SELECT count(*) FROM predictions")
    logs = eventually(lambda: (found := task_logs(flow_run_id)).get(partitions[0]) and found)
    assert any(m.startswith("Running node: score_new_rows") for m in logs["score_new_rows"])
    assert f"Scored {rows} rows of 1 farm(s)." in logs[partitions[0]]
    assert not any("Scored" in m for name, messages in logs.items() if name != partitions[0]
                   for m in messages)
    assert any(m.startswith("Running node: ingest_new_sources") for m in logs["ingest_new_sources"])

    summary = artifacts(flow_run_id)["inference-summary"]
    assert summary.type == "markdown"
    assert f"Rows scored: **{rows}**" in summary.data and rows > 500


def test_with_a_scoring_deployment_a_run_below_the_threshold_scores_itself(trained, workspace):
    """The cluster profile's live run: ingestion, then (a day's rows, under
    `dispatch_min_rows`) scoring, alert detection and reporting in a second session of the
    same flow run; no flow run started."""
    (workspace.conf / "local" / "prefect.yml").write_text(yaml.safe_dump({"prefect": {
        "fleet": {"scoring_deployment": "inference-farms", "dispatch_min_rows": 100_000}}}))
    write_export_slice(workspace.landing / "feb.csv", "2014-02-01", "2014-02-02")
    state = inference_flow(conf_source=str(workspace.conf), return_state=True)
    assert state.is_completed(), state.message
    flow_run_id = state.state_details.flow_run_id
    partitions = ["score_new_rows [la-haute-borne]", "update_alerts [la-haute-borne]",
                  "report_days [la-haute-borne]"]
    assert sorted(run.name for run in task_runs(flow_run_id)) == sorted(
        [n.name for n in inference.create_pipeline().nodes] + partitions)
    rows = workspace.scalar("SELECT count(*) FROM predictions")
    assert rows > 500 and workspace.scalar("SELECT count(*) FROM scoring_queue") == 0
    assert f"Rows scored: **{rows}**" in artifacts(flow_run_id)["inference-summary"].data


def test_a_lock_held_briefly_is_waited_for_within_the_run(trained, workspace):
    """Another process holds the DuckDB file lock for a second: ingestion waits for it
    (the dataset's lock wait, globals.yml) and the run completes, nothing retried."""
    write_export_slice(workspace.landing / "feb.csv", "2014-02-01", "2014-02-02")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(workspace.warehouse)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    releaser = threading.Timer(1.0, holder.stdin.close)
    releaser.start()
    try:
        state = inference_flow(conf_source=str(workspace.conf), return_state=True)
    finally:
        releaser.join()
        holder.wait()
    assert state.is_completed(), state.message
    runs = task_runs(state.state_details.flow_run_id)
    assert {run.run_count for run in runs} == {1}
    assert workspace.scalar("SELECT count(*) FROM scada") > 0


def test_a_lock_held_past_the_wait_fails_the_run_at_once_with_a_clear_message(trained, workspace):
    workspace.configure(lock_timeout_s=0.2)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(workspace.warehouse)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        state = inference_flow(conf_source=str(workspace.conf), return_state=True)
    finally:
        holder.stdin.close()
        holder.wait()
    assert state.is_failed() and "stayed locked by another process for 0.2 s" in state.message
    runs = {run.name: run for run in task_runs(state.state_details.flow_run_id)}
    assert "Failed" in {run.state.name for run in runs.values()}
    assert {run.run_count for run in runs.values()} == {1}
    assert not {"score_new_rows", "update_alerts"} & set(runs)  # nothing downstream was started


def test_training_trains_each_farm_due_in_a_task_run_and_publishes_one_row_per_farm(trained):
    state, client = trained["state"], trained["client"]
    assert state.is_completed(), state.message
    flow_run_id = state.state_details.flow_run_id
    runs = task_runs(flow_run_id)
    assert sorted(run.name for run in runs) == ["plan_training", "train la-haute-borne"]
    assert {run.state.name for run in runs} == {"Completed"}

    (run,) = client.search_runs([client.get_experiment_by_name("turbine-monitor").experiment_id])
    assert run.data.tags["prefect_flow_run_id"] == str(flow_run_id)
    assert run.data.tags["farm_id"] == "la-haute-borne"

    summary = artifacts(flow_run_id)["training-summary"]
    (row,) = json.loads(summary.data)
    assert row["farm"] == "la-haute-borne" and row["decision"] == "promoted"
    assert row["mlflow_run_id"] == run.info.run_id and row["model_version"] == "1"
    assert row["challenger_holdout_mae_kw"] == pytest.approx(run.data.metrics["challenger_holdout_mae_kw"])
    assert "la-haute-borne: promoted" in summary.description


def test_a_scheduled_run_that_starts_too_late_is_skipped(trained, workspace):
    """Inference is every 10 s and stale after 3 intervals: a run scheduled 5 minutes
    ago ends Completed at once, saying so, and runs no node."""
    write_export_slice(workspace.landing / "feb.csv", "2014-02-01", "2014-02-02")
    parameters = {"conf_source": str(workspace.conf)}
    with get_client(sync_client=True) as client:
        flow_run = client.create_flow_run(
            inference_flow, parameters=parameters,
            state=Scheduled(scheduled_time=datetime.now(UTC) - timedelta(minutes=5)))
    state = run_flow(inference_flow, flow_run=flow_run, parameters=parameters, return_type="state")
    assert state.is_completed()
    assert re.fullmatch(r"Skipped: started 30\d s after its scheduled time \(limit 30 s\)\.", state.message)
    assert task_runs(flow_run.id) == []
    assert not workspace.warehouse.exists()


def test_a_newly_opened_alert_emits_one_event(trained, workspace, write_landing):
    """Twelve hours of R80711 at 12 m/s producing nothing: a stoppage. The run that opens
    the alert emits one event for the turbine, with its farm and the dashboard's Alerts
    page; a rerun with no new data emits none."""
    write_export_slice(workspace.landing / "feb.csv", "2014-02-01", "2014-02-02")
    start = datetime(2014, 2, 2, tzinfo=UTC)
    write_landing("stoppage.csv", HEADER + "".join(
        f"R80711,{(start + timedelta(minutes=10 * i)).isoformat()},90.0,0.0,12.0,0.0,5.0,180.0,180.0\n"
        for i in range(72)))
    state = inference_flow(conf_source=str(workspace.conf), return_state=True)
    assert state.is_completed(), state.message
    assert workspace.sql("SELECT kind FROM alerts WHERE turbine_id = 'R80711' AND end_ts IS NULL") == [
        ("stopped",)]
    events = eventually(lambda: alert_events(state.state_details.flow_run_id))
    # One per alert opened and still open (an episode of the delivery that already ended: none).
    assert len(events) == workspace.scalar("SELECT count(*) FROM alerts WHERE end_ts IS NULL")
    (stopped,) = [e for e in events if e.resource.id == "turbine-monitor.turbine.R80711"]
    assert stopped.payload["kind"] == "stopped" and stopped.payload["end_ts"] is None
    assert stopped.payload["farm_id"] == stopped.resource["turbine-monitor.farm"] == "la-haute-borne"
    assert stopped.payload["dashboard_url"] == "http://127.0.0.1:8050/alerts"
    assert "turbine-monitor.farm.la-haute-borne" in {r.id for r in stopped.related}

    again = inference_flow(conf_source=str(workspace.conf), return_state=True)
    assert again.is_completed()
    time.sleep(2)  # give a wrongly emitted event the time to arrive
    assert alert_events(again.state_details.flow_run_id) == []


def test_deployments_are_registered_from_config_and_updated_in_place(prefect_api):
    first = register_deployment("inference")
    assert register_deployment("inference") == first
    with get_client(sync_client=True) as client:
        (deployment,) = client.read_deployments(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["inference"])))
        pool = client.read_work_pool("turbine-monitor")
    assert deployment.id == first and pool.type == "process"
    assert deployment.work_pool_name == "turbine-monitor" and deployment.work_queue_name == "inference"
    assert [s.schedule.interval for s in deployment.schedules] == [timedelta(seconds=10)]
    assert deployment.global_concurrency_limit.limit == 1
    assert deployment.concurrency_options.collision_strategy == "CANCEL_NEW"
    assert deployment.concurrency_options.grace_period_seconds == 60
    assert deployment.parameters == {"env": "local"}
    assert deployment.entrypoint == "turbine_monitor.orchestration.flows.inference_flow"
    assert not deployment.pull_steps  # a worker runs the flow of its own copy, in its working directory
    assert deployment.job_variables == {"working_dir": ".", "command": "python -m prefect.engine",
                                        "stream_output": False}
    training_id = register_deployment("training")
    with get_client(sync_client=True) as client:
        training = client.read_deployment(training_id)
    assert training.job_variables["command"].startswith("nice -n 10 ")  # yields the CPU to inference
    assert training.job_variables["env"] == {"OMP_NUM_THREADS": "1"}


@pytest.fixture
def two_farms(prefect_api, tmp_path, monkeypatch) -> Fleet:
    """Two synthetic farms, a month of records each, both trained (plain Kedro), in an
    MLflow store of the test's own."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    fleet = Fleet(tmp_path, [(1, 4, "la_haute_borne"), (2, 4, "greenbyte")], days=34)
    for farm in fleet.entries:
        fleet.deliver(farm, 32)
    fleet.round()
    return fleet


def test_a_farm_that_fails_fails_the_run_naming_it_after_the_other_farms_are_saved(two_farms):
    """Farm 2's champion stops loading: the inference run scores and updates farm 1,
    then ends Failed naming farm 2; its artifact lists farm 2."""
    one, two = farm_id(1), farm_id(2)
    client = MlflowClient()
    # Its artifacts and scoring's local copy gone.
    shutil.rmtree(client.get_model_version_download_uri(f"turbine-power-nbm-{two}", "1").removeprefix("file://"))
    shutil.rmtree(two_farms.sandbox.globals()["paths"]["model_cache"], ignore_errors=True)
    for farm in two_farms.entries:
        two_farms.deliver(farm, 34)
    state = inference_flow(conf_source=str(two_farms.sandbox.conf), return_state=True)
    assert state.is_failed() and f"farm '{two}'" in state.message and f"farm '{one}'" not in state.message
    flow_run_id = state.state_details.flow_run_id
    assert {run.name for run in task_runs(flow_run_id)} >= {"score_new_rows [synthetic-001 +1 farm]"}
    assert [farm for farm, in two_farms.sql("SELECT DISTINCT t.farm_id FROM scoring_queue "
                                            "JOIN turbines t USING (turbine_id)")] == [two]  # its rows wait
    summary = artifacts(flow_run_id)["inference-summary"]
    assert f"`{two}`" in summary.data and two in summary.description


def warehouse_results(sandbox) -> dict[str, list[tuple]]:
    """What scoring, alert detection and reporting stored, in a comparable order."""
    return {"predictions": sandbox.sql("SELECT turbine_id, ts, expected_power_kw, residual_kw, "
                                       "model_version, unscored_reason FROM predictions "
                                       "ORDER BY turbine_id, ts"),
            "alerts": sandbox.sql("SELECT turbine_id, kind, start_ts, end_ts, records FROM alerts "
                                  "ORDER BY turbine_id, kind, start_ts"),
            "kpi_daily": sandbox.sql("SELECT * EXCLUDE (updated_at) FROM kpi_daily "
                                     "ORDER BY farm_id, turbine_id, day")}


def test_a_backlog_is_scored_by_a_flow_run_per_partition_on_the_workers(two_farms, tmp_path):
    """Two days of both farms land at once, over `dispatch_min_rows` and one farm per
    partition: the inference run ingests, starts a flow run of the scoring deployment per
    farm (a worker runs them) and waits for them; every queued row is predicted once, and
    the warehouse ends as scoring in the inference run itself leaves it."""
    sandbox, farms = two_farms.sandbox, sorted(two_farms.entries)
    local = sandbox.conf / "local"
    (local / "globals.yml").write_text(yaml.safe_dump({**sandbox.globals(),
                                                       "partitions": {"max_rows": 1000}}))  # a farm each
    farm_runs = {**load_config("prefect", env="cluster")["prefect"]["deployments"]["inference-farms"],
                 "parameters": {"env": "local"}}
    (local / "prefect.yml").write_text(yaml.safe_dump({"prefect": {
        "fleet": {"scoring_deployment": "inference-farms", "dispatch_min_rows": 1000},
        "deployments": {"inference-farms": farm_runs}, "worker": {"query_seconds": 1}}}))
    reference = tmp_path / "reference.duckdb"
    shutil.copy(sandbox.warehouse, reference)  # the same warehouse, to score without dispatch
    ingested = sandbox.scalar("SELECT count(*) FROM scada")
    for farm in farms:
        two_farms.deliver(farm, 34)
    deployment_id = register_deployment("inference-farms", conf_source=str(sandbox.conf))
    config = prefect_config(str(sandbox.conf))

    with stack.prefect_worker(config["work_pool"]["name"], PREFECT_API_URL.value(),
                              env={"PREFECT_HOME": str(tmp_path / "worker-home")},
                              conf_source=str(sandbox.conf), log_file=tmp_path / "worker.log"):
        state = inference_flow(conf_source=str(sandbox.conf), return_state=True)
    assert state.is_completed(), state.message
    flow_run_id = state.state_details.flow_run_id
    names = {run.name for run in task_runs(flow_run_id)}  # its nodes, and a task run per subflow run
    assert {n.name for n in ingestion.create_pipeline().nodes} <= names
    assert not names & {"score_new_rows", "update_alerts", "report_days"}  # none scored in the run itself
    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id])))
        parents = {client.read_task_run(run.parent_task_run_id).flow_run_id for run in children}
    assert sorted(run.name for run in children) == [f"score {farm}" for farm in farms]
    assert {run.state.name for run in children} == {"Completed"} and parents == {flow_run_id}
    assert sorted(run.parameters["runtime_params"]["farms"] for run in children) == [[farm] for farm in farms]
    for run in children:  # each scored, detected and reported its own farm only
        names = {task.name for task in task_runs(run.id)}
        farm = run.parameters["runtime_params"]["farms"][0]
        assert {f"score_new_rows [{farm}]", f"update_alerts [{farm}]"} <= names
        assert not {name for name in names if "[" in name and f"[{farm}]" not in name}

    queued = sandbox.scalar("SELECT count(*) FROM scada") - ingested
    assert queued > 1000 and sandbox.scalar("SELECT count(*) FROM scoring_queue") == 0
    assert sandbox.scalar("SELECT count(*) FROM scada ANTI JOIN predictions USING (turbine_id, ts)") == 0
    assert sandbox.scalar("SELECT count(*) FROM predictions") == sandbox.scalar(
        "SELECT count(*) FROM (SELECT DISTINCT turbine_id, ts FROM predictions)")  # each row once
    assert f"Rows scored: **{queued}**" in artifacts(flow_run_id)["inference-summary"].data
    dispatched = warehouse_results(sandbox)

    # The same delivery scored in the inference run itself (no scoring deployment).
    (local / "prefect.yml").write_text(yaml.safe_dump({"prefect": {"fleet": {"scoring_deployment": None}}}))
    sandbox.configure(warehouse=reference)
    assert inference_flow(conf_source=str(sandbox.conf), return_state=True).is_completed()
    assert warehouse_results(sandbox) == dispatched
