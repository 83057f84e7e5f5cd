"""Shared fixtures: sandboxes (a Kedro configuration pointing every path at a temporary
folder) and one MLflow store for the session."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from mlflow import MlflowClient

from turbine_monitor.datasets import postgres, warehouse
from turbine_monitor.fleet import check_fleet
from turbine_monitor.orchestration.postgres import PostgresCluster, PostgresUnavailable
from turbine_monitor.orchestration.stack import free_port
from turbine_monitor.project import PROJECT_ROOT, load_config, run_fleet_round
from turbine_monitor.sandbox import RAW_DIR, Sandbox
from turbine_monitor.synthetic import write_synthetic_fleet

__all__ = ["PROJECT_ROOT", "RAW_DIR"]

# The project's parameters as Kedro's config loader gives them (`conf/base` alone: a
# user's `conf/local` does not change the tests).
PARAMETERS = load_config("parameters", env="base")
# The bundled fleet (conf/base/farms.yml, read with the globals): La Haute Borne, in its
# export format.
FLEET_CONFIG = {key: load_config("globals", env="base")[key] for key in ("farms", "formats")}
FARMS = check_fleet(FLEET_CONFIG["farms"], FLEET_CONFIG["formats"],
                    {"la-haute-borne": pd.read_csv(RAW_DIR / "la-haute-borne-asset-table.csv")})
LHB = FARMS["la-haute-borne"]
# The header line of a La Haute Borne export, in the order of the bundled data's columns.
HEADER = "Wind_turbine_name,Date_time,Ba_avg,P_avg,Ws_avg,Va_avg,Ot_avg,Ya_avg,Wa_avg\n"
# Runtime parameters that make training take seconds (a 30-day window, a small model).
FAST_TRAINING = {"training": {"window_days": 30, "holdout_days": 5, "estimator": {"max_iter": 60}}}
# The first day of the synthetic farms' records.
START = pd.Timestamp("2016-01-01", tz="UTC")


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
    """A sandbox under `root` whose one farm, La Haute Borne, has no bundled history:
    only what a test drops in its landing folder is ingested."""
    empty_raw = root / "raw"
    empty_raw.mkdir(parents=True)
    shutil.copy(RAW_DIR / "la-haute-borne-asset-table.csv", empty_raw)
    return Sandbox.create(root / "ws", raw_dir=empty_raw)


# CI installs PostgreSQL (.ci/run) and sets this: there a missing PostgreSQL fails a test.
REQUIRE_POSTGRES = os.environ.get("TURBINE_MONITOR_REQUIRE_POSTGRES") == "1" or os.environ.get("CI") == "true"


@contextmanager
def throwaway_postgres() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster on a free port of 127.0.0.1 (trust auth), in a folder
    outside pytest's tmp folder (root-only, and PostgreSQL runs as the `postgres` user
    under root); without PostgreSQL's server binaries the test skips (fails under CI)."""
    root = Path(tempfile.mkdtemp(prefix="turbine-monitor-pg-"))
    try:
        cluster = PostgresCluster(root, free_port()).create().start()
    except PostgresUnavailable as missing:
        shutil.rmtree(root, ignore_errors=True)
        if REQUIRE_POSTGRES:
            pytest.fail(str(missing))
        pytest.skip(str(missing))
    try:
        yield cluster
    finally:
        if cluster.running():
            cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster for the test only (it may stop or restart it)."""
    with throwaway_postgres() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL cluster for the session's tests that each create a
    database of their own in it."""
    with throwaway_postgres() as cluster:
        yield cluster


def execute(ws: Sandbox, statement: str, rows: list[dict] | None = None) -> None:
    """Run a write `statement` on the sandbox's warehouse, DuckDB or PostgreSQL (its schema
    created if new), in one transaction: once, or once per row of `rows` (`$name`
    parameters)."""
    if url := ws.warehouse_url:
        with postgres.connect(url) as con, con.transaction(), con.cursor() as cursor:
            if rows is None:
                cursor.execute(statement)
            else:
                cursor.executemany(re.sub(r"\$(\w+)", r"%(\1)s", statement), rows)
    else:
        with warehouse.connect(ws.warehouse, 5) as con:
            if rows is None:
                con.execute(statement)
            else:
                con.executemany(statement, rows)


@pytest.fixture
def workspace(tmp_path: Path) -> Sandbox:
    """No bundled history: only what a test drops in the landing zone is ingested."""
    return landing_only_workspace(tmp_path)


@pytest.fixture
def write_landing(workspace: Sandbox) -> Callable[[str, str], Path]:
    def write(name: str, text: str) -> Path:
        """Write a landing file of La Haute Borne."""
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


class Fleet:
    """A sandbox whose farms are synthetic: each farm's exports (one file per day) are
    written to a staging folder and delivered to its landing folder up to a day."""

    def __init__(self, root: Path, farms: list[tuple[int, int, str]], days: int = 40):
        self.sandbox = Sandbox.create(root / "ws")
        self.root = root
        self.entries = {}
        for number, turbines, export in farms:
            staged = write_synthetic_fleet(root / "staging", 1, days, START.strftime("%Y-%m-%d"), export,
                                           turbines, file_days=1, first=number)
            for farm, entry in staged.items():
                self.entries[farm] = {**entry, "landing": str(root / "landing" / farm)}
                (root / "landing" / farm).mkdir(parents=True)
        self.sandbox.set_farms(self.entries)

    def deliver(self, farm: str, until_day: int) -> None:
        """Copy the farm's exports of the days before `until_day` to its landing folder."""
        staging = self.root / "staging" / farm / "landing"
        for path in sorted(staging.glob("*.csv")):
            day = pd.Timestamp(path.stem.split("_")[-1] if path.stem.startswith("Turbine_Data") else
                               path.stem.removeprefix("scada-"), tz="UTC")
            landed = Path(self.entries[farm]["landing"]) / path.name
            if day < START + pd.Timedelta(days=until_day) and not landed.exists():
                shutil.copy2(path, self.entries[farm]["landing"])

    def round(self) -> list[str]:
        """`kedro run-fleet` with fast training; the farms trained."""
        return run_fleet_round(self.sandbox.conf, runtime_params=FAST_TRAINING)

    def sql(self, query: str) -> list[tuple]:
        return self.sandbox.sql(query)
