"""`make up`: the whole monitor on this machine, in one command, until Ctrl-C.

1. If the warehouse holds no SCADA record yet (a fresh clone), `kedro run` bootstraps it:
   ingests the bundled 2014 history, trains and registers the champion, scores.
2. Unless PREFECT_API_URL names a Prefect server to use, starts one on
   `prefect.server.host:port` (conf/base/prefect.yml; SQLite in `prefect.server.home`,
   `.prefect/` in the project, git-ignored) and waits until it answers.
3. Creates the work pool and registers (or updates) the training and inference
   deployments, starts a worker on the pool and the live SCADA replay.
4. On Ctrl-C or SIGTERM, stops every process it started (and nothing else): replay,
   worker (which stops its flow runs), server.

Logs of the server and the worker: `<prefect.server.home>/logs/`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack

import duckdb
from kedro.config import OmegaConfigLoader
from kedro.framework.project import settings

from turbine_monitor.orchestration import stack
from turbine_monitor.orchestration.flows import PROJECT_ROOT, load_config


def warehouse_has_scada() -> bool:
    """Whether the warehouse (`paths.warehouse` in the Kedro config) holds SCADA records."""
    loader = OmegaConfigLoader(conf_source=str(PROJECT_ROOT / settings.CONF_SOURCE),
                               **settings.CONFIG_LOADER_ARGS)
    warehouse = PROJECT_ROOT / loader["globals"]["paths"]["warehouse"]
    if not warehouse.exists():
        return False
    try:
        with duckdb.connect(str(warehouse), read_only=True) as con:
            return con.execute("SELECT count(*) FROM scada").fetchone()[0] > 0
    except duckdb.CatalogException:  # no `scada` table yet
        return False
    except duckdb.IOException:  # another process is writing to it: it is in use, not new
        return True


def stop_on_signals() -> None:
    """SIGTERM and SIGHUP stop `make up` the way Ctrl-C does (KeyboardInterrupt); once
    stopping, further signals are ignored so that the cleanup runs to its end."""
    def stop(signum: int, frame: object) -> None:
        for other in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(other, signal.SIG_IGN)
        print(f"\n{signal.Signals(signum).name}: stopping everything `make up` started...", flush=True)
        raise KeyboardInterrupt

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)


def main() -> int:
    stop_on_signals()
    config = load_config()
    server, pool = config["server"], config["work_pool"]["name"]
    home = PROJECT_ROOT / server["home"]
    logs = home / "logs"
    if not warehouse_has_scada():
        print("The warehouse holds no SCADA records: bootstrapping it with `kedro run`...", flush=True)
        subprocess.run([sys.executable, "-m", "kedro", "run"], cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL,
                       check=True)
    with ExitStack() as running:
        api_url = os.environ.get("PREFECT_API_URL")
        if api_url:
            print(f"Using the Prefect server of PREFECT_API_URL: {api_url}", flush=True)
            stack.wait_until_healthy(api_url, server["startup_timeout_seconds"])
            worker_env = {}
        else:
            print(f"Starting a Prefect server on {server['host']}:{server['port']} (PREFECT_HOME={home})...",
                  flush=True)
            api_url = running.enter_context(stack.prefect_server(
                host=server["host"], port=server["port"], home=home, log_file=logs / "server.log",
                startup_timeout_s=server["startup_timeout_seconds"]))
            worker_env = {"PREFECT_HOME": str(home)}
            if crashed := stack.crash_orphaned_runs(pool, api_url):  # left by a `make up` killed hard
                print(f"Set Crashed {crashed} flow run(s) whose process was gone.", flush=True)
        deployments = stack.register_deployments(api_url=api_url)
        worker = running.enter_context(stack.prefect_worker(pool, api_url, env=worker_env,
                                                            log_file=logs / "worker.log"))
        running.enter_context(stack.scada_replay())
        ui = api_url.removesuffix("/api")
        print(f"""
turbine-monitor is up. Ctrl-C stops it.
  Prefect UI       {ui}  (deployments: {', '.join(deployments)}; work pool: {pool})
  MLflow UI        make mlflow-ui   (or: uv run kedro mlflow ui)      -> http://127.0.0.1:5000
  Pipeline graph   make viz         (or: uv run kedro viz run)        -> http://127.0.0.1:4141
  Logs             {logs}/  (server.log, worker.log)
""", flush=True)
        while worker.poll() is None:  # the replay may finish (end of the data): the rest goes on
            time.sleep(1)
        print(f"The Prefect worker exited with code {worker.returncode} (see {logs / 'worker.log'}).",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("Stopped.", flush=True)
    except (RuntimeError, subprocess.CalledProcessError) as error:  # the server or the bootstrap failed
        sys.exit(f"make up: {error}")
