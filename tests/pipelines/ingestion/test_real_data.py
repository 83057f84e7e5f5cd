"""Ingestion of the real La Haute Borne export (2014-2015, 420,480 records) as one
landing file. The expected figures are facts of the published data set (DESIGN.md)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import RAW_DIR

pytestmark = pytest.mark.slow

TURBINES = ["R80711", "R80721", "R80736", "R80790"]


def write_full_export(path) -> None:
    """The original CSV export, rebuilt losslessly from the bundled parquet files."""
    table = pa.concat_tables(
        [pq.read_table(RAW_DIR / f"la-haute-borne-scada-{y}.parquet") for y in (2014, 2015)])
    columns = [col.to_pylist() for col in table.columns]
    with path.open("w") as f:
        f.write(",".join(table.column_names) + "\n")
        f.writelines(",".join("" if v is None else v for v in r) + "\n" for r in zip(*columns, strict=True))


@pytest.fixture(scope="module")
def ingested_full_export(tmp_path_factory):
    from turbine_monitor.sandbox import Sandbox

    root = tmp_path_factory.mktemp("full")
    raw = root / "raw"
    raw.mkdir()
    (raw / "la-haute-borne-asset-table.csv").write_bytes(
        (RAW_DIR / "la-haute-borne-asset-table.csv").read_bytes())
    ws = Sandbox.create(root / "ws", raw_dir=raw)
    write_full_export(ws.landing / "la-haute-borne-data-2014-2015.csv")
    ws.run()
    return ws


def test_every_record_is_read_and_accounted_for(ingested_full_export):
    ws = ingested_full_export
    assert ws.sql("SELECT rows_read, rows_accepted + rows_duplicate + rows_quarantined "
                  "FROM ingested_files") == [(420_480, 420_480)]


def test_records_read_per_turbine(ingested_full_export):
    per_turbine = dict(ingested_full_export.sql("""
        SELECT turbine_id, sum(n) FROM (
            SELECT turbine_id, count(*) AS n FROM scada GROUP BY ALL
            UNION ALL
            SELECT raw_record->>'Wind_turbine_name', count(*) FROM scada_quarantine GROUP BY ALL)
        GROUP BY ALL"""))
    assert per_turbine == dict.fromkeys(TURBINES, 105_120)


def test_spring_clock_change_duplicates_are_quarantined_as_conflicts(ingested_full_export):
    conflicts = ingested_full_export.sql("""
        SELECT strftime((raw_record->>'Date_time')::TIMESTAMPTZ, '%Y-%m-%d'), count(*)
        FROM scada_quarantine WHERE reason = 'duplicate_conflict' GROUP BY ALL ORDER BY 1""")
    assert conflicts == [("2014-03-30", 24), ("2015-03-29", 24)]


def test_all_missing_records_are_quarantined(ingested_full_export):
    assert ingested_full_export.scalar(
        "SELECT count(*) FROM scada_quarantine WHERE reason = 'all_missing'") == 2_569


def test_scada_holds_one_row_per_turbine_and_timestamp(ingested_full_export):
    assert ingested_full_export.scalar(
        "SELECT count(*) - count(DISTINCT (turbine_id, ts)) FROM scada") == 0
