"""`make up`: the whole monitor on this machine, in one command, until Ctrl-C.

1. If the warehouse holds no SCADA record yet (a fresh clone), `kedro run-fleet` bootstraps it:
   ingests the bundled 2014 history, trains and registers the champion, scores.
2. Unless PREFECT_API_URL names a Prefect server to use, starts one on
   `prefect.server.host:port` (conf/base/prefect.yml; SQLite in `prefect.server.home`,
   `.prefect/` in the project, git-ignored) and waits until it answers.
3. Creates the work pool and registers (or updates) the training and inference
   deployments and the automation that calls the alert webhook for each alert opened
   live (with no webhook configured, one log line says notifications are off), starts
   a worker on the pool, the live SCADA replay and the dashboard (`kedro dashboard`,
   conf/base/dashboard.yml), and supervises them: one that dies
   is restarted with backoff (`prefect.supervisor`); the runs a dead worker held are
   stopped and set Crashed first. `make up` gives up, stopping everything with a
   message, when one dies too often or the server dies.
4. On Ctrl-C or SIGTERM, stops every process it started (and nothing else): replay,
   dashboard, worker (which stops its flow runs), server.

Logs of the server, the worker, the replay and the dashboard: `<prefect.server.home>/logs/`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import ExitStack

import duckdb

from turbine_monitor.orchestration import stack
from turbine_monitor.orchestration.flows import prefect_config
from turbine_monitor.project import PROJECT_ROOT, load_config


def warehouse_has_scada() -> bool:
    """Whether the warehouse (`paths.warehouse` in the Kedro config) holds SCADA records."""
    warehouse = PROJECT_ROOT / load_config("globals")["paths"]["warehouse"]
    if not warehouse.exists():
        return False
    try:
        with duckdb.connect(str(warehouse), read_only=True) as con:
            return con.execute("SELECT count(*) FROM scada").fetchone()[0] > 0
    except duckdb.CatalogException:  # no `scada` table yet
        return False
    except duckdb.IOException:  # another process is writing to it: it is in use, not new
        return True


def main() -> None:
    stack.stop_on_signals("make up")
    config = prefect_config()
    server_options, pool = config["server"], config["work_pool"]["name"]
    home = PROJECT_ROOT / server_options["home"]
    logs = home / "logs"
    if not warehouse_has_scada():
        stack.say("The warehouse holds no SCADA records: bootstrapping it with `kedro run-fleet`...")
        subprocess.run([sys.executable, "-m", "kedro", "run-fleet"], cwd=PROJECT_ROOT,
                       stdin=subprocess.DEVNULL, check=True)
    with ExitStack() as running:
        api_url, server, worker_env = os.environ.get("PREFECT_API_URL"), None, {}
        if api_url:
            stack.say(f"Using the Prefect server of PREFECT_API_URL: {api_url}")
            stack.wait_until_healthy(api_url, server_options["startup_timeout_seconds"])
        else:
            stack.say(f"Starting a Prefect server on {server_options['host']}:{server_options['port']} "
                f"(PREFECT_HOME={home})...")
            server = running.enter_context(stack.prefect_server(
                host=server_options["host"], port=server_options["port"], home=home,
                log_file=logs / "server.log", startup_timeout_s=server_options["startup_timeout_seconds"],
                settings=server_options["settings"]))
            api_url, worker_env = server.api_url, {"PREFECT_HOME": str(home)}
            if crashed := stack.crash_orphaned_runs(pool, api_url):  # left by a `make up` killed hard
                stack.say(f"Set Crashed {crashed} flow run(s) whose process was gone.")
        deployments = stack.register_deployments(api_url=api_url)
        supervisor = running.enter_context(stack.Supervisor(stack.restart_policy(config), say=stack.say))
        supervisor.add(stack.worker_service(pool, api_url, env=worker_env, log_file=logs / "worker.log"))
        supervisor.add(stack.replay_service(log_file=logs / "replay.log"))
        supervisor.add(stack.dashboard_service(env={"PREFECT_API_URL": api_url},
                                               log_file=logs / "dashboard.log"))
        ui = api_url.removesuffix("/api")
        dashboard = load_config("dashboard")["dashboard"]
        print(f"""
turbine-monitor is up. Ctrl-C stops it.
  Prefect UI       {ui}  (deployments: {', '.join(deployments)}; work pool: {pool})
  Dashboard        http://{dashboard['host']}:{dashboard['port']}  (fleet, turbines, alerts, losses, runs)
  MLflow UI        make mlflow-ui   (or: uv run kedro mlflow ui)      -> http://127.0.0.1:5000
  Pipeline graph   make viz         (or: uv run kedro viz run)        -> http://127.0.0.1:4141
  Logs             {logs}/  (server.log, worker.log, replay.log, dashboard.log)
""", flush=True)
        supervisor.watch(essential=server.service if server else None)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        stack.say("Stopped.")
    except (RuntimeError, subprocess.CalledProcessError) as error:  # a service gave up, the bootstrap failed
        sys.exit(f"make up: {error}")
