"""The rules deciding which warehouse rows an inference run reads, run on a real DuckDB
warehouse holding hand-made rows of two farms: each row read is named by its turbine and
stamp."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from turbine_monitor.datasets import DuckDBQueryDataset
from turbine_monitor.datasets.warehouse import connect
from turbine_monitor.pipelines.inference.rules import (
    detection_inputs,
    detection_work,
    rows_to_score,
    scoring_work,
)

T0 = pd.Timestamp("2015-03-01", tz="UTC")
FARM_OF = {"A": "north", "B": "north", "C": "south"}


def stamp(i: int) -> pd.Timestamp:
    return T0 + pd.Timedelta(minutes=10 * i)


def scored_at(hour: int) -> pd.Timestamp:
    return T0 + pd.Timedelta(days=1, hours=hour)


@pytest.fixture
def warehouse(tmp_path) -> Path:
    """`scada` rows 0..11 of turbines A and B (farm north) and C (farm south); A is
    scored through row 9, B through row 5, C through row 7 (row i scored at hour i); the
    others wait in `scoring_queue`."""
    path = tmp_path / "warehouse.duckdb"
    with connect(path, lock_timeout_s=5) as con:
        for turbine, scored_through in (("A", 9), ("B", 5), ("C", 7)):
            con.execute("INSERT INTO turbines (farm_id, turbine_id) VALUES ($f, $t)",
                        {"f": FARM_OF[turbine], "t": turbine})
            for i in range(12):
                con.execute("INSERT INTO scada (turbine_id, ts, wind_speed_ms, source_file, ingested_at) "
                            "VALUES ($t, $ts, 8.0, 'f.csv', now())", {"t": turbine, "ts": stamp(i)})
                if i <= scored_through:
                    con.execute("INSERT INTO predictions (turbine_id, ts, model_version, scored_at) "
                                "VALUES ($t, $ts, '1', $at)",
                                {"t": turbine, "ts": stamp(i), "at": scored_at(i)})
                else:
                    con.execute("INSERT INTO scoring_queue VALUES ($t, $ts)", {"t": turbine, "ts": stamp(i)})
    return path


def read(path: Path, rule: Callable, **args) -> pd.DataFrame | dict[str, pd.DataFrame]:
    """What the catalog dataset with the rule as its `query` loads."""
    return DuckDBQueryDataset(str(path), query=f"{rule.__module__}.{rule.__name__}", query_args=args).load()


def execute(path: Path, sql: str, parameters: dict | None = None) -> None:
    with duckdb.connect(str(path)) as con:
        con.execute(sql, parameters or {})


def rows(frame: pd.DataFrame) -> set[tuple[str, int]]:
    return {(r.turbine_id, int((r.ts - T0) / pd.Timedelta(minutes=10))) for r in frame.itertuples()}


def test_scoring_work_counts_each_farms_queued_rows(warehouse):
    assert read(warehouse, scoring_work).values.tolist() == [["north", 2 + 6], ["south", 4]]


def test_rows_to_score_are_the_farms_queued_rows_and_the_history_before_each_farms_first(warehouse):
    scoring = read(warehouse, rows_to_score, farms=["north"], history_hours=0.5)  # 3 records before row 6
    assert rows(scoring) == {(t, i) for t in "AB" for i in range(3, 12)}
    assert rows(scoring[~scoring["scored"]]) == {("A", 10), ("A", 11), *(("B", i) for i in range(6, 12))}
    assert set(scoring["farm_id"]) == {"north"}
    assert scoring.equals(scoring.sort_values(["turbine_id", "ts"]))

    both = read(warehouse, rows_to_score, farms=["north", "south"], history_hours=0.5)
    assert rows(both[both["farm_id"] == "south"]) == {("C", i) for i in range(5, 12)}  # south's own first


def test_nothing_to_score_reads_nothing(warehouse):
    execute(warehouse, "DELETE FROM scoring_queue")
    assert read(warehouse, scoring_work).empty
    assert read(warehouse, rows_to_score, farms=["north", "south"], history_hours=6).empty


def detect(path: Path, farms: list[str], window: int = 2) -> pd.DataFrame:
    return read(path, detection_inputs, farms=farms, baseline_days=3, baseline_gap_days=1,
                window_records=window)


def keep_evidence(path: Path, turbine: str, stamps: list[pd.Timestamp]) -> None:
    """What an earlier detection kept of `turbine`'s evidence records at `stamps` (its
    first ones: ordinals 0, 1, ...)."""
    totals = ", ".join(["1"] * 10)
    for ordinal, ts in enumerate(stamps):
        execute(path, f"INSERT INTO detector_evidence VALUES ($t, $ts, $n, {totals}, 0, 0, false)",
                {"t": turbine, "ts": ts, "n": ordinal})


def test_detection_work_lists_the_farms_with_predictions_scored_since_their_last_detection(warehouse):
    assert read(warehouse, detection_work, window_evidence_records=100).values.tolist() == [
        ["north", 10 + 6 + 2 * 100], ["south", 8 + 100]]
    execute(warehouse, "INSERT INTO alert_detection (farm_id, scored_through) VALUES ('south', $at)",
            {"at": scored_at(7)})
    assert read(warehouse, detection_work, window_evidence_records=100)["farm_id"].tolist() == ["north"]


def test_detection_reads_each_farm_from_its_first_prediction_scored_since_its_last_run(warehouse):
    """No detection yet: every prediction is new, so each farm recomputes from its first."""
    inputs = detect(warehouse, ["north", "south"])
    window, farms = inputs["predictions"], inputs["farms"].set_index("farm_id")
    assert rows(window) == {*(("A", i) for i in range(10)), *(("B", i) for i in range(6)),
                            *(("C", i) for i in range(8))}
    assert (farms["recompute_from"] == stamp(0)).all()
    assert farms["scored_through"].to_dict() == {"north": scored_at(9), "south": scored_at(7)}

    execute(warehouse, "INSERT INTO alert_detection (farm_id, scored_through) VALUES ('north', $at)",
            {"at": scored_at(7)})  # north's detection read through the predictions of hour 7
    for turbine in "AB":
        keep_evidence(warehouse, turbine, [stamp(i) for i in range(8)])
    inputs = detect(warehouse, ["north", "south"])
    window, farms = inputs["predictions"], inputs["farms"].set_index("farm_id")
    assert farms.loc["north", "recompute_from"] == stamp(8)  # A's rows 8 and 9 were scored after hour 7
    assert rows(window[window["farm_id"] == "north"]) == {("A", 8), ("A", 9)}
    assert rows(window[window["farm_id"] == "south"]) == {("C", i) for i in range(8)}  # south: untouched
    # Each turbine's last kept record, and A's a window (2) back from its 2 new ones: the
    # first new one's window starts after row 6, the second's after row 7.
    assert rows(inputs["carried"]) == {("A", 6), ("A", 7), ("B", 7)}
    north = detect(warehouse, ["north"], window=1)
    assert rows(north["carried"]) == {("A", 7), ("B", 7)}
    assert set(zip(north["turbines"]["turbine_id"], north["turbines"]["farm_id"], strict=True)) == {
        ("A", "north"), ("B", "north")}


def test_detection_reaches_back_to_an_open_alert_and_to_an_unfinished_stop_run(warehouse):
    execute(warehouse, "INSERT INTO alert_detection (farm_id, scored_through, resume_from) VALUES "
            "('north', $north, NULL), ('south', $south, $run)",
            {"north": scored_at(8), "south": scored_at(6), "run": stamp(2)})
    execute(warehouse, "INSERT INTO alerts (turbine_id, kind, start_ts) VALUES ('B', 'stopped', $ts)",
            {"ts": stamp(4)})
    farms = detect(warehouse, ["north", "south"])["farms"]
    assert farms.set_index("farm_id")["recompute_from"].to_dict() == {
        "north": stamp(4), "south": stamp(2)}  # new predictions: north's A 9, south's C 7
    execute(warehouse, "UPDATE alerts SET end_ts = $ts", {"ts": stamp(5)})
    assert detect(warehouse, ["north"])["farms"]["recompute_from"].iloc[0] == stamp(9)


def test_an_open_underperformance_alert_kept_through_an_earlier_record_is_continued(warehouse):
    """North's last run read through hour 8 and kept B's open alert (from row 2) through
    row 8; A's rows 9 are new: the run continues the alert from row 9 on. Kept through
    row 9 or later (a late record), or not kept, the run reaches back to its start."""
    execute(warehouse, "INSERT INTO alert_detection (farm_id, scored_through) VALUES ('north', $at)",
            {"at": scored_at(8)})
    execute(warehouse, "INSERT INTO alerts (turbine_id, kind, start_ts) "
            "VALUES ('B', 'underperformance', $ts)", {"ts": stamp(2)})

    def kept_through(row: int) -> None:
        execute(warehouse, "DELETE FROM detector_episodes")
        execute(warehouse, "INSERT INTO detector_episodes VALUES "
                "('B', 'underperformance', $start, $through, 7, 7, 10.0, -50.0, 500.0, 0.08, 'peer')",
                {"start": stamp(2), "through": stamp(row)})

    assert detect(warehouse, ["north"])["farms"]["recompute_from"].iloc[0] == stamp(2)  # not kept
    kept_through(8)
    inputs = detect(warehouse, ["north"])
    assert inputs["farms"]["recompute_from"].iloc[0] == stamp(9)
    assert inputs["open_episodes"][["turbine_id", "records"]].values.tolist() == [["B", 7]]
    kept_through(9)
    inputs = detect(warehouse, ["north"])
    assert inputs["farms"]["recompute_from"].iloc[0] == stamp(2) and inputs["open_episodes"].empty


def test_detection_reads_the_window_starts_and_the_baseline_days_before_recompute_from(warehouse):
    """Before `recompute_from`, only what earlier runs kept is read, however old: each
    turbine's last evidence record and its new records' window starts (here a day or
    more back), and the day sums of the baseline days (3) ending a gap day (1) before;
    no prediction before `recompute_from`."""
    late = pd.Timestamp("2015-03-10", tz="UTC")
    for turbine in "AB":
        execute(warehouse, "INSERT INTO predictions (turbine_id, ts, model_version, scored_at) "
                "VALUES ($t, $ts, '1', $at)", {"t": turbine, "ts": late, "at": scored_at(20)})
        for day in range(1, 10):
            execute(warehouse, "INSERT INTO detector_days VALUES ($t, $d, 60, 0, 0, 0, 0, 0)",
                    {"t": turbine, "d": pd.Timestamp(f"2015-03-{day:02d}").date()})
        keep_evidence(warehouse, turbine, list(pd.date_range("2015-03-01 12:00", periods=9, freq="D",
                                                             tz="UTC")))
    execute(warehouse, "INSERT INTO alert_detection (farm_id, scored_through) VALUES ('north', $at)",
            {"at": scored_at(19)})
    inputs = detect(warehouse, ["north"])
    assert inputs["farms"]["recompute_from"].iloc[0] == late
    late_stamp = int((late - T0) / pd.Timedelta(minutes=10))
    assert rows(inputs["predictions"]) == {("A", late_stamp), ("B", late_stamp)}
    assert set(inputs["carried"]["ts"]) == {pd.Timestamp(f"2015-03-0{day} 12:00", tz="UTC") for day in (8, 9)}
    days = pd.to_datetime(inputs["known_days"]["day"])
    # March 10's baseline: the 3 days ending a gap day before it (6-8); later days' reach to the 9th
    assert days.min() == pd.Timestamp("2015-03-06") and days.max() == pd.Timestamp("2015-03-09")
