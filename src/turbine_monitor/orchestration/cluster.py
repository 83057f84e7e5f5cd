"""The cluster profile on one machine, as `make up-cluster` and the chaos test run it:
a throwaway PostgreSQL cluster holding the warehouse, MLflow's backend store and
Prefect's database; an MLflow tracking server serving the artifacts; a Prefect server;
workers, each in a copy of the project of its own (as on separate hosts); a shared
folder holding the farms' asset tables and landing folders; the synthetic fleet's replay.

    layout = ClusterLayout(Path(".cluster"))
    with local_cluster(layout, config) as cluster:      # PostgreSQL, MLflow, Prefect
        cluster.register_deployments()
        worker = cluster.worker(1)                      # a Service, not started
        ...

What a host needs on real machines is what `host_environment` gives the workers here:
PREFECT_API_URL, MLFLOW_TRACKING_URI, TURBINE_MONITOR_WAREHOUSE_URL (README, "Cluster
profile").
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from turbine_monitor.orchestration import stack
from turbine_monitor.orchestration.postgres import PostgresCluster
from turbine_monitor.project import PROJECT_ROOT, load_config
from turbine_monitor.synthetic import write_farms_yml, write_synthetic_fleet

ENV = "cluster"  # the Kedro environment of the profile


@dataclass
class ClusterLayout:
    """Where the local cluster keeps everything (`cluster.root` in conf/cluster/cluster.yml)."""

    root: Path

    @property
    def postgres(self) -> Path:
        return self.root / "postgres"

    @property
    def artifacts(self) -> Path:
        return self.root / "mlflow-artifacts"

    @property
    def prefect_home(self) -> Path:
        return self.root / "prefect"

    @property
    def shared(self) -> Path:
        """What every host mounts: each farm's asset table and landing folder."""
        return self.root / "shared"

    @property
    def staging(self) -> Path:
        """The synthetic fleet's exports still to be delivered, per farm."""
        return self.root / "staging"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def copy(self, number: int) -> Path:
        return self.root / "workers" / f"worker-{number}"


def cluster_config(conf_source: str | None = None) -> dict[str, Any]:
    """`cluster:` of conf/cluster/cluster.yml."""
    return load_config("cluster", conf_source, ENV)["cluster"]


def project_copy(destination: Path, farms: dict[str, Any] | None = None) -> Path:
    """A copy of the project's files (tracked and not ignored, as git lists them: no data,
    no local configuration, no virtual environment) at `destination`, its sources compiled
    to bytecode, with `farms` as its cluster fleet (conf/cluster/farms.yml), as a host
    would have its own checkout."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=PROJECT_ROOT, capture_output=True, check=True).stdout.decode()
    shutil.rmtree(destination, ignore_errors=True)
    for name in filter(None, listed.split("\0")):
        source = PROJECT_ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    if farms is not None:
        write_farms_yml(destination / "conf" / ENV / "farms.yml", farms)
    subprocess.run([sys.executable, "-m", "compileall", "-q", "src"], cwd=destination, check=True)
    return destination


def stage_synthetic_fleet(layout: ClusterLayout, fleet: dict[str, Any]) -> dict[str, Any]:
    """Write the synthetic fleet (`fleet`: farms, turbines, start, history_days,
    replay_days) into the shared folder, one export per farm and day, and move all but
    each farm's first `history_days` exports to the staging folder for the replay.
    Returns the farms' entries of farms.yml."""
    shutil.rmtree(layout.shared, ignore_errors=True)
    shutil.rmtree(layout.staging, ignore_errors=True)
    days = fleet["history_days"] + fleet["replay_days"]
    farms = write_synthetic_fleet(layout.shared, fleet["farms"], days, fleet["start"],
                                  turbines=fleet["turbines"], file_days=1)
    for farm, entry in farms.items():
        staged = layout.staging / farm
        staged.mkdir(parents=True)
        for export in sorted(Path(entry["landing"]).glob("*.csv"))[fleet["history_days"]:]:
            export.rename(staged / export.name)
    return farms


def deliver_next_exports(staging: Path, shared: Path) -> int:
    """Move each farm's oldest staged export into its landing folder (a rename within one
    filesystem: the file appears whole). Returns how many were moved (0: all delivered)."""
    moved = 0
    for farm in sorted(p for p in staging.iterdir() if p.is_dir()):
        exports = sorted(farm.glob("*.csv"))
        if exports:
            exports[0].rename(shared / farm.name / "landing" / exports[0].name)
            moved += 1
    return moved


@dataclass
class LocalCluster:
    """The services of a running local cluster."""

    layout: ClusterLayout
    config: dict[str, Any]
    postgres: PostgresCluster
    mlflow: stack.Service
    prefect: stack.PrefectServer

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.config['mlflow']['port']}"

    @property
    def warehouse_url(self) -> str:
        return self.postgres.url(self.config["postgres"]["databases"]["warehouse"])

    def host_environment(self) -> dict[str, str]:
        """What a host of the cluster sets: where the services are."""
        return {"PREFECT_API_URL": self.prefect.api_url, "MLFLOW_TRACKING_URI": self.mlflow_url,
                "TURBINE_MONITOR_WAREHOUSE_URL": self.warehouse_url}

    def register_deployments(self, copy: Path) -> str:
        """Register the deployments and automations of the cluster configuration as an
        operator would, from one host's checkout (`copy`): `entrypoint/deploy.py --env
        cluster` run there. Returns what it printed."""
        done = subprocess.run([sys.executable, "entrypoint/deploy.py", "--env", ENV], cwd=copy,
                              env={**os.environ, **self.host_environment(), "PYTHONPATH": str(copy / "src")},
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if done.returncode:
            raise RuntimeError(f"Registering the deployments failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def worker(self, number: int, copy: Path | None = None) -> stack.WorkerService:
        """Worker `worker-<number>` (not started) in `copy` (default: the layout's copy)."""
        name = f"worker-{number}"
        return stack.worker_service(
            stack.prefect_config(env=ENV)["work_pool"]["name"], self.prefect.api_url,
            env=self.host_environment(), log_file=self.layout.logs / f"{name}.log", kedro_env=ENV,
            name=name, project=copy or self.layout.copy(number))

    def fleet_replay(self, every_s: float) -> stack.Service:
        """`entrypoint/replay_fleet.py` (not started): the staged exports into the shared
        landing folders, each farm's next one every `every_s` seconds."""
        return stack.Service("fleet replay", [
            sys.executable, str(PROJECT_ROOT / "entrypoint" / "replay_fleet.py"), "--staging",
            str(self.layout.staging), "--shared", str(self.layout.shared), "--every", str(every_s)],
            log_file=self.layout.logs / "replay.log", restart_on_success=False)

    def start_mlflow(self) -> None:
        """(Re)start the MLflow server and wait until it answers."""
        self.mlflow.start()
        stack.wait_until_healthy(self.mlflow_url, 120, self.mlflow)


def mlflow_server(backend_store_uri: str, artifacts: Path, port: int, log_file: Path) -> stack.Service:
    """`mlflow server` on 127.0.0.1:`port` with `backend_store_uri` (PostgreSQL) as its
    backend store, serving the artifacts it keeps in `artifacts`; without MLflow's job
    runner (six `huey` consumer processes, ~250 MB each, for GenAI jobs the project does
    not use)."""
    return stack.Service("MLflow server", [
        sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_store_uri,
        "--artifacts-destination", str(artifacts), "--serve-artifacts", "--host", "127.0.0.1",
        "--port", str(port), "--workers", "1"], env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        log_file=log_file)


@contextmanager
def local_cluster(layout: ClusterLayout, config: dict[str, Any]) -> Iterator[LocalCluster]:
    """PostgreSQL (created on first use, its databases too), the MLflow server and the
    Prefect server, all on 127.0.0.1, for the time of the block; stopped in reverse order."""
    databases = config["postgres"]["databases"]
    postgres = PostgresCluster(layout.postgres, config["postgres"]["port"]).create()
    with ExitStack() as running:
        if postgres.running():  # left by a `make up-cluster` killed hard
            postgres.stop("immediate")
        postgres.start()
        running.callback(postgres.stop)
        for database in databases.values():
            postgres.create_database(database)
        mlflow = mlflow_server(postgres.url(databases["mlflow"], "psycopg"), layout.artifacts,
                               config["mlflow"]["port"], layout.logs / "mlflow.log")
        mlflow.start()  # starting both servers at once: each takes ~15 s (database migrations)
        running.callback(lambda: mlflow.stop() if mlflow.poll() is None else None)
        prefect = running.enter_context(stack.prefect_server(
            port=config["prefect"]["port"], home=layout.prefect_home,
            database_url=postgres.url(databases["prefect"], "asyncpg"), log_file=layout.logs / "prefect.log",
            startup_timeout_s=180, settings=stack.prefect_config(env=ENV)["server"]["settings"]))
        cluster = LocalCluster(layout, config, postgres, mlflow, prefect)
        stack.wait_until_healthy(cluster.mlflow_url, 120, mlflow)
        yield cluster
