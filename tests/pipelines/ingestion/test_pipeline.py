"""The ingestion pipeline end to end, through the real catalog, on a real DuckDB file."""

from __future__ import annotations

import os

import pytest

from tests.conftest import HEADER


def row(turbine="R80711", ts="2015-06-01T12:00:00+02:00", power="812.5", wind="8.1", temp="17.3"):
    return f"{turbine},{ts},-1.0,{power},{wind},1.2,{temp},201.0,202.2\n"


def stamps(n, start_minute=0):
    return [f"2015-06-01T{12 + (start_minute + 10 * i) // 60:02d}:{(start_minute + 10 * i) % 60:02d}:00+02:00"
            for i in range(n)]


def snapshot(ws):
    return {t: ws.sql(f"SELECT * EXCLUDE (ingested_at) FROM {t} ORDER BY ALL")
            for t in ("scada", "ingested_files")} | {
        "scada_quarantine": ws.sql("SELECT * EXCLUDE (quarantined_at) FROM scada_quarantine ORDER BY ALL")}


def accounting_holds(ws) -> bool:
    return ws.scalar("SELECT count(*) FROM ingested_files WHERE rows_read <> "
                     "rows_accepted + rows_duplicate + rows_quarantined") == 0


def test_accepts_valid_rows_and_quarantines_each_bad_one_with_reason(workspace, write_landing):
    write_landing("a.csv", HEADER + row() + row(ts="garbage") + row(turbine="R0000")
                  + row(ts="2015-06-01T12:10:00+02:00", wind="-2") + "R80711,2015-06-01T12:20:00+02:00\n"
                  + "R80736,2015-06-01T12:30:00+02:00,,,,,,,\n")
    workspace.run()
    assert workspace.sql("SELECT turbine_id, ts::VARCHAR, power_kw FROM scada") == [
        ("R80711", "2015-06-01 10:00:00+00", 812.5)]
    assert sorted(workspace.sql("SELECT reason FROM scada_quarantine")) == [
        ("all_missing",), ("invalid_timestamp",), ("malformed_row",), ("unknown_turbine",),
        ("wind_speed_ms_out_of_range",)]
    assert workspace.sql("SELECT rows_read, rows_accepted, rows_duplicate, rows_quarantined, status "
                         "FROM ingested_files") == [(6, 1, 0, 5, "ingested")]
    raw = workspace.scalar("SELECT raw_record->>'Date_time' FROM scada_quarantine "
                           "WHERE reason = 'invalid_timestamp'")
    assert raw == "garbage"


def test_rerun_changes_nothing_and_known_file_is_not_reprocessed(workspace, write_landing):
    write_landing("a.csv", HEADER + "".join(row(ts=t) for t in stamps(5)) + row(temp="-273.2"))
    workspace.run()
    before = snapshot(workspace)
    write_landing("same-content-new-name.csv", (workspace.landing / "a.csv").read_text())
    workspace.run()
    assert snapshot(workspace) == before
    assert workspace.scalar("SELECT count(*) FROM ingested_files") == 1


def test_a_known_file_is_recognised_by_name_size_and_mtime_without_being_read(workspace, write_landing):
    """Each run lists the landing zone but reads only new files: a file with the name,
    size and modification time of one already ingested is skipped unread (here its
    content was swapped for other bytes of the same size, mtime restored, and the
    swap goes unseen)."""
    path = write_landing("a.csv", HEADER + row(power="100.0"))
    workspace.run()
    before = snapshot(workspace)
    stat = path.stat()
    path.write_text(HEADER + row(power="200.0"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    workspace.run()
    assert snapshot(workspace) == before
    assert workspace.scalar("SELECT modified_ns FROM ingested_files") == stat.st_mtime_ns


def test_a_file_rewritten_in_place_is_read_again(workspace, write_landing):
    path = write_landing("a.csv", HEADER + row(ts=stamps(2)[0]))
    workspace.run()
    path.write_text(HEADER + row(ts=stamps(2)[0]) + row(ts=stamps(2)[1]))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000_000))
    workspace.run()
    assert workspace.sql("SELECT source_file, rows_read, rows_accepted, rows_duplicate FROM ingested_files "
                         "ORDER BY ingested_at") == [
        ("la-haute-borne/a.csv", 1, 1, 0), ("la-haute-borne/a.csv", 2, 1, 1)]
    assert workspace.scalar("SELECT count(*) FROM scada") == 2
    assert accounting_holds(workspace)


def test_redelivered_rows_are_noops_and_conflicts_are_quarantined(workspace, write_landing):
    write_landing("a.csv", HEADER + "".join(row(ts=t) for t in stamps(3)))
    workspace.run()
    first, second, third = stamps(3)
    write_landing("b.csv", HEADER + row(ts=first) + row(ts=second, power="999.0")
                  + row(ts=stamps(4)[3]))
    workspace.run()
    assert workspace.scalar("SELECT count(*) FROM scada") == 4
    assert workspace.scalar("SELECT power_kw FROM scada WHERE ts = '2015-06-01 10:10:00+00'") == 812.5
    assert workspace.sql("SELECT rows_read, rows_accepted, rows_duplicate, rows_quarantined "
                         "FROM ingested_files WHERE source_file = 'la-haute-borne/b.csv'") == [(3, 1, 1, 1)]
    assert workspace.sql("SELECT reason, raw_record->>'power_kw' FROM scada_quarantine") == [
        ("duplicate_conflict", "999.0")]
    assert accounting_holds(workspace)


def test_conflicting_duplicate_within_one_file_keeps_the_first(workspace, write_landing):
    write_landing("dst.csv", HEADER + row(power="100.0") + row(power="200.0") + row(power="100.0"))
    workspace.run()
    assert workspace.sql("SELECT power_kw FROM scada") == [(100.0,)]
    assert workspace.sql("SELECT rows_accepted, rows_duplicate, rows_quarantined FROM ingested_files"
                         ) == [(1, 1, 1)]
    assert workspace.sql("SELECT reason FROM scada_quarantine") == [("duplicate_conflict",)]


@pytest.mark.parametrize(("name", "content", "status", "read", "reason_part"), [
    ("wrong-columns.csv", "turbine,time,power\nR80711,2015-06-01T12:00:00+02:00,5\n",
     "rejected", 1, "schema_mismatch"),
    ("empty.csv", "", "empty", 0, "no records"),
    ("header-only.csv", HEADER, "empty", 0, "no records"),
    ("binary.csv", "\udcff\udcfe garbage", "rejected", 0, "unreadable"),
])
def test_bad_files_are_recorded_not_crashing_and_the_run_goes_on(
        workspace, write_landing, name, content, status, read, reason_part):
    (workspace.landing / name).write_bytes(content.encode("utf-8", "surrogateescape"))
    write_landing("z-good.csv", HEADER + row())
    workspace.run()
    assert workspace.sql("SELECT status, rows_read FROM ingested_files WHERE source_file = "
                         f"'la-haute-borne/{name}'") == [(status, read)]
    assert reason_part in workspace.scalar(
        f"SELECT reason FROM ingested_files WHERE source_file = 'la-haute-borne/{name}'")
    assert workspace.scalar("SELECT count(*) FROM scada") == 1
    assert workspace.scalar("SELECT count(*) FROM scada_quarantine") == read
    assert accounting_holds(workspace)


def test_schema_mismatched_rows_are_quarantined_with_raw_values(workspace, write_landing):
    write_landing("wrong.csv", "turbine,time,power\nR80711,2015-06-01T12:00:00+02:00,5\n")
    workspace.run()
    assert workspace.sql("SELECT reason, raw_record->>'power' FROM scada_quarantine") == [
        ("schema_mismatch", "5")]


def test_records_are_stored_in_time_order_whatever_the_file_order(workspace, write_landing):
    # Turbine by turbine in the file; DuckDB's row-group statistics on ts only let a read
    # of recent records skip the older row groups if the table holds them in time order.
    write_landing("a.csv", HEADER + "".join(row(turbine=t, ts=s) for t in ("R80711", "R80721", "R80736")
                                            for s in stamps(6)))
    workspace.run()
    stored = workspace.sql("SELECT ts, turbine_id FROM scada ORDER BY rowid")
    assert len(stored) == 18
    assert stored == sorted(stored)
