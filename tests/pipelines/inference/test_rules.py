"""The rules deciding which warehouse rows an inference run reads, run on a real DuckDB
warehouse holding hand-made rows: each row read is named by its turbine and stamp."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from turbine_monitor.datasets import DuckDBQueryDataset
from turbine_monitor.datasets.warehouse import connect
from turbine_monitor.pipelines.inference.rules import predictions_to_detect, rows_to_score

T0 = pd.Timestamp("2015-03-01", tz="UTC")


def stamp(i: int) -> pd.Timestamp:
    return T0 + pd.Timedelta(minutes=10 * i)


@pytest.fixture
def warehouse(tmp_path) -> Path:
    """`scada` rows 0..11 of turbines A and B; A is scored through row 9, B through row 5."""
    path = tmp_path / "warehouse.duckdb"
    with connect(path, lock_timeout_s=5) as con:
        for turbine, scored_through in (("A", 9), ("B", 5)):
            for i in range(12):
                con.execute("INSERT INTO scada (turbine_id, ts, wind_speed_ms, source_file, ingested_at) "
                            "VALUES ($t, $ts, 8.0, 'f.csv', now())", {"t": turbine, "ts": stamp(i)})
                if i <= scored_through:
                    con.execute("INSERT INTO predictions (turbine_id, ts, model_version, scored_at) "
                                "VALUES ($t, $ts, '1', $at)",
                                {"t": turbine, "ts": stamp(i), "at": T0 + pd.Timedelta(days=1, hours=i)})
    return path


def read(path: Path, rule: Callable, **args) -> pd.DataFrame:
    """What the catalog dataset with the rule as its `query` loads."""
    return DuckDBQueryDataset(str(path), query=f"{rule.__module__}.{rule.__name__}", query_args=args).load()


def rows(frame: pd.DataFrame) -> set[tuple[str, int]]:
    return {(r.turbine_id, int((r.ts - T0) / pd.Timedelta(minutes=10))) for r in frame.itertuples()}


def test_rows_to_score_are_the_unscored_ones_and_the_history_before_the_first(warehouse):
    scoring = read(warehouse, rows_to_score, history_hours=0.5)  # 3 records before B's row 6
    assert rows(scoring) == {(t, i) for t in "AB" for i in range(3, 12)}
    assert rows(scoring[~scoring["scored"]]) == {("A", 10), ("A", 11), *(("B", i) for i in range(6, 12))}
    assert list(scoring.columns[:2]) == ["turbine_id", "ts"]
    assert scoring.equals(scoring.sort_values(["turbine_id", "ts"]))


def test_nothing_to_score_reads_nothing(warehouse):
    with duckdb.connect(str(warehouse)) as con:
        con.execute("INSERT INTO predictions (turbine_id, ts, model_version) "
                    "SELECT turbine_id, ts, '1' FROM scada ON CONFLICT DO NOTHING")
    assert read(warehouse, rows_to_score, history_hours=6).empty


def test_detection_reads_from_the_first_prediction_scored_since_the_last_run(warehouse):
    """No detection yet: every prediction is new, so it recomputes from the first one."""
    window = read(warehouse, predictions_to_detect, recompute_days=0, lookback_days=0)
    assert window["recompute_from"].iloc[0] == stamp(0) and len(window) == 10 + 6
    assert window["scored_through"].iloc[0] == T0 + pd.Timedelta(days=1, hours=9)

    with duckdb.connect(str(warehouse)) as con:  # a detection read through the predictions of hour 7
        con.execute("INSERT INTO alert_detection (scored_through) VALUES ($at)",
                    {"at": T0 + pd.Timedelta(days=1, hours=7)})
    window = read(warehouse, predictions_to_detect, recompute_days=0, lookback_days=0)
    assert window["recompute_from"].iloc[0] == stamp(8)  # A's rows 8 and 9 were scored after hour 7
    assert rows(window) == {("A", 8), ("A", 9)}
    window = read(warehouse, predictions_to_detect, recompute_days=0, lookback_days=1 / 144)  # 10 min
    assert rows(window) == {("A", 7), ("A", 8), ("A", 9)}


def test_detection_reaches_back_to_an_open_alert_and_recompute_days(warehouse):
    with duckdb.connect(str(warehouse)) as con:
        con.execute("INSERT INTO alert_detection (scored_through) VALUES ($at)",
                    {"at": T0 + pd.Timedelta(days=9)})
        con.execute("INSERT INTO alerts (turbine_id, kind, start_ts) VALUES ('B', 'stopped', $ts)",
                    {"ts": stamp(4)})
    assert read(warehouse, predictions_to_detect, recompute_days=0,
                lookback_days=0)["recompute_from"].iloc[0] == stamp(4)
    newest_minus_a_day = read(warehouse, predictions_to_detect, recompute_days=1, lookback_days=0)
    assert newest_minus_a_day["recompute_from"].iloc[0] == stamp(9) - pd.Timedelta(days=1)
