"""Nodes of the reporting pipeline: the performance of each turbine per UTC day
(`kpi_daily`; docs/reporting.md gives the definitions), for the days that can still
change, a partition of farms at a time (`values.Partitions`, produced as they are saved).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from turbine_monitor.values import Partitions

logger = logging.getLogger(__name__)

STOPPED, UNDERPERFORMANCE = "stopped", "underperformance"
KPI_COLUMNS = ["farm_id", "turbine_id", "day", "stamps", "valid_stamps", "energy_kwh", "expected_kwh",
               "lost_stopped_kwh", "lost_underperformance_kwh", "lost_data_gap_kwh", "other_kwh",
               "time_availability", "energy_availability", "coverage"]


def report_days(reporting_inputs: Partitions, params: dict) -> Partitions:
    """The KPI rows of the days that can still change, a partition of farms at a time
    (`report_partition`)."""
    if not reporting_inputs:
        logger.info("No days to report.")
    return reporting_inputs.map(report_partition, params)


def report_partition(inputs: dict[str, pd.DataFrame], params: dict) -> dict[str, pd.DataFrame]:
    """`farms` as read (from where each farm's days are replaced, and the `report_from`
    the save clears if unchanged) and `days`, their turbines' KPI rows from there on."""
    farms, records, minutes = inputs["farms"], inputs["records"], params["record_minutes"]
    due = stamps_due(farms, inputs["turbines"], records, minutes)
    return {"farms": farms, "days": daily_kpis(due, records, inputs["alerts"], minutes)}


def stamps_due(farms: pd.DataFrame, turbines: pd.DataFrame, records: pd.DataFrame,
               record_minutes: int) -> pd.DataFrame:
    """Every (farm_id, turbine_id, ts) due: per farm, each `record_minutes` stamp from
    its `from_ts` (NaT: its first record's day) to its newest record, for every turbine
    of the farm; a farm without records has none. Built with whole-array operations: a
    live run has a day of stamps for every turbine of the fleet."""
    bounds = records.groupby("farm_id")["ts"].agg(first="min", newest="max")
    spans = farms[["farm_id", "from_ts"]].merge(bounds, left_on="farm_id", right_index=True)
    start = np.maximum(_ns(spans["from_ts"]), _ns(spans["first"].dt.floor("D")))  # NaT is the minimum
    step = pd.Timedelta(minutes=record_minutes).value
    spans = spans.assign(start=start, count=np.clip((_ns(spans["newest"]) - start) // step + 1, 0, None))
    pairs = spans[["farm_id", "start", "count"]].merge(turbines[["farm_id", "turbine_id"]], on="farm_id")
    counts = pairs["count"].to_numpy()
    position = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    ts = np.repeat(pairs["start"].to_numpy(), counts) + position * step
    return pd.DataFrame({"farm_id": np.repeat(pairs["farm_id"].to_numpy(), counts),
                         "turbine_id": np.repeat(pairs["turbine_id"].to_numpy(), counts),
                         "ts": pd.to_datetime(ts, utc=True).as_unit("ns")})


def expected_at_stamps(due: pd.DataFrame) -> pd.Series:
    """The expected power (kW) at each stamp of `due` (with `farm_id`, `turbine_id`,
    `ts`, `power_kw`, `expected_power_kw`): the champion's, clipped at 0, where the
    record is valid and scored; elsewhere the median of the farm's other turbines'
    clipped expected power at that stamp (same wind, same time), else 0."""
    clipped = due["expected_power_kw"].clip(lower=0)
    scorable = due["power_kw"].notna() & clipped.notna()
    known = due.loc[clipped.notna(), ["farm_id", "ts", "turbine_id"]].assign(peer_kw=clipped)
    gaps = due.loc[~scorable, ["farm_id", "ts", "turbine_id"]].reset_index()
    pairs = gaps.merge(known, on=["farm_id", "ts"], suffixes=("", "_peer"))
    peers = pairs[pairs["turbine_id"] != pairs["turbine_id_peer"]].groupby("index")["peer_kw"].median()
    return clipped.where(scorable, peers.reindex(due.index)).fillna(0.0)


def within(due: pd.DataFrame, episodes: pd.DataFrame) -> np.ndarray:
    """Whether each stamp of `due` lies in an episode of its turbine, [start_ts, end_ts]
    (an open one, end_ts NaT, through the newest record)."""
    inside = np.zeros(len(due), dtype=bool)
    stamps = _ns(due["ts"])
    for turbine, spans in episodes.groupby("turbine_id"):
        spans = spans.sort_values("start_ts")
        starts = _ns(spans["start_ts"])
        ends = np.maximum.accumulate(np.where(spans["end_ts"].isna(), np.iinfo(np.int64).max,
                                              _ns(spans["end_ts"])))
        rows = np.flatnonzero(due["turbine_id"].to_numpy() == turbine)
        last = np.searchsorted(starts, stamps[rows], side="right") - 1
        inside[rows] = (last >= 0) & (stamps[rows] <= ends[np.maximum(last, 0)])
    return inside


def _ns(timestamps: pd.Series) -> np.ndarray:
    """Nanoseconds since the epoch (NaT: the int64 minimum)."""
    return pd.DatetimeIndex(timestamps).as_unit("ns").asi8


def daily_kpis(due: pd.DataFrame, records: pd.DataFrame, alerts: pd.DataFrame,
               record_minutes: int) -> pd.DataFrame:
    """The KPI row of each turbine and UTC day of the stamps `due`, from the `records`
    (predictions) and alert episodes (docs/reporting.md)."""
    records = records[["turbine_id", "ts", "power_kw", "expected_power_kw"]]
    due = due.merge(records.assign(ts=records["ts"].dt.as_unit("ns")), how="left", on=["turbine_id", "ts"])
    hours = record_minutes / 60
    valid = due["power_kw"].notna().to_numpy()
    expected = expected_at_stamps(due).to_numpy()
    power = due["power_kw"].fillna(0.0).to_numpy()
    stopped = valid & within(due, alerts[alerts["kind"] == STOPPED])
    underperforming = valid & ~stopped & within(due, alerts[alerts["kind"] == UNDERPERFORMANCE])
    # A stopped turbine that draws power (power < 0) loses its expected energy, not more:
    # the draw stays in energy_kwh, so a stop's loss is at most what was expected.
    shortfall = np.clip(expected - np.clip(power, 0, None), 0, None) * hours
    terms = pd.DataFrame({
        "farm_id": due["farm_id"], "turbine_id": due["turbine_id"], "day": due["ts"].dt.floor("D"),
        "stamps": 1, "valid_stamps": valid.astype(int), "available": (valid & ~stopped).astype(int),
        "energy_kwh": power * hours, "expected_kwh": expected * hours,
        "lost_stopped_kwh": np.where(stopped, shortfall, 0.0),
        "lost_underperformance_kwh": np.where(underperforming, shortfall, 0.0),
        "lost_data_gap_kwh": np.where(valid, 0.0, expected * hours)})
    days = terms.groupby(["farm_id", "turbine_id", "day"], as_index=False).sum()
    days["other_kwh"] = (days["expected_kwh"] - days["energy_kwh"] - days["lost_stopped_kwh"]
                         - days["lost_underperformance_kwh"] - days["lost_data_gap_kwh"])
    days["time_availability"] = (days["available"] / days["valid_stamps"]).where(days["valid_stamps"] > 0)
    expected_valid = days["expected_kwh"] - days["lost_data_gap_kwh"]  # as the roll-up views compute it
    days["energy_availability"] = (1 - days["lost_stopped_kwh"] / expected_valid).where(expected_valid > 0)
    days["coverage"] = days["valid_stamps"] / days["stamps"]
    days["day"] = days["day"].dt.tz_localize(None).dt.date
    return days[KPI_COLUMNS]
