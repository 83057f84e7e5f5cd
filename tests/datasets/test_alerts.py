"""The `alerts` table as the detector's episodes, farm by farm: the recomputed part
replaced in one transaction, known episodes keeping when they were first opened, earlier
ones final, other farms untouched, the detector's day sums kept."""

from __future__ import annotations

from dataclasses import replace

import duckdb
import pandas as pd
import pytest

from turbine_monitor.datasets import AlertsDataset
from turbine_monitor.datasets.warehouse import connect
from turbine_monitor.detection import DAY_COLUMNS, EPISODE_COLUMNS, EVIDENCE_COLUMNS, OPEN_EPISODE_COLUMNS
from turbine_monitor.values import AlertUpdate

T0 = pd.Timestamp("2015-05-01", tz="UTC")


def episode(turbine: str, kind: str, start_h: float, end_h: float | None, records: int) -> dict:
    return {"turbine_id": turbine, "kind": kind, "start_ts": T0 + pd.Timedelta(hours=start_h),
            "end_ts": None if end_h is None else T0 + pd.Timedelta(hours=end_h), "energy_lost_kwh": 100.0,
            "records": records, "operating_records": records, "mean_relative_residual": -0.1,
            "deficit_at_open": 0.07 if kind == "underperformance" else None,
            "channel": "peer" if kind == "underperformance" else None}


def frame(*episodes: dict, since_h: float = 0, farm: str = "lhb", days: pd.DataFrame | None = None,
          evidence_h: tuple[float, ...] = (), resume_h: float | None = None,
          first_ordinal: int = 0, through_h: float | None = None) -> AlertUpdate:
    """The farm's episodes as recomputed from `since_h` hours after T0 on, as the
    detection of one partition saves them, with what it keeps of R80711's evidence
    records at `evidence_h` hours, numbered from `first_ordinal`, and of its open
    underperformance episodes, read through `through_h` hours."""
    table = pd.DataFrame(list(episodes), columns=EPISODE_COLUMNS).astype(
        {"start_ts": "datetime64[us, UTC]", "end_ts": "datetime64[us, UTC]"})
    days = pd.DataFrame(columns=DAY_COLUMNS) if days is None else days
    evidence = pd.DataFrame([("R80711", T0 + pd.Timedelta(hours=h), n, *[1.0] * 10, 0, 0, False)
                             for n, h in enumerate(evidence_h, start=first_ordinal)],
                            columns=EVIDENCE_COLUMNS)
    farms = pd.DataFrame({"farm_id": [farm], "since": [T0 + pd.Timedelta(hours=since_h)],
                          "scored_through": [T0 + pd.Timedelta(days=30)],
                          "resume_from": [pd.NaT if resume_h is None else T0 + pd.Timedelta(hours=resume_h)]})
    still_open = table[(table["kind"] == "underperformance") & table["end_ts"].isna()]
    kept = still_open.assign(through_ts=T0 + pd.Timedelta(hours=through_h or 0), residual_kw_sum=-1.0,
                             expected_kw_sum=10.0)[OPEN_EPISODE_COLUMNS]
    return AlertUpdate(farms, table, days, evidence.astype({"ts": "datetime64[us, UTC]"}), kept)


@pytest.fixture
def alerts(tmp_path) -> AlertsDataset:
    """Turbines R80711 and R80721 of farm `lhb`, S1 of farm `other`."""
    path = tmp_path / "warehouse.duckdb"
    with connect(path, lock_timeout_s=5) as con:
        con.execute("INSERT INTO turbines (farm_id, turbine_id) VALUES "
                    "('lhb', 'R80711'), ('lhb', 'R80721'), ('other', 'S1')")
    return AlertsDataset(filepath=str(path), kept_evidence_records=1, lock_timeout_s=5)


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
    assert "Alerts of lhb: 2 episodes recomputed, 1 of them new; 1 open." in caplog.text


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
    assert con.sql("SELECT farm_id, scored_through, resume_from FROM alert_detection").fetchall() == [
        ("lhb", T0 + pd.Timedelta(days=30), None)]
    con.close()


def test_an_open_episode_continued_replaces_the_stored_one_and_its_kept_sums(alerts, tmp_path):
    """A run that continued R80711's open episode (started before its `since`) replaces
    it, which keeps its `opened_at`; the kept open episodes are the farm's latest."""
    alerts.save(frame(episode("R80711", "underperformance", 0, None, 40), through_h=6))
    (before,) = alerts.load().itertuples()
    alerts.save(frame(episode("R80711", "underperformance", 0, None, 52), since_h=7, through_h=8))
    (after,) = alerts.load().itertuples()
    assert (after.records, after.opened_at) == (52, before.opened_at)
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    assert con.sql("SELECT turbine_id, records, through_ts FROM detector_episodes").fetchall() == [
        ("R80711", 52, T0 + pd.Timedelta(hours=8))]
    con.close()
    alerts.save(frame(episode("R80711", "underperformance", 0, 9, 58), since_h=9))  # closed
    assert alerts.load()["end_ts"].tolist() == [T0 + pd.Timedelta(hours=9)]
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    assert con.sql("SELECT count(*) FROM detector_episodes").fetchall() == [(0,)]
    con.close()


def test_a_farms_update_leaves_the_other_farms_alerts_alone(alerts):
    alerts.save(frame(episode("S1", "stopped", 1, None, 3), farm="other"))
    alerts.save(frame(episode("R80711", "stopped", 0, None, 3)))  # lhb, recomputed from T0 on
    assert sorted(alerts.load()["turbine_id"]) == ["R80711", "S1"]


def test_the_detectors_day_sums_are_kept_and_replaced_by_a_later_run(alerts, tmp_path):
    def days(evidence: float) -> pd.DataFrame:
        return pd.DataFrame({"turbine_id": ["R80711"], "day": [pd.Timestamp("2015-05-01")],
                             "evidence": [evidence], **dict.fromkeys(DAY_COLUMNS[3:], [1.0])})

    alerts.save(frame(days=days(10)))
    alerts.save(frame(days=days(30)))
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    assert con.sql("SELECT turbine_id, day::VARCHAR, evidence FROM detector_days").fetchall() == [
        ("R80711", "2015-05-01", 30.0)]
    con.close()


def test_kept_evidence_replaced_from_since_on_dropped_before_a_later_runs_reach_and_a_stop_run_kept(
        alerts, tmp_path):
    alerts.save(frame(evidence_h=(1, 2, 3, 4)))  # ordinals 0..3
    # From 3 h on, R80711's evidence records are now at 3.5 and 5 h (ordinals 2 and 3): its
    # last one before 3 h stays (the fixture keeps one), the one before it goes.
    alerts.save(frame(since_h=3, evidence_h=(3.5, 5), resume_h=3.5, first_ordinal=2))
    alerts.save(frame(farm="other", since_h=0))  # another farm's update leaves lhb's records alone
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    kept = con.sql("SELECT ts FROM detector_evidence ORDER BY ts").fetchall()
    assert [(ts - T0) / pd.Timedelta(hours=1) for (ts,) in kept] == [2, 3.5, 5]
    assert con.sql("SELECT resume_from FROM alert_detection WHERE farm_id = 'lhb'").fetchall() == [
        (T0 + pd.Timedelta(hours=3.5),)]
    con.close()


def test_evidence_records_are_stored_in_time_order(alerts, tmp_path):
    # Several turbines' records, turbine by turbine as the detector returns them: stored by
    # time, so that a run reading the window before its `since` skips older row groups.
    update = frame(since_h=0, evidence_h=(1, 2, 3))
    other = update.evidence.assign(turbine_id="R80721")
    alerts.save(replace(update, evidence=pd.concat([update.evidence, other], ignore_index=True)))
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    stored = con.execute("SELECT ts, turbine_id FROM detector_evidence ORDER BY rowid").fetchall()
    con.close()
    assert len(stored) == 6
    assert stored == sorted(stored)
