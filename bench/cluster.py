"""Cluster benchmark (issue 13): the cluster profile on this machine, one worker against two.

    uv run python bench/cluster.py [--farms 8] [--turbines 3] [--days 60] [--live-runs 12]
                                   [--fresh-minutes 3] [--every 5] [--json PATH] [--keep]

One run, everything temporary (a folder under /tmp: the local cluster of
`turbine_monitor.orchestration.cluster` with its PostgreSQL, MLflow and Prefect servers on
free ports, two project copies, the shared landing folders), stopped at the end:

0. a synthetic fleet (`--farms` x `--turbines`, `--days` of history; not real data) staged
   as `make up-cluster` stages it, the deployments registered from worker-1's copy and
   their schedules paused; the history ingested into the cluster's PostgreSQL warehouse
   (`kedro run --env cluster --pipeline ingestion` in worker-1's copy, with the host
   environment), which leaves every record in `scoring_queue`;
1. a training round (the `training` deployment: each farm a `training-farm` flow run, at
   most its `parallelism` at a time) with worker-1 alone; then its backlog scoring (one
   `inference` flow run over the whole queue; with `prefect.fleet.scoring_deployment` set,
   the run spreads its partitions over the workers);
2. reset (the farms' registered models deleted, so every farm is due again; predictions,
   alerts, the detector's and the reports' tables emptied and `scoring_queue` refilled
   from `scada`; the workers' model caches emptied), worker-2 started, the same round and
   backlog with both workers. Each figure is the parent flow run's end - start (Prefect
   API); the ratio is 1 worker / 2 workers;
3. the live inference pipeline on PostgreSQL against DuckDB (before any worker starts, in
   a process of its own): La Haute Borne, 2014 bootstrapped (`__default__`) in two
   sandboxes, one on DuckDB, one on a database of the bench's PostgreSQL server; then
   `--live-runs` runs of each (after one warm-up run each), alternately, each after one
   new 10-minute stamp of 2015; the pipeline's time (Kedro hooks, as bench/fleet.py) and
   the session around it;
4. freshness under the cluster profile: both workers, the schedules resumed as
   conf/cluster configures them (inference every 10 s, training rounds every 120 s), each
   farm's next day delivered every `--every` s by this process (a rename into the landing
   folder, then its mtime set to now, when it is recorded as arrived); after a 30 s
   warm-up, `--fresh-minutes` of deliveries measured: freshness = predictions.scored_at -
   arrival, p50/p95 over every record of those files (as bench/orchestration.py).

The training copies' retraining gate (`min_new_data_hours`) is set to ten years, as the
chaos test does: a farm without a champion is trained, one with a champion is not.
Otherwise the replay (a day of records every few seconds) would make every farm due at
every 2-minute round in step 4, which a real fleet (a day a day) never is.

CPU per group of processes in each step (psutil: each group's process tree, reaped
children included): PostgreSQL (postmaster and backends), the MLflow server, the Prefect
server, the workers, their flow runs, this process (the `kedro run`s it starts), and the
rest of the machine (not the bench's: other users' processes).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import psycopg
import yaml
from common import percentile
from dashboard import write_stamps
from fleet import run
from live import read_runs
from orchestration import seconds, stop_schedules

from turbine_monitor.orchestration import cluster as profile
from turbine_monitor.orchestration.flows import prefect_config
from turbine_monitor.orchestration.stack import WorkerService, free_port
from turbine_monitor.project import PROJECT_ROOT, load_config
from turbine_monitor.sandbox import Sandbox

LIVE_DAY = pd.Timestamp("2015-01-01", tz="UTC")  # the stamps of the live runs (step 3)
NEVER_DUE_HOURS = 24 * 3650  # the copies' retraining gate: only farms without a champion train
WARMUP_S = 30  # step 4: deliveries this soon after the schedules resumed are not measured
BACKLOG_PARTITIONS = 2  # the copies' partitions.max_rows: the backlog's farms in this many partitions
CATCH_UP_S = 90  # step 4: how long the last deliveries may take to be scored
DEFAULT_JSON = PROJECT_ROOT / "data" / "08_reporting" / "bench_cluster.json"
GROUPS = ("PostgreSQL", "MLflow server", "Prefect server", "workers", "flow runs", "bench", "other")
RESET_SQL = """TRUNCATE predictions, alerts, alert_detection, detector_days, detector_evidence,
                        detector_episodes, kpi_daily, scoring_queue;
               INSERT INTO scoring_queue (turbine_id, ts) SELECT turbine_id, ts FROM scada"""


# -- CPU per group of processes -------------------------------------------------------------------

def tree_cpu(pid: int) -> tuple[float, float]:
    """(CPU seconds of process `pid` itself, of its descendants: those running and those
    reaped, whose time the kernel adds to their parent's children_user/system)."""
    try:
        root = psutil.Process(pid)
        own = root.cpu_times()
        below = own.children_user + own.children_system
        for child in root.children(recursive=True):
            try:
                below += sum(child.cpu_times()[:4])
            except psutil.Error:
                continue
        return own.user + own.system, below
    except psutil.Error:
        return 0.0, 0.0


def machine_busy() -> float:
    times = psutil.cpu_times()
    return sum(getattr(times, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq", "steal"))


class CpuLedger:
    """CPU seconds per group (GROUPS) between `start()` and `stop()`: each service's process
    tree, the workers (their own process) apart from their flow runs (the processes they
    start), this process with the children it reaped (the `kedro run`s), and what the rest
    of the machine used."""

    def __init__(self, cluster: profile.LocalCluster, workers: list[WorkerService]):
        self.cluster, self.workers = cluster, workers
        self.used: dict[str, float] = {}
        self.wall_s = 0.0

    def reading(self) -> dict[str, float]:
        pid_file = self.cluster.postgres.data / "postmaster.pid"
        postmaster = int(pid_file.read_text().split()[0]) if pid_file.exists() else 0
        me = psutil.Process().cpu_times()
        values = {"PostgreSQL": sum(tree_cpu(postmaster)),
                  "MLflow server": sum(tree_cpu(self.cluster.mlflow.process.pid)),
                  "Prefect server": sum(tree_cpu(self.cluster.prefect.service.process.pid)),
                  "workers": 0.0, "flow runs": 0.0,
                  "bench": me.user + me.system + me.children_user + me.children_system,
                  "machine": machine_busy(), "wall": time.monotonic()}
        for worker in self.workers:
            if worker.poll() is None:
                own, below = tree_cpu(worker.process.pid)
                values["workers"] += own
                values["flow runs"] += below
        return values

    def __enter__(self) -> CpuLedger:
        self._start = self.reading()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self.reading()
        delta = {key: max(end[key] - self._start.get(key, 0.0), 0.0) for key in end}
        self.wall_s = delta.pop("wall")
        machine = delta.pop("machine")
        delta["other"] = max(machine - sum(delta.values()), 0.0)
        self.used = delta

    def cores(self) -> dict[str, float]:
        """CPU seconds / wall seconds per group (1.00 = one core busy)."""
        return {key: value / self.wall_s for key, value in self.used.items()} if self.wall_s else {}


# -- the cluster ----------------------------------------------------------------------------------

def configure_copy(copy: Path, partition_rows: int) -> None:
    """The copy's retraining gate (a farm with a champion is never due) and partitions of
    at most `partition_rows` rows (module docstring)."""
    settings = copy / "conf" / profile.ENV
    training = load_config("parameters", copy / "conf", profile.ENV)["training"]
    training |= {"min_new_data_hours": NEVER_DUE_HOURS}
    (settings / "parameters_training.yml").write_text(yaml.safe_dump({"training": training}))
    fleet_globals = yaml.safe_load((settings / "globals.yml").read_text())
    fleet_globals["partitions"] = {"max_rows": partition_rows}
    (settings / "globals.yml").write_text(yaml.safe_dump(fleet_globals))


def warehouse_sql(cluster: profile.LocalCluster, query: str) -> list[tuple]:
    with psycopg.connect(cluster.warehouse_url, autocommit=True, options="-c TimeZone=UTC") as con:
        cursor = con.execute(query)
        return cursor.fetchall() if cursor.description else []


def wait_online(client, pool: str, worker: WorkerService, timeout_s: float = 120) -> None:
    """Wait until `worker` shows ONLINE on the server (by its name)."""
    name = worker.name.removeprefix("Prefect worker ")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RuntimeError(f"{worker.name} exited with code {worker.poll()}.{worker.tail()}")
        online = client.read_workers_for_work_pool(pool)
        if any(w.name == name and w.status.value == "ONLINE" for w in online):
            return
        time.sleep(0.5)
    raise RuntimeError(f"{worker.name} did not come online.{worker.tail()}")


def run_watched(client, deployment_id, workers: list[WorkerService], timeout_s: float = 1200):
    """A flow run of the deployment, due now, awaited while the workers are watched (so
    that each knows the flow runs its processes held); the run once final."""
    run = client.create_flow_run_from_deployment(deployment_id, parameters=client.read_deployment(
        deployment_id).parameters)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for worker in workers:
            if worker.poll() is None:
                worker.watch()
        run = client.read_flow_run(run.id)
        if run.state is not None and run.state.is_final():
            return run
        time.sleep(0.5)
    raise RuntimeError(f"Flow run {run.name} did not end within {timeout_s:g} s ({run.state_name}).")


def child_runs(client, parent) -> list:
    """The flow runs `parent` started (run_deployment as a subflow)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    return client.read_flow_runs(flow_run_filter=FlowRunFilter(
        parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent.id])), limit=200)


def measure_run(client, cluster: profile.LocalCluster, deployment_id,
                workers: list[WorkerService]) -> dict[str, Any]:
    """One flow run of the deployment on `workers`: its wall time (end - start), its child
    runs and which worker ran them, the CPU per group meanwhile."""
    with CpuLedger(cluster, workers) as ledger:
        parent = run_watched(client, deployment_id, workers)
    children = child_runs(client, parent)
    by_worker = {w.name.removeprefix("Prefect worker "): {str(i) for i in w.flow_runs.values() if i}
                 for w in workers}
    ran = {run.id: run for run in [parent, *children]}
    return {"state": parent.state_name, "message": (parent.state.message or "")[:300],
            "wall_s": seconds(parent.end_time - parent.start_time),
            "children": len(children),
            "children_completed": sum(c.state_name == "Completed" for c in children),
            "child_s": [seconds(c.end_time - c.start_time) for c in children if c.end_time and c.start_time],
            "runs_by_worker": {name: sum(str(i) in ids for i in ran) for name, ids in by_worker.items()},
            "cpu_s": ledger.used, "cpu_wall_s": ledger.wall_s}


def reset(cluster: profile.LocalCluster, copies: list[Path]) -> None:
    """Every farm due for training again, the backlog to score again, no cached model."""
    from mlflow import MlflowClient

    registry = MlflowClient(tracking_uri=cluster.mlflow_url, registry_uri=cluster.mlflow_url)
    for model in registry.search_registered_models():
        registry.delete_registered_model(model.name)
    warehouse_sql(cluster, RESET_SQL)
    clear_model_caches(copies)


def clear_model_caches(copies: list[Path]) -> None:
    for copy in copies:
        cache = copy / load_config("globals", copy / "conf", profile.ENV)["paths"]["model_cache"]
        shutil.rmtree(cache, ignore_errors=True)


class Delivery(threading.Thread):
    """Every `every_s`, each farm's oldest staged export renamed into its landing folder,
    its mtime set to now; `arrived` maps `<farm>/<file>` (as `scada.source_file` names
    it) to that time."""

    def __init__(self, layout: profile.ClusterLayout, every_s: float):
        super().__init__(daemon=True)
        self.layout, self.every_s = layout, every_s
        self.arrived: dict[str, float] = {}
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            for farm in sorted(p for p in self.layout.staging.iterdir() if p.is_dir()):
                exports = sorted(farm.glob("*.csv"))
                if exports:
                    landed = self.layout.shared / farm.name / "landing" / exports[0].name
                    exports[0].rename(landed)
                    os.utime(landed)
                    self.arrived[f"{farm.name}/{landed.name}"] = time.time()
            self.halt.wait(self.every_s)


def freshness(cluster: profile.LocalCluster, arrived: dict[str, float]) -> dict[str, Any]:
    """scored_at - arrival for every record of the files in `arrived`."""
    rows = warehouse_sql(cluster, f"""
        SELECT s.source_file, extract(epoch FROM p.scored_at)::float8
        FROM scada s LEFT JOIN predictions p USING (turbine_id, ts)
        WHERE s.source_file IN ({", ".join("'" + name.replace("'", "''") + "'" for name in arrived)})""")
    return {"files": len(arrived), "rows": len(rows), "unscored": sum(scored is None for _, scored in rows),
            "seconds": [scored - arrived[name] for name, scored in rows if scored is not None]}


def measure_freshness(client, cluster: profile.LocalCluster, layout: profile.ClusterLayout,
                      workers: list[WorkerService], ids: dict[str, Any],
                      args: argparse.Namespace) -> dict[str, Any]:
    """Step 4 (module docstring)."""
    scheduled = [ids["training"], ids["inference"]]
    for deployment_id in scheduled:
        client.resume_deployment(deployment_id)
    delivery = Delivery(layout, args.every)
    resumed = datetime.now(UTC)
    delivery.start()
    watch(workers, WARMUP_S)
    measured_from = time.time()
    with CpuLedger(cluster, workers) as ledger:
        watch(workers, args.fresh_minutes * 60)
        delivery.halt.set()
        delivery.join()
        window_end = datetime.now(UTC)
    deadline = time.monotonic() + CATCH_UP_S
    while warehouse_sql(cluster, "SELECT count(*) FROM scoring_queue")[0][0] and time.monotonic() < deadline:
        watch(workers, 2)
    stop_schedules(client, scheduled)
    arrived = {name: t for name, t in delivery.arrived.items() if t >= measured_from}
    return {"resumed": resumed, "window": (datetime.fromtimestamp(measured_from, UTC), window_end),
            **freshness(cluster, arrived), "cpu_s": ledger.used, "cpu_wall_s": ledger.wall_s}


def watch(workers: list[WorkerService], seconds_: float) -> None:
    deadline = time.monotonic() + seconds_
    while time.monotonic() < deadline:
        for worker in workers:
            if worker.poll() is None:
                worker.watch()
        time.sleep(0.5)


def live_runs(root: Path, url: str, runs: int, log: Path) -> dict[str, Any]:
    """Step 3 in a process of its own (its Kedro logs to `log`)."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # each sandbox's own store
    with log.open("w") as stderr:
        child = subprocess.run([sys.executable, __file__, "--live-part", str(root), "--postgres-url", url,
                                "--live-runs", str(runs)], cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=stderr, text=True)
    if child.returncode:
        raise RuntimeError(f"The live runs failed:\n{log.read_text()[-5000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def live_part(root: Path, url: str, runs: int) -> dict[str, Any]:
    """The live inference pipeline on DuckDB and on PostgreSQL (`url`), alternately."""
    sandboxes = {"DuckDB": Sandbox.create(root / "duckdb"), "PostgreSQL": Sandbox.create(root / "postgres")}
    sandboxes["PostgreSQL"].use_postgres(url)
    out: dict[str, Any] = {name: {"bootstrap_s": 0.0, "pipeline_s": [], "session_s": [], "warmup_s": 0.0}
                           for name in sandboxes}
    for name, sandbox in sandboxes.items():
        started = time.perf_counter()
        run(sandbox, "__default__")
        out[name]["bootstrap_s"] = time.perf_counter() - started
    for index in range(runs + 1):
        for name in (list(sandboxes) if index % 2 else list(sandboxes)[::-1]):
            write_stamps(sandboxes[name], "lhb", LIVE_DAY, range(index, index + 1))
            started = time.perf_counter()
            pipeline = run(sandboxes[name], "inference")
            call = time.perf_counter() - started
            if index == 0:
                out[name]["warmup_s"] = pipeline
                continue
            out[name]["pipeline_s"].append(pipeline)
            out[name]["session_s"].append(call - pipeline)
    for name, sandbox in sandboxes.items():
        out[name]["unscored"] = sandbox.scalar("SELECT count(*) FROM scoring_queue")
        out[name]["predictions"] = sandbox.scalar("SELECT count(*) FROM predictions")
    return out


def bench(args: argparse.Namespace, root: Path) -> dict[str, Any]:  # noqa: PLR0915 (the steps in order)
    out: dict[str, Any] = {"started": datetime.now(UTC).isoformat(timespec="seconds"),
                           "load_before": os.getloadavg(), "args": vars(args)}
    started = time.monotonic()
    layout = profile.ClusterLayout(root / "cluster")
    base = profile.cluster_config()
    config = base | {"postgres": {**base["postgres"], "port": free_port()}, "mlflow": {"port": free_port()},
                     "prefect": {"port": free_port()}}
    replay_days = int((WARMUP_S + args.fresh_minutes * 60) / args.every) + 4
    fleet = {"farms": args.farms, "turbines": args.turbines, "start": "2016-01-01", "history_days": args.days,
             "replay_days": replay_days}
    farms = profile.stage_synthetic_fleet(layout, fleet)
    copies = [profile.project_copy(layout.copy(n), farms) for n in (1, 2)]
    farm_rows = args.turbines * args.days * 144  # a farm's records: 10-minute stamps
    out["partition_rows"] = int(math.ceil(args.farms / BACKLOG_PARTITIONS) * farm_rows * 1.01)
    for copy in copies:
        configure_copy(copy, out["partition_rows"])
    prefect = prefect_config(str(copies[0] / "conf"), profile.ENV)
    out["dispatch"] = prefect["fleet"].get("scoring_deployment")
    deployments = prefect["deployments"]
    out["parallelism"] = {deployments[key]["name"]: deployments[key]["parallelism"]
                                 for key in (prefect["fleet"]["farm_deployment"], out["dispatch"]) if key}
    out["setup_s"] = time.monotonic() - started

    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    workers: list[WorkerService] = []
    with profile.local_cluster(layout, config) as cluster, \
            temporary_settings({PREFECT_API_URL: cluster.prefect.api_url}), \
            get_client(sync_client=True) as client:
        try:
            out["cluster_up_s"] = time.monotonic() - started - out["setup_s"]
            cluster.register_deployments(copies[0])
            ids = {d.name: d.id for d in client.read_deployments()}
            stop_schedules(client, [ids["training"], ids["inference"]])
            pool = prefect["work_pool"]["name"]

            print("Step 3: live runs, DuckDB and PostgreSQL...", flush=True)
            cluster.postgres.create_database("bench_live")
            out["live"] = live_runs(root / "live", cluster.postgres.url("bench_live"), args.live_runs,
                                    layout.logs / "live.log")

            print("Ingesting the fleet's history into PostgreSQL...", flush=True)
            t = time.perf_counter()
            with (layout.logs / "ingestion.log").open("w") as log:
                subprocess.run([sys.executable, "-m", "kedro", "run", "--env", profile.ENV, "--pipeline",
                                "ingestion"], cwd=copies[0], env={**os.environ, **cluster.host_environment(),
                                                   "PYTHONPATH": str(copies[0] / "src")},
                               stdout=log, stderr=subprocess.STDOUT, check=True)
            out["ingestion_s"] = time.perf_counter() - t
            out["records"] = warehouse_sql(cluster, "SELECT count(*) FROM scada")[0][0]

            for count in (1, 2):
                if count == 2:
                    reset(cluster, copies)
                else:
                    clear_model_caches(copies)
                workers.append(cluster.worker(count))
                workers[-1].start()
                wait_online(client, pool, workers[-1])
                print(f"Step {count}: training round and backlog with {count} worker(s)...", flush=True)
                out[f"training_{count}"] = measure_run(client, cluster, ids["training"], workers)
                out[f"backlog_{count}"] = measure_run(client, cluster, ids["inference"], workers)
                out[f"backlog_{count}"]["scored"] = warehouse_sql(
                    cluster, "SELECT count(*) FROM predictions")[0][0]

            print(f"Step 4: freshness, {args.fresh_minutes:g} min after {WARMUP_S} s of warm-up...",
                  flush=True)
            out["freshness"] = measure_freshness(client, cluster, layout, workers, ids, args)
            api = read_runs(cluster.prefect.api_url)
            out["live_cluster"] = cluster_runs(api, *out["freshness"]["window"])
            out["process_cpu"] = process_cpu(api)
        finally:
            for worker in reversed(workers):
                if worker.poll() is None:
                    worker.stop()
                worker.after_exit()
    out["total_s"] = time.monotonic() - started
    out["load_after"] = os.getloadavg()
    return out


def cluster_runs(api: dict[str, Any], start: datetime, end: datetime) -> dict[str, Any]:
    """Step 4's scheduled runs due in the window: outcomes, lag, pipeline times."""
    out: dict[str, Any] = {}
    for name in ("inference", "training"):
        due = [r for r in api["runs"].get(name, [])
               if r.auto_scheduled and start <= r.expected_start_time < end]
        ran = [r for r in due if r.start_time and r.state_type.value in ("COMPLETED", "FAILED", "CRASHED")]
        timings = [api["timings"][r.id] for r in ran if r.id in api["timings"]]
        out[name] = {"due": len(due), "states": {s: sum(r.state_name == s for r in due)
                                                 for s in sorted({r.state_name for r in due})},
                     "lag_s": [seconds(r.start_time - r.expected_start_time) for r in ran],
                     "flow_run_s": [seconds(r.end_time - r.start_time) for r in ran if r.end_time],
                     "pipeline_s": [t["pipeline_s"] for t in timings]}
    return out


def process_cpu(api: dict[str, Any]) -> dict[str, dict[str, list[float]]]:
    """Per deployment, each flow-run process's CPU before its flow started (interpreter,
    imports) and in all, from its `Timings:` line."""
    return {name: {key: [api["timings"][r.id][key] for r in runs if r.id in api["timings"]]
                   for key in ("startup_cpu_s", "process_cpu_s")} for name, runs in api["runs"].items()}


# -- report ---------------------------------------------------------------------------------------

def p(values: list[float], q: float) -> float:
    return percentile(values, q)


def report(out: dict[str, Any]) -> None:  # noqa: PLR0915 (one table after another)
    def row(label: str, *cells: str) -> None:
        print(f"{label:<52}" + "".join(f"{c:>12}" for c in cells))

    t1, t2, b1, b2 = (out[k] for k in ("training_1", "training_2", "backlog_1", "backlog_2"))
    cores = os.cpu_count() or 1
    args = out["args"]
    print(f"\nCluster profile on one machine ({os.cpu_count()} CPUs; load average before "
          f"{out['load_before'][0]:.2f}, after {out['load_after'][0]:.2f}): PostgreSQL, MLflow server, "
          f"Prefect server, workers in project copies. Synthetic fleet (not real data): "
          f"{args['farms']} farms x {args['turbines']} turbines x {args['days']} days = {out['records']:,} "
          f"records, ingested into "
          f"PostgreSQL in {out['ingestion_s']:.1f} s ({out['records'] / out['ingestion_s']:,.0f} records/s, "
          f"`kedro run`). Setup {out['setup_s']:.0f} s, cluster up {out['cluster_up_s']:.0f} s, whole bench "
          f"{out['total_s']:.0f} s.\n")
    row("", "1 worker", "2 workers", "ratio")
    row(f"training round ({t1['children']} / {t2['children']} farm runs), s", f"{t1['wall_s']:.1f}",
        f"{t2['wall_s']:.1f}", f"{t1['wall_s'] / t2['wall_s']:.2f}x")
    row("  farm flow run, median s", f"{p(t1['child_s'], 50):.1f}", f"{p(t2['child_s'], 50):.1f}")
    row("  flow runs per worker (round and farms)", workers_cell(t1), workers_cell(t2))
    row("  CPU busy over the round, cores (all / ours)", cores_cell(t1), cores_cell(t2))
    row("  CPU of our processes, s (/ cores: the floor)", *(f"{ours_cpu(m):.0f} ({ours_cpu(m) / cores:.0f})"
                                                         for m in (t1, t2)))
    dispatch = out["dispatch"] or "none"
    row(f"backlog scoring ({b1['scored']:,} rows), s", f"{b1['wall_s']:.1f}", f"{b2['wall_s']:.1f}",
        f"{b1['wall_s'] / b2['wall_s']:.2f}x")
    row(f"  partition flow runs ({dispatch})", str(b1["children"]), str(b2["children"]))
    row("  flow runs per worker", workers_cell(b1), workers_cell(b2))
    row("  CPU busy over the backlog, cores (all / ours)", cores_cell(b1), cores_cell(b2))
    row("  CPU of our processes, s (/ cores: the floor)", *(f"{ours_cpu(m):.0f} ({ours_cpu(m) / cores:.0f})"
                                                         for m in (b1, b2)))
    for key, label in (("training_1", "training, 1 worker"), ("training_2", "training, 2 workers"),
                       ("backlog_1", "backlog, 1 worker"), ("backlog_2", "backlog, 2 workers")):
        if out[key]["state"] != "Completed":
            print(f"  !! {label}: {out[key]['state']}: {out[key]['message']}")

    live = out["live"]
    duck, pg = live["DuckDB"], live["PostgreSQL"]
    print()
    row(f"live inference run (La Haute Borne, {len(duck['pipeline_s'])} runs each)", "DuckDB", "PostgreSQL",
        "ratio")
    for label, q in (("  pipeline, median s", 50), ("  pipeline, p95 s", 95)):
        row(label, f"{p(duck['pipeline_s'], q):.3f}", f"{p(pg['pipeline_s'], q):.3f}",
            f"{p(pg['pipeline_s'], q) / p(duck['pipeline_s'], q):.2f}x")
    row("  session around it (open, close), median s", f"{p(duck['session_s'], 50):.3f}",
        f"{p(pg['session_s'], 50):.3f}")
    row("  first run after the bootstrap (not counted), s", f"{duck['warmup_s']:.3f}",
        f"{pg['warmup_s']:.3f}")
    row("  bootstrap: kedro run __default__ (2014), s", f"{duck['bootstrap_s']:.1f}",
        f"{pg['bootstrap_s']:.1f}")
    row("  rows left unscored", str(duck["unscored"]), str(pg["unscored"]))

    fresh, runs = out["freshness"], out["live_cluster"]
    start, end = fresh["window"]
    print(f"\nfreshness under the cluster profile: 2 workers, inference every 10 s, training rounds every "
          f"120 s, each farm's next day every {args['every']:g} s; window "
          f"{start:%H:%M:%S}-{end:%H:%M:%S} UTC after {WARMUP_S} s of warm-up")
    print(f"{'seconds':<52}{'p50':>12}{'p95':>12}{'max':>12}{'n':>12}")

    def stat_row(label: str, values: list[float]) -> None:
        if values:
            row(label, f"{p(values, 50):.2f}", f"{p(values, 95):.2f}", f"{max(values):.2f}",
                f"{len(values):,}")

    stat_row(f"scored_at - file arrived ({fresh['files']} files)", fresh["seconds"])
    for name in ("inference", "training"):
        stat_row(f"{name}: start lag (start - scheduled)", runs[name]["lag_s"])
        stat_row(f"{name}: flow run (start -> end)", runs[name]["flow_run_s"])
        stat_row(f"{name}: pipeline (Timings)", runs[name]["pipeline_s"])
    states = {name: ", ".join(f"{s} {n}" for s, n in r["states"].items()) for name, r in runs.items()}
    print("  runs due in the window: " + "; ".join(f"{name} {r['due']} ({states[name]})"
                                                   for name, r in runs.items())
          + f"; rows of those files {fresh['rows']:,}, left unscored {fresh['unscored']}")

    print("\nCPU per group of processes, cores (CPU s / wall s; 1.00 = one core)")
    print(f"{'step':<26}{'wall s':>8}" + "".join(f"{g.replace(' server', ''):>11}" for g in GROUPS)
          + f"{'machine':>9}")
    for key, label in (("training_1", "training, 1 worker"), ("training_2", "training, 2 workers"),
                       ("backlog_1", "backlog, 1 worker"), ("backlog_2", "backlog, 2 workers"),
                       ("freshness", "live, 2 workers")):
        used, wall = out[key]["cpu_s"], out[key]["cpu_wall_s"]
        print(f"{label:<26}{wall:>8.1f}" + "".join(f"{used.get(g, 0.0) / wall:>11.2f}" for g in GROUPS)
              + f"{sum(used.values()) / wall:>9.2f}")
    limits(out)


def limits(out: dict[str, Any]) -> None:
    """What bounds the 1 -> 2 worker ratio, from the figures measured."""
    cpu = out["process_cpu"]
    print(f"\nWhat limits 1 -> 2 workers on {os.cpu_count()} cores:")
    bounds = ", ".join(f"{name} {limit}" for name, limit in out["parallelism"].items())
    print("  - parallelism: the farm runs and the backlog's partition runs are bounded by their "
          f"deployments' parallelism ({bounds} at a time), not by the workers: one worker alone already "
          "runs that many at once (its limit is 3), beside the parent run.")
    for name in ("training-farm", "inference-farms", "inference"):
        if values := cpu.get(name, {}).get("startup_cpu_s"):
            print(f"  - a flow-run process of {name}: {p(values, 50):.1f} s of CPU before its flow starts "
                  f"(interpreter, imports), {p(cpu[name]['process_cpu_s'], 50):.1f} s in all (medians of "
                  f"{len(values)})")
    for key, label in (("training_2", "training round"), ("backlog_2", "backlog")):
        used, wall = out[key]["cpu_s"], out[key]["cpu_wall_s"]
        services = sum(used[g] for g in ("PostgreSQL", "MLflow server", "Prefect server")) / wall
        print(f"  - {label} with 2 workers: the machine {sum(used.values()) / wall:.2f} cores busy of "
              f"{os.cpu_count()}: flow runs {used['flow runs'] / wall:.2f}, PostgreSQL + MLflow + Prefect "
              f"servers {services:.2f}, other users' processes {used['other'] / wall:.2f}")


def workers_cell(measured: dict[str, Any]) -> str:
    return "/".join(str(n) for n in measured["runs_by_worker"].values())


def ours_cpu(measured: dict[str, Any]) -> float:
    """CPU seconds of the bench's processes (every group but `other`) over the step."""
    return sum(measured["cpu_s"].values()) - measured["cpu_s"]["other"]


def cores_cell(measured: dict[str, Any]) -> str:
    used, wall = measured["cpu_s"], measured["cpu_wall_s"]
    return f"{sum(used.values()) / wall:.2f}/{ours_cpu(measured) / wall:.2f}"


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Path):
        return str(value)
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--farms", type=int, default=8)
    parser.add_argument("--turbines", type=int, default=3)
    parser.add_argument("--days", type=int, default=60, help="history per farm (default 60)")
    parser.add_argument("--live-runs", type=int, default=12, help="step 3: runs on each warehouse")
    parser.add_argument("--fresh-minutes", type=float, default=3, help="step 4: the measured window")
    parser.add_argument("--every", type=float, default=5, help="step 4: seconds between deliveries")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON,
                        help=f"figures as JSON (default {DEFAULT_JSON.relative_to(PROJECT_ROOT)})")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, databases)")
    parser.add_argument("--live-part", type=Path, help=argparse.SUPPRESS)  # step 3's process
    parser.add_argument("--postgres-url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.live_part:
        print(json.dumps(live_part(args.live_part, args.postgres_url, args.live_runs)))
        return

    root = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    root.chmod(0o755)  # PostgreSQL runs as `postgres` under root
    try:
        out = bench(args, root)
    except BaseException:
        print(f"Logs in {root / 'cluster' / 'logs'}" + ("" if args.keep else " (removed: run with --keep)"),
              file=sys.stderr)
        raise
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    report(out)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(jsonable(out), indent=1))
    print(f"\nFigures written to {args.json}" + (f"; workspace kept: {root}" if args.keep else ""))


if __name__ == "__main__":
    main()
