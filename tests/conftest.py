"""Shared fixtures: a Kedro configuration pointing every path at a temporary folder."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import pytest
import yaml
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from mlflow import MlflowClient

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RAW_DIR = PROJECT_ROOT / "data" / "01_raw"
# Runtime parameters that make training take seconds (a 30-day window, a small model).
FAST_TRAINING = {"training": {"window_days": 30, "holdout_days": 5, "estimator": {"max_iter": 60}}}


class Workspace:
    """A temporary copy of the project's configuration with its own landing zone,
    warehouse and MLflow store; `run()` runs a pipeline in a real KedroSession."""

    def __init__(self, root: Path, raw_dir: Path = RAW_DIR):
        self.root = root
        self.conf = root / "conf"
        self.landing = root / "landing"
        self.warehouse = root / "warehouse.duckdb"
        self.landing.mkdir(parents=True)
        shutil.copytree(PROJECT_ROOT / "conf" / "base", self.conf / "base")
        (self.conf / "local").mkdir()
        self.set_globals(raw=str(raw_dir))
        mlflow_conf = yaml.safe_load((PROJECT_ROOT / "conf" / "base" / "mlflow.yml").read_text())
        mlflow_conf["tracking"]["experiment"]["create_experiment_kwargs"]["artifact_location"] = str(
            root / "mlartifacts")
        (self.conf / "local" / "mlflow.yml").write_text(yaml.safe_dump(mlflow_conf))

    def set_globals(self, raw: str | None = None, lock_timeout_s: float = 60) -> None:
        current = self.globals() if (self.conf / "local" / "globals.yml").exists() else {}
        paths = {
            "raw": raw or current["paths"]["raw"],
            "landing": str(self.landing),
            "warehouse": str(self.warehouse),
        }
        (self.conf / "local" / "globals.yml").write_text(yaml.safe_dump(
            {"paths": paths, "warehouse": {"lock_timeout_s": lock_timeout_s}}))

    def globals(self) -> dict:
        return yaml.safe_load((self.conf / "local" / "globals.yml").read_text())

    def run(self, pipeline: str = "ingestion", runtime_params: dict | None = None) -> None:
        bootstrap_project(PROJECT_ROOT)
        with KedroSession.create(project_path=PROJECT_ROOT, conf_source=str(self.conf),
                                 runtime_params=runtime_params) as session:
            session.run(pipeline_names=[pipeline])

    def sql(self, query: str) -> list[tuple]:
        con = duckdb.connect(str(self.warehouse), read_only=True)
        try:
            return con.sql(query).fetchall()
        finally:
            con.close()

    def scalar(self, query: str):
        return self.sql(query)[0][0]


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


def landing_only_workspace(root: Path) -> Workspace:
    """A Workspace under `root` with no bundled history (only the asset table): only
    what a test drops in the landing zone is ingested."""
    empty_raw = root / "raw"
    empty_raw.mkdir(parents=True)
    shutil.copy(RAW_DIR / "la-haute-borne-asset-table.csv", empty_raw)
    return Workspace(root / "ws", raw_dir=empty_raw)


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    """No bundled history: only what a test drops in the landing zone is ingested."""
    return landing_only_workspace(tmp_path)


@pytest.fixture
def write_landing(workspace: Workspace) -> Callable[[str, str], Path]:
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
