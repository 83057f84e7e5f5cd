"""The dashboard pages' data on a hand-built warehouse (tests/dashboard/conftest.py)."""

from __future__ import annotations

import pandas as pd

from tests.conftest import execute
from tests.dashboard.conftest import CLOCK, insert_alert
from turbine_monitor.dashboard.data import DashboardData
from turbine_monitor.sandbox import Sandbox


def states(data: DashboardData) -> dict[str, str]:
    return dict(data.fleet_page()["states"][["turbine_id", "state"]].itertuples(index=False))


def acknowledgement(data: DashboardData, turbine: str, kind: str) -> pd.Series:
    alerts = data.alerts_page()
    return alerts[(alerts["turbine_id"] == turbine) & (alerts["kind"] == kind)].iloc[0]


def test_each_turbine_has_its_state(data: DashboardData) -> None:
    assert states(data) == {
        "T1": "producing",
        "T2": "underperforming",
        "T3": "stopped",
        "T4": "no recent data",
    }
    assert data.fleet_page()["clock"]["now"].iloc[0] == CLOCK


def test_attention_lists_open_unacknowledged_alerts_by_energy_then_stale_data(data: DashboardData) -> None:
    attention = data.fleet_page()["attention"]
    assert list(zip(attention["turbine_id"], attention["issue"], strict=True)) == [
        ("T2", "open underperformance alert"),
        ("T3", "open stopped alert"),
        ("T3", "open underperformance alert"),
        ("T4", "no recent data"),
    ]
    data.acknowledge("T2", "underperformance", "2015-06-01 00:00", "alice", "blade inspection booked")
    assert "T2" not in data.fleet_page()["attention"]["turbine_id"].tolist()


def test_an_acknowledgement_survives_the_alerts_recomputation(data: DashboardData, sandbox: Sandbox) -> None:
    data.acknowledge("T2", "underperformance", "2015-06-01 00:00", "alice", "blade inspection booked")
    execute(sandbox, "DELETE FROM alerts WHERE turbine_id = 'T2'")  # recomputed: closed, began earlier
    insert_alert(sandbox, "T2", "underperformance", "2015-05-31 22:00", "2015-06-01 11:00", 120.0)
    acknowledged = acknowledgement(data, "T2", "underperformance")
    assert (acknowledged["acknowledged"], acknowledged["acknowledged_by"], acknowledged["note"]) == (
        "yes",
        "alice",
        "blade inspection booked",
    )
    assert acknowledgement(data, "T3", "underperformance")["acknowledged"] == "no"


def test_an_alert_shows_the_deficit_and_channel_that_opened_it(data: DashboardData) -> None:
    alert = acknowledgement(data, "T2", "underperformance")
    assert (alert["deficit_at_open"], alert["channel"]) == (0.15, "peer")
    assert alert["explanation"] == "opened at a 15.0 % deficit on the peer channel"


def test_the_turbine_page_bins_its_power_curves(data: DashboardData) -> None:
    page = data.turbine_page("T1")
    assert len(page["scatter"]) == 12
    assert page["expected"][["wind_speed_ms", "power_kw"]].values.tolist() == [[8.25, 850.0]]
    assert page["episodes"]["kind"].tolist() == ["stopped"]


def test_the_pages_read_without_kpis(data: DashboardData) -> None:
    assert data.losses_page("f1", "2015-06")["availability"].empty
    assert data.alert_evidence("T2", "2015-06-01 00:00", None)["residual_kw"].eq(-50).all()


def test_the_losses_page_of_the_latest_month_is_the_farms_newest(sandbox: Sandbox, data: DashboardData):
    execute(sandbox, """INSERT INTO kpi_daily (farm_id, turbine_id, day, stamps, valid_stamps, energy_kwh,
                            expected_kwh, lost_stopped_kwh, lost_underperformance_kwh, lost_data_gap_kwh,
                            other_kwh, coverage)
                        VALUES ('f1', 'T1', CAST($day AS DATE), 144, 144, $energy, $energy, 0, 0, 0, 0, 1)""",
            [{"day": day, "energy": energy}
             for day, energy in (("2015-05-31", 100.0), ("2015-06-01", 40.0), ("2015-06-02", 2.0))])
    assert data.months() == ["2015-06", "2015-05"]
    latest = data.losses_page("f1", "latest")
    assert latest["waterfall"]["energy_kwh"].tolist() == [42.0]
    assert latest["waterfall"].equals(data.losses_page("f1", "2015-06")["waterfall"])
    assert data.losses_page("f1", "2015-05")["waterfall"]["energy_kwh"].tolist() == [100.0]
