"""Shared fixtures: sandboxes (a Kedro configuration pointing every path at a temporary
folder) and one MLflow store for the session."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import pytest
from mlflow import MlflowClient

from turbine_monitor.project import PROJECT_ROOT, load_config
from turbine_monitor.sandbox import RAW_DIR, Sandbox

__all__ = ["PROJECT_ROOT", "RAW_DIR"]

# The project's parameters as Kedro's config loader gives them (`conf/base` alone: a
# user's `conf/local` does not change the tests).
PARAMETERS = load_config("parameters", env="base")
# The header line of a La Haute Borne export, in the order of the bundled data's columns.
HEADER = "Wind_turbine_name,Date_time,Ba_avg,P_avg,Ws_avg,Va_avg,Ot_avg,Ya_avg,Wa_avg\n"
# Runtime parameters that make training take seconds (a 30-day window, a small model).
FAST_TRAINING = {"training": {"window_days": 30, "holdout_days": 5, "estimator": {"max_iter": 60}}}


@pytest.fixture(scope="session", autouse=True)
def _test_mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """kedro-mlflow's hook is active on every run: keep it off the project's store.
    One SQLite store for the session (creating one costs seconds); tests that look at
    MLflow runs make their own."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    MlflowClient(uri).search_experiments()  # create it now, not in two processes at once
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        yield


def landing_only_workspace(root: Path) -> Sandbox:
    """A sandbox under `root` with no bundled history (only the asset table): only
    what a test drops in the landing zone is ingested."""
    empty_raw = root / "raw"
    empty_raw.mkdir(parents=True)
    shutil.copy(RAW_DIR / "la-haute-borne-asset-table.csv", empty_raw)
    return Sandbox.create(root / "ws", raw_dir=empty_raw)


@pytest.fixture
def workspace(tmp_path: Path) -> Sandbox:
    """No bundled history: only what a test drops in the landing zone is ingested."""
    return landing_only_workspace(tmp_path)


@pytest.fixture
def write_landing(workspace: Sandbox) -> Callable[[str, str], Path]:
    def write(name: str, text: str) -> Path:
        """Write a landing file."""
        path = workspace.landing / name
        path.write_text(text)
        return path

    return write


def write_export_slice(path: Path, start: str, end: str) -> int:
    """Write the bundled records with `start <= ts < end` (UTC) as a CSV export."""
    con = duckdb.connect()
    try:
        files = [str(RAW_DIR / f"la-haute-borne-scada-{y}.parquet") for y in (2014, 2015)]
        con.execute(f"""COPY (SELECT * FROM read_parquet({files})
                     WHERE Date_time::TIMESTAMPTZ >= '{start}' AND Date_time::TIMESTAMPTZ < '{end}')
                     TO '{path}' (HEADER, QUOTE '')""")
        return con.execute(f"SELECT count(*) FROM read_csv('{path}')").fetchone()[0]
    finally:
        con.close()
