"""The whole stack for real: a `prefect server` (on SQLite, as `make up` runs it; the
cluster profile's server on PostgreSQL is tests/orchestration/test_chaos.py's),
both deployments registered from a temporary Kedro configuration with short intervals,
a process worker running their scheduled runs, and SCADA exports landing meanwhile.
Then: runs of both deployments completed, none failed or crashed, every new row scored,
and the MLflow run of a training flow run tagged with that flow run's id.

About 1.5 minutes. The run counts are printed (`pytest -s`) and written to
`run_counts.json` in the test's tmp folder."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from datetime import UTC, datetime
from uuid import UUID

import pytest
from mlflow import MlflowClient
from prefect import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterDeploymentId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.settings import PREFECT_API_URL, temporary_settings

from tests.conftest import write_export_slice
from tests.orchestration.conftest import wait_for
from turbine_monitor.orchestration import stack
from turbine_monitor.orchestration.flows import TIMINGS_PREFIX, prefect_config, skipped_as_stale
from turbine_monitor.sandbox import Sandbox

pytestmark = pytest.mark.slow

NEW_DAYS = 4  # one landing file per day of February 2014, ...
DROP_EVERY_S = 4  # ... this often
MIN_COMPLETED = {"inference": 3, "training": 2}
IN_FLIGHT = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.CANCELLING]
def flow_runs(deployment_id: UUID) -> list[FlowRun]:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id])))



def worked(deployment_id: UUID) -> list[FlowRun]:
    """The runs of the deployment that completed their pipeline."""
    return [run for run in flow_runs(deployment_id)
            if run.state.is_completed() and not skipped_as_stale(run.state)]


def training_decisions(flow_run_ids: list[UUID]) -> dict[UUID, str]:
    """The promotion decision of each training flow run that trained a farm (the bundled one)."""
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["training-summary"]),
            flow_run_id=ArtifactFilterFlowRunId(any_=flow_run_ids)))
    return {a.flow_run_id: row["decision"] for a in found for row in json.loads(a.data) if row["farm"]}


def timings(flow_run_ids: list[UUID]) -> list[dict]:
    """The `Timings: {...}` records the flow runs logged (flows.RunTimings)."""
    logs: list = []
    of_runs = LogFilter(flow_run_id=LogFilterFlowRunId(any_=flow_run_ids))
    with get_client(sync_client=True) as client:
        while page := client.read_logs(log_filter=of_runs, limit=200, offset=len(logs)):
            logs += page
    return [json.loads(log.message.removeprefix(TIMINGS_PREFIX)) for log in logs
            if log.message.startswith(TIMINGS_PREFIX)]


def drop_new_days(ws: Sandbox) -> int:
    """One CSV export per day of February 2014 into the landing zone, DROP_EVERY_S apart,
    each written under a hidden name and renamed, as a SCADA export (and the replay) does:
    a run must never ingest a file half-written."""
    rows = 0
    for day in range(1, NEW_DAYS + 1):
        time.sleep(DROP_EVERY_S)
        final = ws.landing / f"2014-02-{day:02d}.csv"
        hidden = final.with_name(f".{final.name}.tmp")
        rows += write_export_slice(hidden, f"2014-02-{day:02d}", f"2014-02-{day + 1:02d}")
        os.replace(hidden, final)
    return rows


def test_scheduled_runs_ingest_score_and_retrain(champion_workspace, tmp_path):
    ws = champion_workspace
    config = prefect_config(str(ws.conf))
    home = tmp_path / "prefect-home"
    with (stack.prefect_server(port=stack.free_port(), home=home,
                               log_file=tmp_path / "server.log") as server,
          temporary_settings({PREFECT_API_URL: server.api_url})):
        api_url = server.api_url
        ids = stack.register_deployments(conf_source=str(ws.conf))
        with stack.prefect_worker(config["work_pool"]["name"], api_url, env={"PREFECT_HOME": str(home)},
                                  log_file=tmp_path / "worker.log", conf_source=str(ws.conf)):
            new_rows = drop_new_days(ws)
            last_drop = datetime.now(UTC)
            wait_for(lambda: any(run.start_time > last_drop for run in worked(ids["inference"])),
                     "an inference run started after the last file landed")
            wait_for(lambda: any(not d.startswith("skipped") for d in training_decisions(
                [run.id for run in worked(ids["training"])]).values()),
                     "a training run that trained a model")
            for name, deployment_id in ids.items():
                wait_for(lambda i=deployment_id, n=name: len(worked(i)) >= MIN_COMPLETED[n],
                         f"{MIN_COMPLETED[name]} {name} runs to complete their pipeline")
            with get_client(sync_client=True) as client:  # no new runs; wait for those under way
                for deployment_id in ids.values():
                    client.pause_deployment(deployment_id)
            wait_for(lambda: not any(run.state.type in IN_FLIGHT for deployment_id in ids.values()
                                     for run in flow_runs(deployment_id)), "the runs under way to finish")
        runs = {name: flow_runs(deployment_id) for name, deployment_id in ids.items()}
        decisions = training_decisions([run.id for run in runs["training"]])
        priority = {name: {timing["nice"] for timing in timings([run.id for run in found])}
                    for name, found in runs.items()}

    counts = {name: dict(Counter(run.state.name for run in found)) for name, found in runs.items()}
    report = {"states": counts,
              "completed_but_skipped_as_stale": {name: sum(skipped_as_stale(run.state) for run in found)
                                                 for name, found in runs.items()},
              "training_decisions": sorted(decisions.values())}
    (tmp_path / "run_counts.json").write_text(json.dumps(report, indent=2))
    print(f"\nend-to-end run counts ({tmp_path / 'run_counts.json'}): {json.dumps(report)}")

    for name, found in runs.items():
        assert not [run.state for run in found if run.state.is_failed() or run.state.is_crashed()], name
        assert counts[name].get("Completed", 0) >= MIN_COMPLETED[name], counts

    assert new_rows > 0 and ws.scalar("SELECT count(*) FROM scada WHERE ts >= '2014-02-01'") == new_rows
    assert ws.scalar("SELECT count(*) FROM ingested_files "
                     "WHERE source_file LIKE '%2014-02-%' AND status = 'ingested'") == NEW_DAYS
    assert ws.scalar("SELECT count(*) FROM scada ANTI JOIN predictions USING (turbine_id, ts)") == 0

    client = MlflowClient()
    experiment = client.get_experiment_by_name("turbine-monitor").experiment_id
    tagged = {run.data.tags["prefect_flow_run_id"]: run for run in client.search_runs([experiment])
              if "prefect_flow_run_id" in run.data.tags}
    training_ids = {str(run.id) for run in runs["training"] if run.state.is_completed()}
    assert tagged and set(tagged) <= training_ids  # every tagged MLflow run is a completed flow run
    assert any("promotion_decision" in run.data.tags for run in tagged.values())  # one of them trained

    # Training yields the CPU to inference (prefect.yml: the deployments' job variables).
    assert priority == {"inference": {0}, "training": {10}}
