"""A small hand-built warehouse in a sandbox, and the dashboard's data on it.

Farm `f1`, fleet clock 2015-06-01 12:00 UTC: T1 producing (a closed alert), T2 with an
open underperformance alert (100 kWh lost), T3 with an open stopped alert (50 kWh) and an
open underperformance one, T4 whose last record is two hours old (no recent data). On
DuckDB and on PostgreSQL: the pages read the same on both profiles."""

from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd
import pytest
from kedro.io import DataCatalog

from tests.conftest import execute
from turbine_monitor.dashboard.data import DashboardData, Settings
from turbine_monitor.project import load_config
from turbine_monitor.sandbox import Sandbox

CLOCK = pd.Timestamp("2015-06-01 12:00", tz="UTC")
ALERTS = [  # turbine, kind, start, end, energy lost
    ("T1", "stopped", "2015-05-20 08:00", "2015-05-20 10:00", 30.0),
    ("T2", "underperformance", "2015-06-01 00:00", None, 100.0),
    ("T3", "stopped", "2015-06-01 11:00", None, 50.0),
    ("T3", "underperformance", "2015-05-31 00:00", None, 10.0),
]


def records(turbine: str, last: pd.Timestamp, count: int = 12) -> pd.DataFrame:
    """`count` 10-minute records of `turbine` up to `last`."""
    ts = pd.date_range(end=last, periods=count, freq="10min")
    return pd.DataFrame(
        {
            "turbine_id": turbine,
            "ts": ts,
            "power_kw": 800.0,
            "wind_speed_ms": 8.0,
            "expected_power_kw": 850.0,
            "residual_kw": -50.0,
            "model_version": "1",
            "source_file": "f1/test.csv",
            "ingested_at": CLOCK,
        }
    )


def insert_alert(sandbox: Sandbox, turbine: str, kind: str, start: str, end: str | None, lost: float) -> None:
    execute(sandbox,
            """INSERT INTO alerts (turbine_id, kind, start_ts, end_ts, energy_lost_kwh, records,
                   operating_records, mean_relative_residual, deficit_at_open, channel)
               VALUES ($t, $k, CAST($s AS TIMESTAMPTZ), CAST($e AS TIMESTAMPTZ), $lost, 10, 10, -0.2, 0.15,
                       'peer')""",
            [{"t": turbine, "k": kind, "s": f"{start}+00", "e": end and f"{end}+00", "lost": lost}])


def build_warehouse(sandbox: Sandbox) -> None:
    rows = pd.concat(
        [
            records("T1", CLOCK),
            records("T2", CLOCK),
            records("T3", CLOCK),
            records("T4", CLOCK - pd.Timedelta(hours=2)),
        ]
    )
    execute(sandbox, "INSERT INTO turbines (farm_id, turbine_id) VALUES "
                     "('f1', 'T1'), ('f1', 'T2'), ('f1', 'T3'), ('f1', 'T4')")
    for table, columns in (
        ("scada", ["turbine_id", "ts", "power_kw", "wind_speed_ms", "source_file", "ingested_at"]),
        ("predictions", ["turbine_id", "ts", "power_kw", "wind_speed_ms", "expected_power_kw", "residual_kw",
                         "model_version"]),
    ):
        execute(sandbox, f"INSERT INTO {table} ({', '.join(columns)}) "
                         f"VALUES ({', '.join('$' + c for c in columns)})", rows[columns].to_dict("records"))
    for alert in ALERTS:
        insert_alert(sandbox, *alert)


@pytest.fixture(params=["duckdb", "postgresql"])
def sandbox(request: pytest.FixtureRequest, tmp_path: Path) -> Sandbox:
    """The hand-built warehouse in a sandbox, on DuckDB (the default profile) and on
    PostgreSQL (the cluster profile's catalog entries, a database of its own)."""
    sandbox = Sandbox.create(tmp_path / "ws", lock_timeout_s=5)
    if request.param == "postgresql":
        server = request.getfixturevalue("postgres_server")
        database = f"dashboard_{uuid.uuid4().hex[:12]}"
        server.create_database(database)
        sandbox.use_postgres(server.url(database), connect_timeout_s=5)
    build_warehouse(sandbox)
    return sandbox


@pytest.fixture
def data(sandbox: Sandbox) -> DashboardData:
    catalog = DataCatalog.from_config(load_config("catalog", sandbox.conf))
    return DashboardData(catalog, Settings(stale_after_minutes=60), str(sandbox.conf))
