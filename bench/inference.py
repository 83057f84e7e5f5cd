"""Inference benchmark: scoring a one-year backlog, then a run with no new data.

    uv run python bench/inference.py

In a temporary workspace: ingests the bundled 2014 history and trains the champion on
it, then times the inference pipeline (ingestion of new files, scoring, alerts) twice:
with the whole year unscored (~210k rows), and again with nothing new. For scale it
also times an empty Kedro pipeline run the same way, and prints the wall time of a
`kedro run --pipeline inference` process with nothing new.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

sys.path.insert(0, str(Path(__file__).parent))
from training import PROJECT_ROOT, Timer, fresh_store, workspace  # noqa: E402


def timed_run(conf: Path, pipeline: str) -> tuple[float, Timer]:
    timer = Timer()
    with KedroSession.create(project_path=PROJECT_ROOT, conf_source=str(conf)) as session:
        session._hook_manager.register(timer)  # no public API to add a hook to one session
        session.load_context()  # start-up is not pipeline time
        start = time.perf_counter()
        session.run(pipeline_names=[pipeline])
        return time.perf_counter() - start, timer


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        conf = workspace(root)
        os.environ["MLFLOW_TRACKING_URI"] = fresh_store(root, "mlflow.db")
        bootstrap_project(PROJECT_ROOT)
        for pipeline in ("ingestion", "training"):
            with KedroSession.create(project_path=PROJECT_ROOT, conf_source=str(conf)) as session:
                session.run(pipeline_names=[pipeline])
        backlog_s, backlog = timed_run(conf, "inference")
        con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
        scored = con.execute("SELECT count(*) FROM predictions").fetchone()[0]
        con.close()
        idle_s, idle = timed_run(conf, "inference")
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "kedro", "run", "--pipelines", "inference",
                        "--conf-source", str(conf)], cwd=PROJECT_ROOT, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        idle_wall_s = time.perf_counter() - start

    print(f"backlog: {scored:,} rows scored in one inference run")
    print(f"{'inference pipeline, one-year backlog':<52}{backlog_s:7.2f} s")
    for key, seconds in sorted(backlog.seconds.items(), key=lambda kv: -kv[1])[:6]:
        print(f"    {key:<48}{seconds:7.2f} s")
    print(f"{'inference pipeline, nothing new':<52}{idle_s:7.2f} s")
    for key, seconds in sorted(idle.seconds.items(), key=lambda kv: -kv[1])[:6]:
        print(f"    {key:<48}{seconds:7.2f} s")
    print(f"{'kedro run --pipeline inference, nothing new, wall':<52}{idle_wall_s:7.2f} s")


if __name__ == "__main__":
    main()
