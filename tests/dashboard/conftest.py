"""A small hand-built warehouse in a sandbox, and the dashboard's data on it.

Farm `f1`, fleet clock 2015-06-01 12:00 UTC: T1 producing (a closed alert), T2 with an
open underperformance alert (100 kWh lost), T3 with an open stopped alert (50 kWh) and an
open underperformance one, T4 whose last record is two hours old (no recent data)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from kedro.io import DataCatalog

from turbine_monitor.dashboard.data import DashboardData, Settings
from turbine_monitor.datasets.warehouse import connect
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


def insert_alert(warehouse: Path, turbine: str, kind: str, start: str, end: str | None, lost: float) -> None:
    with connect(warehouse, 5) as con:
        con.execute(
            """INSERT INTO alerts (turbine_id, kind, start_ts, end_ts, energy_lost_kwh, records,
                   operating_records, mean_relative_residual, deficit_at_open, channel)
               VALUES ($t, $k, $s::TIMESTAMPTZ, $e::TIMESTAMPTZ, $lost, 10, 10, -0.2, 0.15, 'peer')""",
            {"t": turbine, "k": kind, "s": f"{start}+00", "e": end and f"{end}+00", "lost": lost},
        )


def build_warehouse(warehouse: Path) -> None:
    rows = pd.concat(
        [
            records("T1", CLOCK),
            records("T2", CLOCK),
            records("T3", CLOCK),
            records("T4", CLOCK - pd.Timedelta(hours=2)),
        ]
    )
    with connect(warehouse, 5) as con:
        con.execute(
            "INSERT INTO turbines (farm_id, turbine_id) VALUES "
            "('f1', 'T1'), ('f1', 'T2'), ('f1', 'T3'), ('f1', 'T4')"
        )
        con.register("incoming", rows)
        con.execute(
            "INSERT INTO scada BY NAME SELECT turbine_id, ts, power_kw, wind_speed_ms, source_file, "
            "ingested_at FROM incoming"
        )
        con.execute(
            "INSERT INTO predictions BY NAME SELECT turbine_id, ts, power_kw, wind_speed_ms, "
            "expected_power_kw, residual_kw, model_version FROM incoming"
        )
    for alert in ALERTS:
        insert_alert(warehouse, *alert)


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    sandbox = Sandbox.create(tmp_path / "ws", lock_timeout_s=5)
    build_warehouse(sandbox.warehouse)
    return sandbox


@pytest.fixture
def data(sandbox: Sandbox) -> DashboardData:
    catalog = DataCatalog.from_config(load_config("catalog", sandbox.conf))
    return DashboardData(catalog, Settings(stale_after_minutes=60), str(sandbox.conf))
