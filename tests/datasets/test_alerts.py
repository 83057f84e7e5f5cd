"""The `alerts` table as the detector's episodes: the recomputed part replaced in one
transaction, known episodes keeping when they were first opened, earlier ones final."""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest

from turbine_monitor.datasets import AlertsDataset
from turbine_monitor.detection import EPISODE_COLUMNS
from turbine_monitor.values import AlertUpdate, Skipped

T0 = pd.Timestamp("2015-05-01", tz="UTC")


def episode(turbine: str, kind: str, start_h: float, end_h: float | None, records: int) -> dict:
    return {"turbine_id": turbine, "kind": kind, "start_ts": T0 + pd.Timedelta(hours=start_h),
            "end_ts": None if end_h is None else T0 + pd.Timedelta(hours=end_h), "energy_lost_kwh": 100.0,
            "records": records, "operating_records": records, "mean_relative_residual": -0.1,
            "deficit_at_open": 0.07 if kind == "underperformance" else None,
            "channel": "peer" if kind == "underperformance" else None}


def frame(*episodes: dict, since_h: float = 0) -> AlertUpdate:
    """The episodes as recomputed from `since_h` hours after T0 on."""
    table = pd.DataFrame(list(episodes), columns=EPISODE_COLUMNS).astype(
        {"start_ts": "datetime64[us, UTC]", "end_ts": "datetime64[us, UTC]"})
    return AlertUpdate(T0 + pd.Timedelta(hours=since_h), table, T0 + pd.Timedelta(days=30))


@pytest.fixture
def alerts(tmp_path) -> AlertsDataset:
    return AlertsDataset(filepath=str(tmp_path / "warehouse.duckdb"), lock_timeout_s=5)


def by_key(table: pd.DataFrame) -> dict:
    return {(r.turbine_id, r.kind, r.start_ts): r for r in table.itertuples()}


def test_known_episodes_keep_their_opened_at_and_new_ones_are_stamped_now(alerts, caplog):
    stopped = episode("R80711", "stopped", 0, None, 3)
    alerts.save(frame(stopped))
    first = by_key(alerts.load())
    (key,) = first

    alerts.save(frame({**stopped, "end_ts": T0 + pd.Timedelta(hours=2), "records": 12},
                      episode("R80721", "underperformance", 5, None, 1)))
    second = by_key(alerts.load())
    assert second[key].opened_at == first[key].opened_at
    assert second[key].updated_at > first[key].updated_at
    assert second[key].end_ts == T0 + pd.Timedelta(hours=2) and second[key].records == 12
    (new,) = set(second) - {key}
    assert second[new].opened_at > first[key].opened_at
    assert "2 episodes, 1 of them new (1 of those still open)" in caplog.text


def test_an_unchanged_episode_is_not_touched(alerts):
    episodes = frame(episode("R80711", "stopped", 0, 1, 6))
    alerts.save(episodes)
    before = alerts.load()
    alerts.save(episodes)
    pd.testing.assert_frame_equal(alerts.load(), before)


def test_the_table_holds_exactly_the_latest_episodes(alerts):
    """An episode the detector no longer finds (e.g. judged by a new champion's
    calibration) is removed, so no turbine is left with two open alerts of a kind."""
    alerts.save(frame(episode("R80711", "underperformance", 0, None, 40)))
    alerts.save(frame(episode("R80711", "underperformance", 3, None, 20)))
    table = alerts.load()
    assert list(table["start_ts"]) == [T0 + pd.Timedelta(hours=3)]


def test_episodes_before_the_recomputed_part_are_final(alerts, tmp_path):
    alerts.save(frame(episode("R80711", "stopped", 0, 2, 12), episode("R80711", "stopped", 10, None, 3)))
    alerts.save(frame(episode("R80711", "stopped", 10, 14, 24), episode("R80721", "stopped", 12, None, 3),
                      since_h=8))
    table = by_key(alerts.load())
    assert {(k[0], (k[2] - T0) / pd.Timedelta(hours=1), r.records) for k, r in table.items()} == {
        ("R80711", 0, 12), ("R80711", 10, 24), ("R80721", 12, 3)}
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    assert con.sql("SELECT scored_through FROM alert_detection").fetchall() == [(T0 + pd.Timedelta(days=30),)]
    con.close()


def test_skipped_detection_leaves_the_table_alone(alerts):
    alerts.save(frame(episode("R80711", "stopped", 0, None, 3)))
    before = alerts.load()
    alerts.save(Skipped("no champion"))
    pd.testing.assert_frame_equal(alerts.load(), before)
