"""Alert detection on constructed residual series: four turbines at steady operating
wind, the model's expected power known, small noise; faults injected into the actual
power. Thresholds are the project's (conf/base/parameters_inference.yml)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.conftest import PARAMETERS
from turbine_monitor.detection import EPISODE_COLUMNS, detect_alerts

PARAMS = PARAMETERS["inference"]["alerts"]
TURBINES = ["T1", "T2", "T3", "T4"]
START = pd.Timestamp("2015-03-01", tz="UTC")
EXPECTED_KW = 1000.0
STD_KW = 60.0


def day(n: float) -> pd.Timestamp:
    return START + pd.Timedelta(days=n)


@pytest.fixture
def calibration() -> pd.DataFrame:
    """Training residuals centred on 0 with a 60 kW spread in every 1 m/s wind bin."""
    return pd.DataFrame([{"turbine_id": t, "wind_bin_ms": float(b), "q0.5": 0.0, "std_kw": STD_KW}
                         for t in TURBINES for b in range(26)])


def farm(days: int = 30, seed: int = 1) -> pd.DataFrame:
    """Predictions for four turbines at 9 m/s, 1000 kW expected, power within a few
    percent of it (independent noise per turbine and record)."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range(START, periods=days * 144, freq="10min")
    frame = pd.DataFrame({"turbine_id": np.repeat(TURBINES, len(ts)), "ts": np.tile(ts, len(TURBINES))})
    frame["wind_speed_ms"] = 9.0
    frame["expected_power_kw"] = EXPECTED_KW
    frame["power_kw"] = EXPECTED_KW + rng.normal(0, 0.4 * STD_KW, len(frame))
    return frame


def rows(frame: pd.DataFrame, turbines: list[str], start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
    """The records of `turbines` from `start` (included) to `end` (excluded)."""
    return frame["turbine_id"].isin(turbines) & (frame["ts"] >= start) & (frame["ts"] < end)


def scale_power(frame: pd.DataFrame, turbines: list[str], start: pd.Timestamp, end: pd.Timestamp,
                factor: float) -> pd.DataFrame:
    frame.loc[rows(frame, turbines, start, end), "power_kw"] *= factor
    return frame


def episodes(frame: pd.DataFrame, calibration: pd.DataFrame, kind: str) -> pd.DataFrame:
    found = detect_alerts(frame.assign(residual_kw=frame["power_kw"] - frame["expected_power_kw"]),
                          calibration, PARAMS)
    assert list(found.columns) == EPISODE_COLUMNS
    return found[found["kind"] == kind].reset_index(drop=True)


def test_normal_operation_raises_no_alert(calibration):
    assert detect_alerts(farm(), calibration, PARAMS).empty


def test_a_sustained_derate_of_one_turbine_opens_then_closes_an_alert(calibration):
    """T2 at 85% from day 12 to day 18: one alert, opened within 48 operating hours
    (every record here is at operating wind), closed within 48 h of the recovery."""
    frame = scale_power(farm(), ["T2"], day(12), day(18), 0.85)
    (alert,) = episodes(frame, calibration, "underperformance").itertuples()
    assert alert.turbine_id == "T2"
    assert day(12) < alert.start_ts <= day(14)
    assert day(18) < alert.end_ts <= day(20)
    assert alert.channel in {"peer", "both"}
    in_alert = frame[rows(frame, ["T2"], alert.start_ts, alert.end_ts)]
    assert alert.records == alert.operating_records == len(in_alert)
    shortfall = (in_alert["expected_power_kw"] - in_alert["power_kw"]).clip(lower=0)
    assert alert.energy_lost_kwh == pytest.approx(shortfall.sum() / 6)
    relative = in_alert["power_kw"].sum() / in_alert["expected_power_kw"].sum() - 1
    assert alert.mean_relative_residual == pytest.approx(relative)
    assert -0.15 < alert.mean_relative_residual < -0.08  # mostly derated records, some after recovery


def test_an_alert_still_going_at_the_last_record_is_open(calibration):
    frame = scale_power(farm(), ["T3"], day(20), day(30), 0.8)
    (alert,) = episodes(frame, calibration, "underperformance").itertuples()
    assert alert.turbine_id == "T3" and pd.isna(alert.end_ts)


def test_isolated_bad_records_raise_no_alert(calibration):
    """Every 20th record of T1 at half power for the whole month: noise, not a fault."""
    frame = farm()
    bad = (frame["turbine_id"] == "T1") & (frame.groupby("turbine_id").cumcount() % 20 == 0)
    frame.loc[bad, "power_kw"] *= 0.5
    assert episodes(frame, calibration, "underperformance").empty


def test_a_farm_wide_loss_is_caught_by_the_absolute_channel(calibration):
    """All four turbines at 80% (icing): the peers share it, their own residuals do not."""
    frame = scale_power(farm(), TURBINES, day(15), day(22), 0.8)
    found = episodes(frame, calibration, "underperformance")
    assert sorted(found["turbine_id"]) == TURBINES
    assert set(found["channel"]) == {"absolute"}
    assert (found["start_ts"] > day(15)).all() and (found["start_ts"] <= day(17)).all()


def test_a_stoppage_at_operating_wind_is_a_stopped_alert_from_its_first_record(calibration):
    """T4 producing nothing for 2 hours: back-dated to the first stop record, ended at
    the first producing record, its expected energy lost; no underperformance alert."""
    frame = farm(days=3)
    frame.loc[rows(frame, ["T4"], day(1), day(1) + pd.Timedelta(hours=2)), "power_kw"] = 0.0
    (alert,) = episodes(frame, calibration, "stopped").itertuples()
    assert (alert.turbine_id, alert.start_ts, alert.end_ts) == ("T4", day(1), day(1) + pd.Timedelta(hours=2))
    assert alert.records == alert.operating_records == 12
    assert alert.energy_lost_kwh == pytest.approx(12 * EXPECTED_KW / 6)
    assert episodes(frame, calibration, "underperformance").empty


def test_a_stop_too_short_or_at_low_wind_is_no_alert(calibration):
    frame = farm(days=3)
    two_records = rows(frame, ["T1"], day(1), day(1) + pd.Timedelta(minutes=20))
    calm = rows(frame, ["T2"], day(2), day(2.5))
    frame.loc[two_records | calm, "power_kw"] = 0.0
    frame.loc[calm, ["wind_speed_ms", "expected_power_kw"]] = [2.5, 20.0]
    assert episodes(frame, calibration, "stopped").empty


def test_one_producing_record_does_not_split_a_stoppage(calibration):
    frame = farm(days=3)
    blip = frame["ts"] == day(1.25)
    frame.loc[rows(frame, ["T1"], day(1), day(1.5)) & ~blip, "power_kw"] = 0.0
    (alert,) = episodes(frame, calibration, "stopped").itertuples()
    assert (alert.start_ts, alert.end_ts) == (day(1), day(1.5))


def test_more_history_never_changes_earlier_episodes(calibration):
    """Detection is causal: a prefix of the history gives the same closed episodes and
    the same open ones (with their start) as far as it goes."""
    frame = scale_power(farm(), ["T2"], day(10), day(14), 0.85)
    frame = scale_power(frame, ["T1"], day(20), day(30), 0.85)
    full = episodes(frame, calibration, "underperformance").set_index(["turbine_id", "start_ts"])
    for cut in (day(13), day(17), day(25)):
        part = episodes(frame[frame["ts"] < cut], calibration, "underperformance").set_index(
            ["turbine_id", "start_ts"])
        assert list(part.index) == [k for k in full.index if k[1] < cut]
        closed = part["end_ts"].notna()
        assert (part.loc[closed, "end_ts"] == full.loc[part.index[closed], "end_ts"]).all()


def test_unscored_rows_are_neither_evidence_nor_stops(calibration):
    """A day of T1 producing nothing, but without expected power (no wind speed)."""
    frame = farm(days=3)
    frame.loc[rows(frame, ["T1"], day(1), day(2)), "expected_power_kw"] = np.nan
    frame.loc[rows(frame, ["T1"], day(1), day(2)), "power_kw"] = 0.0
    assert detect_alerts(frame.assign(residual_kw=np.nan), calibration, PARAMS).empty
