"""Alert detection continued run after run from what earlier runs kept (the evidence
terms, the day sums, an unfinished stop run), through the catalog's datasets and rules on
a real DuckDB warehouse, equals detection over all the predictions at once, whatever
the size of each delivery: records arriving one stamp at a time, hours at a time, and
one turbine's a delivery late. Predictions are constructed (tests/test_detection.py's
farm), so no model is trained."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.conftest import PARAMETERS
from tests.test_detection import STD_KW, TURBINES, day, farm, rows, scale_power
from turbine_monitor.datasets import AlertsDataset, DuckDBQueryDataset
from turbine_monitor.datasets.warehouse import connect
from turbine_monitor.detection import EPISODE_COLUMNS, detect_alerts
from turbine_monitor.nbm import IecPowerCurve, PowerModel
from turbine_monitor.pipelines.inference.nodes import update_alerts
from turbine_monitor.values import FarmModels, RegisteredModel

RULES = "turbine_monitor.pipelines.inference.rules"
WINDOW = {"baseline_days": 3, "window_evidence_records": 300}
PARAMS = PARAMETERS["inference"]["alerts"] | WINDOW | {"baseline_min_days": 2}
T3_STOP, T1_STOP = day(5), day(8.5)  # T3's inside T2's underperformance alert, T1's when none is open


def faulty_farm() -> pd.DataFrame:
    """Ten days of the four turbines with: T2 derated to 85 % from day 3.5 to day 5.5;
    T3 stopped for an hour from `T3_STOP`, with two low-wind records inside the stop; T1
    stopped for two records from `T1_STOP`, then low wind for five, then stopped for one
    more (a stop confirmed only by its third record, 70 minutes after it began); a
    low-wind morning on day 8."""
    predictions = scale_power(farm(days=10), ["T2"], day(3.5), day(5.5), 0.85)
    stop = rows(predictions, ["T3"], T3_STOP, T3_STOP + pd.Timedelta(hours=1))
    predictions.loc[stop, "power_kw"] = 0.0
    low = rows(predictions, ["T3"], T3_STOP + pd.Timedelta(minutes=20), T3_STOP + pd.Timedelta(minutes=40))
    predictions.loc[low, "wind_speed_ms"] = 2.0
    t1 = rows(predictions, ["T1"], T1_STOP, T1_STOP + pd.Timedelta(minutes=80))
    predictions.loc[t1, "power_kw"] = 0.0
    predictions.loc[t1 & (predictions["ts"] >= T1_STOP + pd.Timedelta(minutes=20))
                    & (predictions["ts"] < T1_STOP + pd.Timedelta(minutes=70)), "wind_speed_ms"] = 2.0
    morning = rows(predictions, TURBINES, day(8), day(8.3))
    predictions.loc[morning, "wind_speed_ms"] = 3.0
    predictions.loc[morning, "power_kw"] = 20.0
    return predictions.assign(residual_kw=predictions["power_kw"] - predictions["expected_power_kw"],
                              model_version="1")


def deliveries(predictions: pd.DataFrame, late: str | None) -> list[pd.DataFrame]:
    """The predictions in deliveries of one stamp through the two hours around each stop
    and of six hours elsewhere; the `late` turbine's records of a delivery come with the
    next one."""
    stamps = pd.DatetimeIndex(np.sort(predictions["ts"].unique()))
    one_by_one = np.zeros(len(stamps), bool)
    for stop in (T3_STOP, T1_STOP):
        one_by_one |= (stamps >= stop - pd.Timedelta(minutes=30)) & (stamps < stop + pd.Timedelta(minutes=90))
    delivery = np.cumsum(one_by_one | (np.arange(len(stamps)) % 36 == 0) | np.r_[False, one_by_one[:-1]])
    of_record = pd.Series(delivery, index=stamps).loc[predictions["ts"]].to_numpy()
    of_record = np.where(predictions["turbine_id"] == late, of_record + 1, of_record)
    return [records for _, records in predictions.groupby(of_record)]


@pytest.mark.parametrize("late", [None, "T4"])
def test_detection_continued_delivery_by_delivery_equals_detection_over_all_predictions(tmp_path, late):
    """On time, a run continues T2's open alert from what the last one kept of it
    (without reading its records again); with T4 a delivery late, each run reaches back
    to its start. Either way, the episodes are those of one detection over everything."""
    path = tmp_path / "warehouse.duckdb"
    with connect(path, lock_timeout_s=5) as con:
        con.executemany("INSERT INTO turbines (farm_id, turbine_id) VALUES ('f', $1)",
                        [[turbine] for turbine in TURBINES])
    calibration = pd.DataFrame([{"turbine_id": t, "wind_bin_ms": float(b), "q0.5": 0.0, "std_kw": STD_KW}
                                for t in TURBINES for b in range(26)])
    champion = RegisteredModel("1", "run", PowerModel(
        estimator=None, turbines=TURBINES, windows=[], feature_names=[], nearest={},
        iec_curve=IecPowerCurve(1.0, {}), trained_from=day(0), trained_until=day(0), calibration=calibration))
    predictions_table = DuckDBQueryDataset(str(path), table="predictions")
    inputs = DuckDBQueryDataset(str(path), query=f"{RULES}.detection_inputs", query_args={
        "baseline_days": 3, "baseline_gap_days": PARAMS["baseline_gap_days"],
        "window_records": PARAMS["window_records"]}, partitions={
        "work": f"{RULES}.detection_work", "work_args": {"window_evidence_records": 300}})
    alerts = AlertsDataset(str(path), kept_evidence_records=300)

    predictions = faulty_farm()
    continued = 0
    for delivery in deliveries(predictions, late):
        predictions_table.save(delivery.drop(columns="residual_kw"))
        (read,) = inputs.load().values()
        open_alert = alerts.load().query("end_ts.isna() and kind == 'underperformance'")["start_ts"]
        continued += bool(len(open_alert)) and read()["farms"]["recompute_from"].iloc[0] > open_alert.min()
        updates = update_alerts(inputs.load(), FarmModels(f=lambda: champion), PARAMS)
        alerts.save(updates)
        assert not [saved for saved in updates.saved if "failures" in saved]

    whole = detect_alerts(predictions, calibration, PARAMS)
    assert {("T2", "underperformance"), ("T3", "stopped"), ("T1", "stopped")} <= set(
        zip(whole["turbine_id"], whole["kind"], strict=True))
    stored = alerts.load()[EPISODE_COLUMNS].sort_values(["turbine_id", "kind", "start_ts"])
    stored = stored.reset_index(drop=True)
    pd.testing.assert_frame_equal(stored, whole.astype(stored.dtypes.to_dict()), check_exact=False)
    assert (continued > 0) == (late is None)
