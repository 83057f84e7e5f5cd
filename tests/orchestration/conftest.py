"""Helpers shared by the orchestration tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import FAST_TRAINING, landing_only_workspace, write_export_slice
from turbine_monitor.sandbox import Sandbox

# A process holding the DuckDB file lock of the warehouse argv[1] until its stdin closes.
INTERVALS_S = {"inference": 5, "training": 20}
# A flow run process takes seconds to start, more on a busy machine: runs that start late
# are still run rather than skipped as stale (`stale_after_intervals` is tested in test_flows).
STALE_AFTER_INTERVALS = 20

HOLD_LOCK = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
print("locked", flush=True)
sys.stdin.readline()
con.close()
"""



def wait_for(condition: Callable[[], Any], what: str, timeout_s: float = 150, poll_s: float = 1) -> Any:
    """`condition()` once it is truthy (polled every `poll_s`); fails the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not (result := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"Still waiting for {what} after {timeout_s} s.")
        time.sleep(poll_s)
    return result


@pytest.fixture
def champion_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    """January 2014 ingested and a champion trained on it (plain Kedro), in an MLflow
    store of the test's own, and a `conf/local/prefect.yml` that overrides only the
    intervals, the training's runtime parameters and the worker's polling."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    ws = landing_only_workspace(tmp_path)
    write_export_slice(ws.landing / "2014-01.csv", "2014-01-01", "2014-02-01")
    ws.run("ingestion")
    ws.run("training", runtime_params=FAST_TRAINING)
    (ws.conf / "local" / "prefect.yml").write_text(yaml.safe_dump({"prefect": {
        "deployments": {"inference": {"interval_seconds": INTERVALS_S["inference"]},
                        "training": {"interval_seconds": INTERVALS_S["training"],
                                     "parameters": {"runtime_params": FAST_TRAINING}}},
        "stale_after_intervals": STALE_AFTER_INTERVALS, "worker": {"query_seconds": 1}}}))
    return ws
