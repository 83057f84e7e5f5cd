"""Training benchmark: `kedro run --pipeline training` on a 365-day window (2014).

    uv run python bench/training.py

In a temporary workspace (own warehouse and SQLite MLflow store): ingests the bundled
2014 history, then runs the training pipeline twice, each time with no champion yet:
once in-process with a hook that times every node and dataset load/save (the split:
load, fit, evaluate, log), once as a plain `kedro run` subprocess for the wall time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import Timer, fresh_store

from turbine_monitor.project import PROJECT_ROOT
from turbine_monitor.sandbox import Sandbox

PHASES = {
    "load": {"load:scada@history", "load:current_champions", "load:farm_assets"},
    "prepare (farm, window, normal-operation filter, split)": {
        "node:select_farm", "node:select_training_window", "node:flag_normal_operation",
        "node:split_by_time"},
    "fit (features, estimator, IEC curve, calibration)": {"node:fit_power_model"},
    "evaluate (holdout, metrics, plots, champion re-score)": {
        "node:predict_holdout", "node:summarise_holdout", "node:plot_training_figures"},
    "decide and register the release (ModelRegistryHooks)": {"node:decide_promotion"},
    "log metrics and figures to MLflow": {
        "save:holdout_metrics", "save:promotion_metrics", "save:power_curves_figure",
        "save:residual_distribution_figure", "save:residuals_over_time_figure"},
}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sandbox = Sandbox.create(Path(tmp))
        os.environ["MLFLOW_TRACKING_URI"] = fresh_store(sandbox.root, "mlflow-a.db")
        sandbox.run("ingestion")
        timer = Timer()
        start = time.perf_counter()
        sandbox.run("training", hooks=(timer,))
        pipeline_s = time.perf_counter() - start

        env = {**os.environ, "MLFLOW_TRACKING_URI": fresh_store(sandbox.root, "mlflow-b.db")}
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "kedro", "run", "--pipelines", "training",
                        "--conf-source", str(sandbox.conf)], cwd=PROJECT_ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall_s = time.perf_counter() - start

    print("training on the 2014 history (365-day window, 30-day holdout), no champion yet")
    print(f"{'kedro run --pipeline training, wall (process start to exit)':<62}{wall_s:7.1f} s")
    print(f"{'training pipeline, in-process (session open and run)':<62}{pipeline_s:7.1f} s")
    for phase, keys in PHASES.items():
        print(f"  {phase:<60}{sum(timer.seconds[k] for k in keys):7.1f} s")
    print("  by node / dataset:")
    for key, seconds in sorted(timer.seconds.items(), key=lambda kv: -kv[1])[:12]:
        print(f"    {key:<58}{seconds:7.2f} s")


if __name__ == "__main__":
    main()
