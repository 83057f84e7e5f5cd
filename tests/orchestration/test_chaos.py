"""Chaos, end to end, on the cluster profile: PostgreSQL holding the warehouse, MLflow's
backend store and Prefect's database; the MLflow tracking server; the Prefect server;
two process workers, each in a copy of the project of its own; a synthetic fleet of ten
farms replaying into the shared landing folders. While it runs: one worker is killed -9
with its flow-run processes (as if its host died) in the middle of a flow run, and a new
one starts; PostgreSQL restarts; the MLflow server is killed -9 and started again. Once
the replay has delivered everything and the runs have caught up:

- every delivered record is in `scada` once (or quarantined with a reason) and each
  file's accounting adds up; every `scada` row has one prediction; the alerts equal a
  detection over all the predictions at once;
- both workers ran flow runs, none is left Pending or Running, the run the dead worker
  held was set Crashed by the server's crash detection, and failed or crashed runs
  were followed by completed ones;
- each farm has one champion, a complete registered version (never one half-registered).

The counts are printed (`pytest -s`) and written to `chaos.json` in the test's folder."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import psutil
import psycopg
import pytest
import yaml
from mlflow import MlflowClient
from prefect import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.settings import PREFECT_API_URL, temporary_settings

from tests.conftest import REQUIRE_POSTGRES
from turbine_monitor.detection import detect_alerts
from turbine_monitor.orchestration.cluster import (
    ENV,
    ClusterLayout,
    LocalCluster,
    cluster_config,
    local_cluster,
    project_copy,
    stage_synthetic_fleet,
)
from turbine_monitor.orchestration.postgres import PostgresUnavailable
from turbine_monitor.orchestration.stack import WorkerService, free_port
from turbine_monitor.project import load_config
from turbine_monitor.registry import farm_model_name

pytestmark = pytest.mark.slow

FLEET = {"farms": 10, "turbines": 2, "start": "2016-01-01", "history_days": 21, "replay_days": 6,
         "every_seconds": 4}
INTERVALS = {"training": 15, "inference": 15}
# How long crash detection waits for a heartbeat (every 30 s, Prefect's minimum) before
# it sets a run Crashed: the profile's 75 s, shortened so that the farm runs a kill takes,
# which hold their slots of the round until then, cost the scenario less dead time.
CRASH_WITHIN_S = 50
FARM_RUNS = {"training-farm", "inference-farms"}  # started per farm or partition, unscheduled
IN_FLIGHT = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.CANCELLING]
MODEL = load_config("globals")["model"]["name"]
CATCH_UP_S = 420  # the whole scenario's bound, set up included


@pytest.fixture
def layout() -> Iterator[ClusterLayout]:
    """The cluster's folder, outside pytest's root-only tmp (PostgreSQL runs as `postgres`)."""
    root = Path(tempfile.mkdtemp(prefix="turbine-monitor-chaos-"))
    root.chmod(0o755)
    try:
        yield ClusterLayout(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def tracking_uri_restored() -> Iterator[None]:
    """The test points MLflow at the cluster's server (`mlflow.set_tracking_uri` also sets
    MLFLOW_TRACKING_URI for the whole process): the tests after it get theirs back."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    mlflow.set_tracking_uri(before)


def configure_for_test(copy: Path) -> None:
    """The copies' configuration for the test: short schedule intervals and crash
    detection, a training window the short history fills, a smaller model, and a
    retraining gate that only farms without a champion pass (each farm is trained once,
    so the models that scored are the champions)."""
    settings = copy / "conf" / ENV
    prefect = yaml.safe_load((settings / "prefect.yml").read_text())
    for name, interval in INTERVALS.items():
        prefect["prefect"]["deployments"].setdefault(name, {})["interval_seconds"] = interval
    prefect["prefect"]["crash_detection"]["within_seconds"] = CRASH_WITHIN_S
    (settings / "prefect.yml").write_text(yaml.safe_dump(prefect))
    training = load_config("parameters", copy / "conf", ENV)["training"]
    training |= {"holdout_days": 7, "min_new_data_hours": 24 * 365,
                 "estimator": training["estimator"] | {"max_iter": 30}}
    (settings / "parameters_training.yml").write_text(yaml.safe_dump({"training": training}))


def kill_host(worker: WorkerService) -> list[str]:
    """kill -9 the worker and every process under it, as if its host died; returns the
    flow runs those processes held. Nothing reports their end: the server must find out."""
    worker.watch()
    held = [run for process, run in worker.flow_runs.items() if run and process.is_running()]
    root = psutil.Process(worker.process.pid)
    for process in [*root.children(recursive=True), root]:
        process.kill()
    worker.process.wait()
    return held


def flow_runs(api_url: str) -> tuple[dict[str, str], list[FlowRun]]:
    """The deployments (id -> name) and every flow run of the server."""
    runs: list[FlowRun] = []
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        deployments = {str(d.id): d.name for d in client.read_deployments()}
        while page := client.read_flow_runs(limit=200, offset=len(runs)):
            runs += page
    return deployments, runs


def pause_schedules(api_url: str) -> None:
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        for deployment in client.read_deployments(deployment_filter=DeploymentFilter(
                name=DeploymentFilterName(any_=list(INTERVALS)))):
            client.pause_deployment(deployment.id)


def warehouse(cluster: LocalCluster, query: str) -> pd.DataFrame:
    with psycopg.connect(cluster.warehouse_url) as con:
        cursor = con.execute(query)
        return pd.DataFrame(cursor.fetchall(), columns=[c.name for c in cursor.description])


def delivered_records(layout: ClusterLayout) -> dict[str, int]:
    """Records per delivered export file (`<farm>/<name>`), counted from the files."""
    counts = {}
    for export in layout.shared.glob("*/landing/*.csv"):
        with export.open() as f:
            counts[f"{export.parent.parent.name}/{export.name}"] = sum(1 for _ in csv.reader(f)) - 1
    return counts


def test_cluster_loses_and_doubles_nothing_under_faults(layout: ClusterLayout, tmp_path: Path,
                                                        tracking_uri_restored: None) -> None:
    config = cluster_config() | {"postgres": {**cluster_config()["postgres"], "port": free_port()},
                                 "mlflow": {"port": free_port()}, "prefect": {"port": free_port()}}
    farms = stage_synthetic_fleet(layout, FLEET)
    copies = [project_copy(layout.copy(n), farms) for n in (1, 2)]
    for copy in copies:
        configure_for_test(copy)
    counts: Counter = Counter()
    started = time.monotonic()
    try:
        cluster_context = local_cluster(layout, config)
        cluster = cluster_context.__enter__()
    except PostgresUnavailable as missing:
        if REQUIRE_POSTGRES:
            pytest.fail(str(missing))
        pytest.skip(str(missing))
    workers: list[WorkerService] = []
    replay = None
    ran: dict[str, set[str]] = {}  # worker name -> flow runs its processes held
    try:
        cluster.register_deployments(copies[0])
        replay = cluster.fleet_replay(FLEET["every_seconds"])
        workers = [cluster.worker(1), cluster.worker(2)]
        for worker in workers:
            worker.start()
        replay.start()

        def watch(seconds: float) -> None:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                for worker in workers:
                    if worker.poll() is None:
                        worker.watch()
                        ran.setdefault(worker.name, set()).update(r for r in worker.flow_runs.values() if r)
                time.sleep(0.5)

        # 1. A worker's host dies in the middle of a flow run (a farm's training run if it
        # gets one within a minute of the first one starting); a new one starts.
        deployments, _ = flow_runs(cluster.prefect.api_url)
        training_farm = {i for i, name in deployments.items() if name == "training-farm"}
        held: list[str] | None = None
        patience = None
        while held is None and time.monotonic() - started < CATCH_UP_S:
            watch(1)
            _, runs = flow_runs(cluster.prefect.api_url)
            holding = {r for r in workers[0].flow_runs.values() if r}
            running = {str(r.id): str(r.deployment_id) in training_farm for r in runs
                       if r.state_type == StateType.RUNNING and str(r.id) in holding}
            patience = patience or (time.monotonic() + 60 if running else None)
            if any(running.values()) or (running and time.monotonic() > patience):
                held = kill_host(workers[0])
        assert held is not None, "worker-1 never ran a flow run"
        # (A process may outlive its run by a moment: a run already final was not killed.)
        killed = [str(r.id) for r in flow_runs(cluster.prefect.api_url)[1]
                  if str(r.id) in held and r.state_type in IN_FLIGHT]
        assert killed, "worker-1 held no flow run in flight when it was killed"
        counts["flow runs killed with worker-1"] = len(killed)
        workers.append(cluster.worker(3, copy=copies[0]))  # the host back, a new worker
        workers[-1].start()
        watch(10)

        # 2. PostgreSQL restarts (every connection of every service dropped).
        cluster.postgres.restart()
        watch(10)

        # 3. The MLflow server is killed -9 (its process group: `mlflow server` and the
        # uvicorn process serving) and started again.
        os.killpg(cluster.mlflow.process.pid, signal.SIGKILL)
        cluster.mlflow.process.wait()
        time.sleep(3)
        cluster.start_mlflow()

        # Catch up: everything delivered, scored, every farm with a champion, then the
        # schedules paused and the runs in flight ended.
        mlflow.set_tracking_uri(cluster.mlflow_url)
        registry = MlflowClient()

        def progress() -> dict[str, Any]:
            return {"replay done": replay.poll() is not None,
                    "rows queued": int(warehouse(cluster, "SELECT count(*) AS n FROM scoring_queue")["n"][0]),
                    "champions": sum(1 for farm in farms if champion(registry, farm) is not None)}

        while (now := progress()) != {"replay done": True, "rows queued": 0, "champions": len(farms)}:
            assert time.monotonic() - started < CATCH_UP_S, f"the cluster did not catch up in time: {now}"
            watch(5)
        pause_schedules(cluster.prefect.api_url)
        deadline = time.monotonic() + 120
        while any(r.state_type in IN_FLIGHT for r in flow_runs(cluster.prefect.api_url)[1]):
            assert time.monotonic() < deadline, "flow runs still in flight after the schedules were paused"
            watch(2)
        counts["seconds to catch up"] = round(time.monotonic() - started)

        # Orchestration: both workers ran runs; the killed runs Crashed by the server;
        # nothing in flight; every deployment's last failure followed by a completed run.
        deployments, runs = flow_runs(cluster.prefect.api_url)
        by_id = {str(r.id): r for r in runs}
        counts.update(Counter(f"runs {deployments.get(str(r.deployment_id))} {r.state_name}" for r in runs))
        assert all(ran.get(w.name) for w in workers[:2]), f"flow runs per worker: {ran}"
        counts.update({f"runs by {name}": len(ids) for name, ids in ran.items()})
        for run_id in killed:
            assert by_id[run_id].state_type == StateType.CRASHED, by_id[run_id].state
        assert not [r for r in runs if r.state_type in IN_FLIGHT]
        # (A scheduled deployment's runs in order; a farm's or partition's runs by name.)
        for key in {(name, r.name if name in FARM_RUNS else None) for r in runs
                    if (name := deployments.get(str(r.deployment_id)))}:
            history = sorted((r for r in runs if deployments.get(str(r.deployment_id)) == key[0]
                              and key[1] in (None, r.name) and r.start_time), key=lambda r: r.start_time)
            bad = [i for i, r in enumerate(history) if r.state_type in (StateType.FAILED, StateType.CRASHED)]
            if bad:
                assert any(r.state_type == StateType.COMPLETED for r in history[bad[-1] + 1:]), key
                counts["caught up after a failure or crash"] += 1

        # Data: every delivered record once, files adding up, one prediction per row.
        files = warehouse(cluster, "SELECT source_file, rows_read, rows_accepted, rows_duplicate, "
                                   "rows_quarantined FROM ingested_files")
        delivered = delivered_records(layout)
        assert dict(zip(files["source_file"], files["rows_read"], strict=True)) == delivered
        assert (files["rows_read"] == files["rows_accepted"] + files["rows_duplicate"]
                + files["rows_quarantined"]).all()
        totals = warehouse(cluster, """
            SELECT (SELECT count(*) FROM scada) AS scada,
                   (SELECT count(*) FROM (SELECT DISTINCT turbine_id, ts FROM scada) s) AS distinct_rows,
                   (SELECT count(*) FROM scada_quarantine) AS quarantined,
                   (SELECT count(*) FROM scada_quarantine WHERE reason IS NULL OR reason = '') AS no_reason,
                   (SELECT count(*) FROM predictions) AS predictions,
                   (SELECT count(*) FROM scada s WHERE NOT EXISTS (SELECT 1 FROM predictions p
                        WHERE p.turbine_id = s.turbine_id AND p.ts = s.ts)) AS unpredicted,
                   (SELECT count(*) FROM predictions p WHERE NOT EXISTS (SELECT 1 FROM scada s
                        WHERE p.turbine_id = s.turbine_id AND p.ts = s.ts)) AS orphan_predictions""").iloc[0]
        assert totals["scada"] == totals["distinct_rows"] == files["rows_accepted"].sum()
        assert totals["quarantined"] == files["rows_quarantined"].sum() and totals["no_reason"] == 0
        assert totals["predictions"] == totals["scada"]
        assert totals["unpredicted"] == totals["orphan_predictions"] == 0
        counts.update({"records delivered": sum(delivered.values()), "files": len(files),
                       **{f"rows {k}": int(v) for k, v in totals.items()}})

        # Alerts: equal to a detection over all the predictions at once, farm by farm.
        params = load_config("parameters", copies[0] / "conf", ENV)["inference"]["alerts"]
        predictions = warehouse(cluster, """
            SELECT p.turbine_id, t.farm_id, p.ts, p.power_kw, p.wind_speed_ms, p.expected_power_kw
            FROM predictions p JOIN turbines t USING (turbine_id)""")
        columns = ["turbine_id", "kind", "start_ts", "end_ts", "records", "operating_records"]
        stored = warehouse(cluster, f"SELECT {', '.join(columns)} FROM alerts")

        def episodes(table: pd.DataFrame) -> list[tuple]:
            return sorted((t, k, pd.Timestamp(s), None if pd.isna(e) else pd.Timestamp(e), int(r), int(o))
                          for t, k, s, e, r, o in table[columns].itertuples(index=False))

        whole = []
        for farm, rows in predictions.groupby("farm_id"):
            model = mlflow.pyfunc.load_model(f"models:/{farm_model_name(MODEL, farm)}@champion")
            calibration = model.unwrap_python_model().power_model.calibration
            whole += episodes(detect_alerts(rows.drop(columns="farm_id"), calibration, params))
        assert episodes(stored) == sorted(whole)
        counts["alert episodes"] = len(whole)

        # Registry: one champion per farm, a complete version (registered, tagged, its model there).
        for farm in farms:
            version = champion(registry, farm)
            assert version is not None and version.status == "READY", farm
            assert {"trained_from", "holdout_mae_kw"} <= set(version.tags), farm
            assert registry.get_run(version.run_id).info.status == "FINISHED", farm
            assert {a.path for a in registry.list_artifacts(version.run_id, "model")} >= {"model/MLmodel"}
        counts["champions"] = len(farms)
    finally:
        try:
            (tmp_path / "chaos.json").write_text(json.dumps(counts, indent=1))
            shutil.copytree(layout.logs, tmp_path / "logs", dirs_exist_ok=True)
            with suppress(Exception):  # what each flow run did, to read after a failure
                deployments, runs = flow_runs(cluster.prefect.api_url)
                (tmp_path / "flow_runs.json").write_text(json.dumps(sorted(
                    [str(r.start_time), r.name, deployments.get(str(r.deployment_id)), r.state_name,
                     (r.state.message or "")[:300] if r.state else "", str(r.end_time)] for r in runs),
                    indent=0))
            print(json.dumps(counts, indent=1))
            for service in [*workers, *([replay] if replay else [])]:
                if service.poll() is None:
                    service.stop()
        finally:  # the servers stop whatever happened above: the tests after this one need the cores
            cluster_context.__exit__(None, None, None)


def champion(registry: MlflowClient, farm: str):
    """The farm's champion version, or None."""
    try:
        return registry.get_model_version_by_alias(farm_model_name(MODEL, farm), "champion")
    except mlflow.exceptions.MlflowException:
        return None

