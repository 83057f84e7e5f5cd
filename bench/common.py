"""What the benchmarks share (they import it as `common`: a script's folder is on its path)."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
from kedro.framework.hooks import hook_impl
from mlflow import MlflowClient

from turbine_monitor.fleet import Farm, check_fleet
from turbine_monitor.project import load_config
from turbine_monitor.sandbox import RAW_DIR


class Timer:
    """Kedro hooks recording how long each node and each load/save takes; a node's time
    includes the hooks that run after it (registering the release)."""

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

    @hook_impl(trylast=True)
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


def fresh_store(root: Path, name: str) -> str:
    """A new SQLite MLflow store (created now, outside the timings)."""
    uri = f"sqlite:///{root / name}"
    MlflowClient(uri).search_experiments()
    return uri


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def bundled_farm() -> Farm:
    """La Haute Borne as `conf/base/farms.yml` configures it, with its asset table."""
    fleet = load_config("globals", env="base")
    assets = {"la-haute-borne": pd.read_csv(RAW_DIR / "la-haute-borne-asset-table.csv")}
    return check_fleet(fleet["farms"], fleet["formats"], assets)["la-haute-borne"]
