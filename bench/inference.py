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

from common import Timer, fresh_store

from turbine_monitor.project import PROJECT_ROOT, kedro_session
from turbine_monitor.sandbox import Sandbox


def timed_run(sandbox: Sandbox, pipeline: str) -> tuple[float, Timer]:
    timer = Timer()
    with kedro_session(sandbox.conf, hooks=(timer,)) as session:
        session.load_context()  # start-up is not pipeline time
        start = time.perf_counter()
        session.run(pipeline_names=[pipeline])
        return time.perf_counter() - start, timer


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sandbox = Sandbox.create(Path(tmp))
        os.environ["MLFLOW_TRACKING_URI"] = fresh_store(sandbox.root, "mlflow.db")
        for pipeline in ("ingestion", "training"):
            sandbox.run(pipeline)
        backlog_s, backlog = timed_run(sandbox, "inference")
        scored = sandbox.scalar("SELECT count(*) FROM predictions")
        idle_s, idle = timed_run(sandbox, "inference")
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "kedro", "run", "--pipelines", "inference",
                        "--conf-source", str(sandbox.conf)], cwd=PROJECT_ROOT, check=True,
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
