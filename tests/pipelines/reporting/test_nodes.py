"""The KPI definitions (docs/reporting.md) on small hand-built days of a four-turbine
farm: each test builds the predictions and alert episodes of a day or two and checks the
`kpi_daily` rows the reporting node makes of them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.conftest import PARAMETERS
from turbine_monitor.pipelines.reporting.nodes import KPI_COLUMNS, report_partition

PARAMS = PARAMETERS["reporting"]
TURBINES = ["T1", "T2", "T3", "T4"]
DAY0 = pd.Timestamp("2016-01-01", tz="UTC")
NaT = pd.Timestamp("NaT", tz="UTC")


def at(hours: int, day: int = 0, minutes: int = 0) -> pd.Timestamp:
    return DAY0 + pd.Timedelta(days=day, hours=hours, minutes=minutes)


def records(turbine: str, start: pd.Timestamp, end: pd.Timestamp, power_kw: float | None,
            expected_kw: float | None) -> pd.DataFrame:
    """`turbine`'s predictions of every 10-minute stamp from `start` (included) to `end`
    (excluded)."""
    ts = pd.date_range(start, end, freq="10min", inclusive="left")
    return pd.DataFrame({"turbine_id": turbine, "farm_id": "f", "ts": ts,
                         "power_kw": np.full(len(ts), power_kw, dtype=float),
                         "expected_power_kw": np.full(len(ts), expected_kw, dtype=float)})


def normal_day(turbines: list[str] = TURBINES, day: int = 0, kw: float = 1000.0) -> list[pd.DataFrame]:
    return [records(t, at(0, day), at(24, day), kw, kw) for t in turbines]


def alert(turbine: str, kind: str, start: pd.Timestamp, end: pd.Timestamp | None) -> dict:
    return {"turbine_id": turbine, "kind": kind, "start_ts": start, "end_ts": end if end is not None else NaT}


def report(parts: list[pd.DataFrame], alerts: list[dict] = (), from_ts: pd.Timestamp = NaT) -> pd.DataFrame:
    """The KPI rows of farm `f` (turbines T1-T4), indexed by (turbine_id, day number)."""
    inputs = {
        "farms": pd.DataFrame({"farm_id": ["f"], "from_ts": [from_ts], "report_from": [NaT],
                               "detected_at": [NaT]}),
        "turbines": pd.DataFrame({"turbine_id": TURBINES, "farm_id": "f"}),
        "records": pd.concat(parts, ignore_index=True),
        "alerts": pd.DataFrame(list(alerts), columns=["turbine_id", "kind", "start_ts", "end_ts"]),
    }
    days = report_partition(inputs, PARAMS)["days"]
    assert list(days.columns) == KPI_COLUMNS
    number = (pd.to_datetime(days["day"]) - DAY0.tz_localize(None)).dt.days
    return days.assign(day=number).set_index(["turbine_id", "day"])


def identity_holds(row: pd.Series) -> bool:
    parts = (row.energy_kwh + row.lost_stopped_kwh + row.lost_underperformance_kwh + row.lost_data_gap_kwh
             + row.other_kwh)
    return parts == pytest.approx(row.expected_kwh)


def test_a_full_stop_day_loses_all_its_expected_energy_to_the_stop():
    parts = [*normal_day(TURBINES[1:]), records("T1", at(0), at(24), 0.0, 1000.0)]
    row = report(parts, [alert("T1", "stopped", at(0), at(23, minutes=50))]).loc[("T1", 0)]
    assert (row.stamps, row.valid_stamps) == (144, 144)
    assert row.energy_kwh == 0
    assert row.expected_kwh == pytest.approx(24_000)
    assert row.lost_stopped_kwh == pytest.approx(24_000)
    assert row.lost_underperformance_kwh == row.lost_data_gap_kwh == 0
    assert row.other_kwh == pytest.approx(0, abs=1e-6)
    assert row.time_availability == 0 and row.energy_availability == pytest.approx(0, abs=1e-6)
    assert row.coverage == 1 and identity_holds(row)


def test_a_stopped_turbine_drawing_power_loses_no_more_than_it_was_expected_to_produce():
    parts = [*normal_day(TURBINES[1:]), records("T1", at(0), at(24), -20.0, 30.0)]
    row = report(parts, [alert("T1", "stopped", at(0), at(23, minutes=50))]).loc[("T1", 0)]
    assert row.energy_kwh == pytest.approx(-20 * 24)  # the draw stays in the energy produced
    assert row.lost_stopped_kwh == pytest.approx(row.expected_kwh) == pytest.approx(30 * 24)
    assert row.other_kwh == pytest.approx(20 * 24)
    assert row.energy_availability == pytest.approx(0, abs=1e-6) and identity_holds(row)


def test_an_open_stop_counts_through_the_newest_record():
    parts = [*normal_day(TURBINES[1:]), records("T1", at(0), at(12), 1000.0, 1000.0),
             records("T1", at(12), at(24), 0.0, 1000.0)]
    row = report(parts, [alert("T1", "stopped", at(12), None)]).loc[("T1", 0)]
    assert row.lost_stopped_kwh == pytest.approx(12_000)
    assert row.time_availability == pytest.approx(0.5) and row.energy_availability == pytest.approx(0.5)


def test_a_half_day_data_gap_is_lost_at_the_peers_median_expectation():
    """T1 has records in the morning only; in the afternoon its expected power is the
    median of T2, T3 and T4's (300, 700, 800 kW): 700 kW."""
    parts = [records("T1", at(0), at(12), 500.0, 500.0), records("T2", at(0), at(24), 300.0, 300.0),
             records("T3", at(0), at(24), 700.0, 700.0), records("T4", at(0), at(24), 800.0, 800.0)]
    row = report(parts).loc[("T1", 0)]
    assert (row.stamps, row.valid_stamps, row.coverage) == (144, 72, 0.5)
    assert row.energy_kwh == pytest.approx(72 * 500 / 6)
    assert row.lost_data_gap_kwh == pytest.approx(72 * 700 / 6)
    assert row.expected_kwh == pytest.approx(72 * 500 / 6 + 72 * 700 / 6)
    assert row.lost_stopped_kwh == row.lost_underperformance_kwh == 0
    assert row.other_kwh == pytest.approx(0, abs=1e-6)
    assert row.time_availability == 1 and row.energy_availability == 1  # of the stamps with information
    assert identity_holds(row)


def test_records_without_power_or_without_a_prediction_are_estimated_from_the_peers():
    """A record without power is a data gap; one without an expectation (no wind speed)
    counts its energy against the peers' median expectation."""
    parts = [records("T1", at(0), at(6), None, 900.0), records("T1", at(6), at(12), 600.0, None),
             records("T1", at(12), at(24), 1000.0, 1000.0), *normal_day(TURBINES[1:], kw=800.0)]
    row = report(parts).loc[("T1", 0)]
    assert row.valid_stamps == 108
    assert row.lost_data_gap_kwh == pytest.approx(36 * 800 / 6)
    assert row.expected_kwh == pytest.approx(72 * 800 / 6 + 72 * 1000 / 6)
    assert row.energy_kwh == pytest.approx(36 * 600 / 6 + 72 * 1000 / 6)
    assert row.other_kwh == pytest.approx(36 * 200 / 6) and identity_holds(row)


def test_a_derate_inside_an_underperformance_alert_is_lost_to_underperformance_less_its_stop():
    """T1 at 80 % from 06:00 to 18:00 in an underperformance alert, stopped from 10:00 to
    11:00 inside it: the stop's stamps count as stopped only."""
    parts = [records("T1", at(0), at(6), 1000.0, 1000.0), records("T1", at(6), at(10), 800.0, 1000.0),
             records("T1", at(10), at(11), 0.0, 1000.0), records("T1", at(11), at(18), 800.0, 1000.0),
             records("T1", at(18), at(24), 1000.0, 1000.0), *normal_day(TURBINES[1:])]
    row = report(parts, [alert("T1", "underperformance", at(6), at(17, minutes=50)),
                         alert("T1", "stopped", at(10), at(10, minutes=50))]).loc[("T1", 0)]
    assert row.lost_stopped_kwh == pytest.approx(6 * 1000 / 6)
    assert row.lost_underperformance_kwh == pytest.approx(66 * 200 / 6)
    assert row.energy_kwh == pytest.approx((72 * 1000 + 66 * 800) / 6)
    assert row.other_kwh == pytest.approx(0, abs=1e-6) and row.lost_data_gap_kwh == 0
    assert row.time_availability == pytest.approx(138 / 144)
    assert row.energy_availability == pytest.approx(1 - 1000 / 24_000)
    assert identity_holds(row)


def test_a_derate_without_an_alert_is_other_and_a_surplus_day_makes_other_negative():
    parts = [records("T1", at(0), at(24), 900.0, 1000.0), records("T2", at(0), at(24), 1100.0, 1000.0),
             *normal_day(["T3", "T4"])]
    kpis = report(parts)
    assert kpis.loc[("T1", 0), "other_kwh"] == pytest.approx(2400)
    surplus = kpis.loc[("T2", 0)]
    assert surplus.energy_kwh == pytest.approx(26_400) and surplus.expected_kwh == pytest.approx(24_000)
    assert surplus.other_kwh == pytest.approx(-2400)
    assert surplus.lost_stopped_kwh == surplus.lost_underperformance_kwh == surplus.lost_data_gap_kwh == 0
    assert identity_holds(surplus) and identity_holds(kpis.loc[("T1", 0)])


def test_negative_expectations_count_as_zero():
    parts = [records("T1", at(0), at(24), -5.0, -20.0), *normal_day(TURBINES[1:])]
    row = report(parts).loc[("T1", 0)]
    assert row.expected_kwh == 0 and row.energy_kwh == pytest.approx(-5 * 24)
    assert row.other_kwh == pytest.approx(5 * 24) and np.isnan(row.energy_availability)


def test_the_farms_latest_day_is_due_up_to_its_newest_record():
    """Records through 11:50 on day 1 (T4's through 09:50): 72 stamps due that day for
    every turbine, and T4's last two hours are a data gap, not its afternoon."""
    parts = [*normal_day(), *[records(t, at(0, 1), at(12, 1), 1000.0, 1000.0) for t in TURBINES[:3]],
             records("T4", at(0, 1), at(10, 1), 1000.0, 1000.0)]
    kpis = report(parts)
    assert kpis.xs(0, level="day")["stamps"].tolist() == [144] * 4
    assert kpis.xs(1, level="day")["stamps"].tolist() == [72] * 4
    t4 = kpis.loc[("T4", 1)]
    assert t4.valid_stamps == 60 and t4.lost_data_gap_kwh == pytest.approx(12 * 1000 / 6)
    assert t4.coverage == pytest.approx(60 / 72)


def test_a_turbine_without_records_on_a_day_gets_a_row_estimated_from_its_peers():
    parts = [*normal_day(), records("T1", at(0, 1), at(24, 1), 300.0, 300.0),
             records("T2", at(0, 1), at(24, 1), 700.0, 700.0),
             records("T3", at(0, 1), at(24, 1), 800.0, 800.0)]
    row = report(parts).loc[("T4", 1)]
    assert (row.stamps, row.valid_stamps, row.coverage) == (144, 0, 0)
    assert row.energy_kwh == 0
    assert row.expected_kwh == row.lost_data_gap_kwh == pytest.approx(144 * 700 / 6)
    assert np.isnan(row.time_availability) and np.isnan(row.energy_availability)
    assert identity_holds(row)


def test_a_stamp_without_any_expectation_in_the_farm_expects_nothing():
    """Every day from the farm's first to its newest gets rows, also one without records."""
    parts = [*normal_day(day=0), *normal_day(day=2)]
    kpis = report(parts)
    assert sorted(kpis.index.get_level_values("day").unique()) == [0, 1, 2]
    gap = kpis.xs(1, level="day")
    assert (gap["stamps"] == 144).all() and (gap["valid_stamps"] == 0).all()
    assert (gap["expected_kwh"] == 0).all() and (gap["lost_data_gap_kwh"] == 0).all()


def test_a_report_from_a_day_on_covers_that_day_to_the_newest_record():
    parts = [*normal_day(day=0), *normal_day(day=1), *normal_day(day=2)]
    kpis = report([p[p["ts"] >= at(0, 1)] for p in parts], from_ts=at(0, 1))
    assert sorted(kpis.index.get_level_values("day").unique()) == [1, 2]
