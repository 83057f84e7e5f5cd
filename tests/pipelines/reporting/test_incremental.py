"""Reporting continued run after run, through the catalog's datasets and rules on a real
DuckDB warehouse: records delivered a few hours (or one stamp) at a time, each delivery
scored, its alerts detected and its days reported, give the same `kpi_daily` as one
report over everything; a warehouse from before reporting gets its whole history; a
detection stored while a report is made leaves `report_from` for the next report.
Predictions are constructed (tests/test_detection.py's farm with a derate and stops),
so no model is trained."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import PARAMETERS
from tests.pipelines.inference.test_detection_continued import PARAMS, deliveries, faulty_farm
from tests.test_detection import STD_KW, TURBINES, day, rows
from turbine_monitor.datasets import AlertsDataset, DuckDBQueryDataset, KpiDailyDataset
from turbine_monitor.datasets.warehouse import connect
from turbine_monitor.nbm import IecPowerCurve, PowerModel
from turbine_monitor.pipelines.inference.nodes import update_alerts
from turbine_monitor.pipelines.reporting.nodes import report_days, report_partition
from turbine_monitor.values import FarmModels, Partitions, RegisteredModel

DETECTION = "turbine_monitor.pipelines.inference.rules"
REPORTING = "turbine_monitor.pipelines.reporting.rules"
REPORT_PARAMS = PARAMETERS["reporting"]


def champion() -> RegisteredModel:
    calibration = pd.DataFrame([{"turbine_id": t, "wind_bin_ms": float(b), "q0.5": 0.0, "std_kw": STD_KW}
                                for t in TURBINES for b in range(26)])
    return RegisteredModel("1", "run", PowerModel(
        estimator=None, turbines=TURBINES, windows=[], feature_names=[], nearest={},
        iec_curve=IecPowerCurve(1.0, {}), trained_from=day(0), trained_until=day(0), calibration=calibration))


class Warehouse:
    """A warehouse of farm `f` (T1-T4) and the catalog's datasets on it."""

    def __init__(self, path: Path):
        self.path = path
        with connect(path, lock_timeout_s=5) as con:
            con.executemany("INSERT INTO turbines (farm_id, turbine_id) VALUES ('f', $1)",
                            [[turbine] for turbine in TURBINES])
        self.predictions = DuckDBQueryDataset(str(path), table="predictions")
        self.detection_inputs = DuckDBQueryDataset(
            str(path), query=f"{DETECTION}.detection_inputs",
            query_args={key: PARAMS[key] for key in ("baseline_days", "baseline_gap_days", "window_records")},
            partitions={"work": f"{DETECTION}.detection_work", "work_args": {"window_evidence_records": 300}})
        self.alerts = AlertsDataset(str(path), kept_evidence_records=300)
        self.reporting_inputs = DuckDBQueryDataset(str(path), query=f"{REPORTING}.reporting_inputs",
                                                   partitions={"work": f"{REPORTING}.reporting_work"})
        self.kpi = KpiDailyDataset(str(path))
        self.champion = champion()

    def deliver_and_detect(self, predictions: pd.DataFrame) -> None:
        self.predictions.save(predictions.drop(columns="residual_kw"))
        champions = FarmModels(f=lambda: self.champion)
        self.alerts.save(update_alerts(self.detection_inputs.load(), champions, PARAMS))

    def report(self) -> Partitions:
        report = report_days(self.reporting_inputs.load(), REPORT_PARAMS)
        self.kpi.save(report)
        assert not [saved for saved in report.saved if "failures" in saved]
        return report

    def sql(self, query: str) -> list[tuple]:
        with connect(self.path, lock_timeout_s=5) as con:
            return con.sql(query).fetchall()

    def kpis(self) -> pd.DataFrame:
        kpis = self.kpi.load().drop(columns="updated_at")
        return kpis.sort_values(["turbine_id", "day"]).reset_index(drop=True)


def farm_with_gaps() -> pd.DataFrame:
    """The faulty farm (a derate of T2 in an alert, stops of T3 and T1) with data gaps:
    T3's records missing for five hours of day 2, T1's power missing for two hours of
    day 6, T4 unscored for an hour of day 7, and no record at all from 18:00 on day 3 to
    06:00 on day 4 (the delivery after it starts a new day: day 3, last reported with 108
    stamps due, now has 144)."""
    predictions = faulty_farm()
    predictions = predictions[~rows(predictions, ["T3"], day(2.2), day(2.2) + pd.Timedelta(hours=5))]
    two_hours = pd.Timedelta(hours=2)
    predictions.loc[rows(predictions, ["T1"], day(6.5), day(6.5) + two_hours), "power_kw"] = np.nan
    predictions.loc[rows(predictions, ["T4"], day(7.5), day(7.5) + pd.Timedelta(hours=1)),
                    "expected_power_kw"] = np.nan
    predictions = predictions[~rows(predictions, TURBINES, day(3.75), day(4.25))]
    return predictions.reset_index(drop=True)


def whole(tmp_path: Path, predictions: pd.DataFrame) -> Warehouse:
    """Everything delivered, detected and reported at once."""
    warehouse = Warehouse(tmp_path / "whole.duckdb")
    warehouse.deliver_and_detect(predictions)
    warehouse.report()
    return warehouse


@pytest.mark.parametrize("late", [None, "T4"])
def test_reporting_delivery_by_delivery_equals_one_report_over_everything(tmp_path, late):
    """Each delivery's run reports the days it can change (its detection's `report_from`,
    and the farm's latest day, whose stamps due grow); the table ends as one report over
    everything, and no run leaves `report_from` set."""
    predictions = farm_with_gaps()
    continued = Warehouse(tmp_path / "continued.duckdb")
    reported_days = []
    for delivery in deliveries(predictions, late):
        continued.deliver_and_detect(delivery)
        reported_days += [saved["days"] for saved in continued.report().saved]
        assert continued.sql("SELECT report_from FROM alert_detection") == [(None,)]
    assert max(reported_days) < len(TURBINES) * 10  # runs replace a few days, not the history
    expected = whole(tmp_path, predictions).kpis()
    assert len(expected) == len(TURBINES) * 10
    pd.testing.assert_frame_equal(continued.kpis(), expected, check_exact=False, rtol=1e-9, atol=1e-6)


def test_a_warehouse_from_before_reporting_reports_its_whole_history(tmp_path):
    """Detection ran, but nothing set `report_from` and `kpi_daily` is empty."""
    predictions = farm_with_gaps()
    old = Warehouse(tmp_path / "old.duckdb")
    old.deliver_and_detect(predictions)
    old.sql("UPDATE alert_detection SET report_from = NULL")
    old.report()
    pd.testing.assert_frame_equal(old.kpis(), whole(tmp_path, predictions).kpis(), check_exact=False)
    assert old.sql("SELECT min(day), max(day), count(DISTINCT turbine_id) FROM kpi_daily") == [
        (day(0).date(), day(9).date(), 4)]
    assert old.report().saved == []  # nothing left to report


def test_a_detection_stored_meanwhile_leaves_report_from_for_the_next_report(tmp_path):
    """A report made from a snapshot read before a detection of new records was stored
    does not clear `report_from` (even though the new records moved it no earlier),
    and the next report brings the table to one report over everything."""
    predictions = farm_with_gaps()
    first, second = predictions[predictions["ts"] < day(5)], predictions[predictions["ts"] >= day(5)]
    warehouse = Warehouse(tmp_path / "w.duckdb")
    warehouse.deliver_and_detect(first)
    (partition,) = warehouse.reporting_inputs.load().values()
    stale = report_partition(partition(), REPORT_PARAMS)  # read before the next detection
    warehouse.deliver_and_detect(second)
    (pending,) = warehouse.sql("SELECT report_from FROM alert_detection")
    warehouse.kpi.save(stale)
    assert warehouse.sql("SELECT report_from FROM alert_detection") == [pending] != [(None,)]
    warehouse.report()
    assert warehouse.sql("SELECT report_from FROM alert_detection") == [(None,)]
    pd.testing.assert_frame_equal(warehouse.kpis(), whole(tmp_path, predictions).kpis(), check_exact=False)


def test_detections_without_a_report_between_them_keep_the_earliest_report_from(tmp_path):
    """T3's records of day 2 arrive late, and a detection of later records is stored before
    the next report: that report still recomputes day 2."""
    predictions = farm_with_gaps()
    late = rows(predictions, ["T3"], day(2), day(3))
    warehouse = Warehouse(tmp_path / "w.duckdb")
    warehouse.deliver_and_detect(predictions[~late & (predictions["ts"] < day(5))])
    warehouse.report()
    warehouse.deliver_and_detect(predictions[late])
    warehouse.deliver_and_detect(predictions[predictions["ts"] >= day(5)])
    assert warehouse.sql("SELECT CAST(report_from AS DATE) FROM alert_detection") == [(day(2).date(),)]
    warehouse.report()
    pd.testing.assert_frame_equal(warehouse.kpis(), whole(tmp_path, predictions).kpis(), check_exact=False)
