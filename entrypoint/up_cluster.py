"""`make up-cluster`: the cluster profile on this machine, in one command, until Ctrl-C
(settings: conf/cluster/cluster.yml; everything under its `root`, `.cluster/`, git-ignored).

1. Writes a synthetic fleet (not real data) into the shared folder (`<root>/shared`:
   each farm's asset table and landing folder, what every host would mount): its first
   `history_days` as landing exports, the rest staged for the replay.
2. Makes a copy of the project per worker (`<root>/workers/worker-N`: the project's
   files, the fleet as its conf/cluster/farms.yml), as each host has its own checkout.
3. Starts a throwaway PostgreSQL cluster (`<root>/postgres`; Debian's server binaries)
   with three databases (warehouse, MLflow's backend store, Prefect's), the MLflow
   tracking server (artifacts served from `<root>/mlflow-artifacts`) and the Prefect
   server on PostgreSQL.
4. Registers the deployments of the cluster environment (training rounds spread over the
   workers as `training-farm` runs; crash detection), starts the workers, each from its
   copy with only the services' addresses in its environment, the replay and the
   dashboard (on the PostgreSQL warehouse), and supervises them as `make up` does.
5. On Ctrl-C or SIGTERM stops everything it started. Logs: `<root>/logs/`.
"""

from __future__ import annotations

import subprocess
import sys
import time
from contextlib import ExitStack, suppress

import psycopg

from turbine_monitor.orchestration import stack
from turbine_monitor.orchestration.cluster import (
    ENV,
    ClusterLayout,
    cluster_config,
    local_cluster,
    project_copy,
    stage_synthetic_fleet,
)
from turbine_monitor.orchestration.postgres import PostgresUnavailable
from turbine_monitor.project import PROJECT_ROOT, load_config


def main() -> None:
    stack.stop_on_signals("make up-cluster")
    config = cluster_config()
    layout = ClusterLayout(PROJECT_ROOT / config["root"])
    fleet = config["fleet"]
    stack.say(f"Writing a synthetic fleet of {fleet['farms']} farms into {layout.shared} "
              f"({fleet['history_days']} days delivered, {fleet['replay_days']} to replay)...")
    farms = stage_synthetic_fleet(layout, fleet)
    for number in range(1, config["workers"] + 1):
        project_copy(layout.copy(number), farms)
    stack.say(f"Copied the project for {config['workers']} workers under {layout.root / 'workers'}.")
    with ExitStack() as running:
        stack.say(f"Starting PostgreSQL on 127.0.0.1:{config['postgres']['port']}, the MLflow server and the "
                  "Prefect server on it...")
        cluster = running.enter_context(local_cluster(layout, config))
        stack.say(cluster.register_deployments(layout.copy(1)).strip())
        prefect = stack.prefect_config(env=ENV)
        supervisor = running.enter_context(stack.Supervisor(stack.restart_policy(prefect), say=stack.say))
        for number in range(1, config["workers"] + 1):
            supervisor.add(cluster.worker(number))
        supervisor.add(cluster.fleet_replay(fleet["every_seconds"]))
        stack.say("Waiting for the first ingestion (the dashboard reads its choices of farms and turbines "
                  "as it starts)...")
        wait_for_turbines(cluster.warehouse_url, supervisor)
        supervisor.add(stack.dashboard_service(cluster.host_environment(), layout.logs / "dashboard.log",
                                               args=["--env", ENV], project=layout.copy(1)))
        dashboard = load_config("dashboard", env=ENV)["dashboard"]
        environment = "\n".join(f"                   {name}={value}"
                                for name, value in cluster.host_environment().items())
        print(f"""
turbine-monitor's cluster profile is up. Ctrl-C stops it.
  Dashboard        http://{dashboard['host']}:{dashboard['port']}  (fleet, turbines, alerts, losses, runs)
  Prefect UI       {cluster.prefect.api_url.removesuffix('/api')}
  MLflow UI        {cluster.mlflow_url}
  Warehouse        {cluster.warehouse_url}  (psql, or any PostgreSQL client)
  Workers          {', '.join(str(layout.copy(n)) for n in range(1, config['workers'] + 1))}
  Shared landing   {layout.shared}/<farm>/landing/
  Each host sets   (as the workers here do)
{environment}
  Logs             {layout.logs}/  (prefect.log, mlflow.log, worker-N.log, replay.log, dashboard.log)
""", flush=True)
        supervisor.watch(essential=cluster.prefect.service)


def wait_for_turbines(url: str, supervisor: stack.Supervisor, timeout_s: float = 600) -> None:
    """Until the warehouse lists turbines (or `timeout_s`), the supervisor watching."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with suppress(psycopg.Error), psycopg.connect(url, connect_timeout=5) as con:
            if con.execute("SELECT count(*) FROM turbines").fetchone()[0]:
                return
        supervisor.check()
        time.sleep(2)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        stack.say("Stopped.")
    except PostgresUnavailable as missing:
        sys.exit(f"make up-cluster: {missing}")
    except (RuntimeError, subprocess.CalledProcessError) as error:  # a service gave up, a tool failed
        sys.exit(f"make up-cluster: {error}")
