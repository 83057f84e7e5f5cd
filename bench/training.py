"""Training benchmark: `kedro run --pipeline training` on a 365-day window (2014).

    uv run python bench/training.py

In a temporary workspace (own warehouse and SQLite MLflow store): ingests the bundled
2014 history, then runs the training pipeline twice, each time with no champion yet:
once in-process with a hook that times every node and dataset load/save (the split:
load, fit, evaluate, log), once as a plain `kedro run` subprocess for the wall time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import yaml
from kedro.framework.hooks import hook_impl
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from mlflow import MlflowClient

PROJECT_ROOT = Path(__file__).resolve().parents[1]

PHASES = {
    "load": {"load:scada", "load:current_champion"},
    "prepare (window, normal-operation filter, split)": {
        "node:select_training_window", "node:flag_normal_operation", "node:split_by_time"},
    "fit (features, estimator, IEC curve, calibration)": {"node:fit_power_model"},
    "evaluate (holdout, metrics, plots, champion re-score)": {
        "node:predict_holdout", "node:summarise_holdout", "node:plot_training_figures",
        "node:decide_promotion"},
    "log to MLflow": {"save:model_registry", "save:training_figures", "save:holdout_metrics"},
}


class Timer:
    """Kedro hooks recording how long each node and each persisted load/save takes."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self._started: dict[str, float] = {}

    def _start(self, key):
        self._started[key] = time.perf_counter()

    def _stop(self, key):
        self.seconds[key] += time.perf_counter() - self._started.pop(key)

    @hook_impl
    def before_node_run(self, node):
        self._start(f"node:{node.name}")

    @hook_impl
    def after_node_run(self, node):
        self._stop(f"node:{node.name}")

    @hook_impl
    def before_dataset_loaded(self, dataset_name):
        self._start(f"load:{dataset_name}")

    @hook_impl
    def after_dataset_loaded(self, dataset_name):
        self._stop(f"load:{dataset_name}")

    @hook_impl
    def before_dataset_saved(self, dataset_name):
        self._start(f"save:{dataset_name}")

    @hook_impl
    def after_dataset_saved(self, dataset_name):
        self._stop(f"save:{dataset_name}")


def workspace(root: Path) -> Path:
    conf = root / "conf"
    (conf / "local").mkdir(parents=True)
    (conf / "base").symlink_to(PROJECT_ROOT / "conf" / "base")
    (root / "landing").mkdir()
    (conf / "local" / "globals.yml").write_text(yaml.safe_dump({
        "paths": {"raw": str(PROJECT_ROOT / "data" / "01_raw"), "landing": str(root / "landing"),
                  "warehouse": str(root / "warehouse.duckdb")},
        "warehouse": {"lock_timeout_s": 60}}))
    mlflow_conf = yaml.safe_load((PROJECT_ROOT / "conf/base/mlflow.yml").read_text())
    mlflow_conf["tracking"]["experiment"]["create_experiment_kwargs"]["artifact_location"] = str(
        root / "artifacts")
    (conf / "local" / "mlflow.yml").write_text(yaml.safe_dump(mlflow_conf))
    return conf


def fresh_store(root: Path, name: str) -> str:
    uri = f"sqlite:///{root / name}"
    MlflowClient(uri).search_experiments()  # create it outside the timings
    shutil.rmtree(root / "artifacts", ignore_errors=True)
    return uri


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        conf = workspace(root)
        os.environ["MLFLOW_TRACKING_URI"] = fresh_store(root, "mlflow-a.db")
        bootstrap_project(PROJECT_ROOT)
        with KedroSession.create(project_path=PROJECT_ROOT, conf_source=str(conf)) as session:
            session.run(pipeline_names=["ingestion"])
        timer = Timer()
        with KedroSession.create(project_path=PROJECT_ROOT, conf_source=str(conf)) as session:
            session._hook_manager.register(timer)  # no public API to add a hook to one session
            start = time.perf_counter()
            session.run(pipeline_names=["training"])
            pipeline_s = time.perf_counter() - start

        env = {**os.environ, "MLFLOW_TRACKING_URI": fresh_store(root, "mlflow-b.db")}
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "kedro", "run", "--pipelines", "training",
                        "--conf-source", str(conf)], cwd=PROJECT_ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall_s = time.perf_counter() - start

    print("training on the 2014 history (365-day window, 30-day holdout), no champion yet")
    print(f"{'kedro run --pipeline training, wall (process start to exit)':<62}{wall_s:7.1f} s")
    print(f"{'training pipeline, in-process (session.run)':<62}{pipeline_s:7.1f} s")
    for phase, keys in PHASES.items():
        print(f"  {phase:<60}{sum(timer.seconds[k] for k in keys):7.1f} s")
    print("  by node / dataset:")
    for key, seconds in sorted(timer.seconds.items(), key=lambda kv: -kv[1])[:12]:
        print(f"    {key:<58}{seconds:7.2f} s")


if __name__ == "__main__":
    main()
