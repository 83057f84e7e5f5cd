"""The PostgreSQL warehouse (the cluster profile): the pipelines give the same tables as on
DuckDB and load the same dtypes; several processes write at once without a lost or
doubled row; a server restart is survived between units of work and fails one cleanly."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import shutil
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import duckdb
import pandas as pd
import psycopg
import pytest
import yaml
from kedro.io import DataCatalog

from tests.conftest import FAST_TRAINING, HEADER, execute, landing_only_workspace, write_export_slice
from turbine_monitor.dashboard.data import DashboardData, Settings
from turbine_monitor.datasets import (
    PostgresQueryDataset,
    PostgresScadaTableDataset,
    WarehouseLockedError,
    WarehouseUnavailableError,
)
from turbine_monitor.project import PROJECT_ROOT, kedro_session
from turbine_monitor.sandbox import Sandbox
from turbine_monitor.values import Partitions

#: Every warehouse entry of the catalog, and the farms' column its frames are sorted by.
WAREHOUSE_ENTRIES = ["ingested_sources", "turbines", "scada@batch", "scada@history", "newest_records",
                     "scada@to_score", "predictions@table", "predictions@to_detect", "alerts",
                     "alerts@to_report", "kpi_daily"]


def frame(ws: Sandbox, query: str) -> pd.DataFrame:
    """The result of `query` as a DataFrame; timestamps as datetime64 UTC, dates as
    datetime64 (DuckDB's and psycopg's Python values differ in their tzinfo only)."""
    if url := ws.warehouse_url:
        with psycopg.connect(url, options="-c TimeZone=UTC") as con:
            cursor = con.execute(query)
            columns = [d.name for d in cursor.description]
            result = pd.DataFrame(cursor.fetchall(), columns=columns, dtype=object)
    else:
        with duckdb.connect(str(ws.warehouse), read_only=True) as con:
            relation = con.sql(query)
            result = pd.DataFrame(relation.fetchall(), columns=relation.columns, dtype=object)
    for column in result.columns:
        values = result[column].dropna()
        if len(values) and isinstance(values.iloc[0], (dt.date, dt.datetime)):
            result[column] = pd.to_datetime(result[column], utc=isinstance(values.iloc[0], dt.datetime))
        elif len(values) and isinstance(values.iloc[0], (int, float)):
            result[column] = result[column].astype("float64")
    return result


def load_dtypes(ws: Sandbox) -> dict[str, dict[str, str]]:
    """The dtypes of every frame every warehouse entry loads (partitions: each one's)."""
    dtypes = {}
    with kedro_session(ws.conf) as session:
        catalog = session.load_context().catalog
        for name in WAREHOUSE_ENTRIES:
            loaded = catalog.load(name)
            parts = {f"{name}[{p}]": part() for p, part in loaded.items()} if isinstance(
                loaded, Partitions) else {name: loaded}
            assert parts, f"{name} has no work to load"
            for part, data in parts.items():
                for key, df in (data.items() if isinstance(data, dict) else [("", data)]):
                    dtypes[f"{part}{'.' + key if key else ''}"] = {c: str(t) for c, t in df.dtypes.items()}
    return dtypes


def write_live_increment(path: Path) -> None:
    """Two days of records in which R80721 produces half its power, R80711 stops for a
    morning and R80736 from the last evening on (alerts closed and open)."""
    write_export_slice(path, "2014-01-20", "2014-01-22")
    records = pd.read_csv(path, dtype=str)
    hour = pd.to_datetime(records["Date_time"], utc=True)
    power = records["P_avg"].astype(float)
    derated = records["Wind_turbine_name"].eq("R80721")
    utc = pd.Timestamp
    stopped = (records["Wind_turbine_name"].eq("R80711")
               & hour.between(utc("2014-01-20 05:00", tz="UTC"), utc("2014-01-20 11:00", tz="UTC"))
               ) | (records["Wind_turbine_name"].eq("R80736") & (hour >= utc("2014-01-21 18:00", tz="UTC")))
    power = power.where(~derated, power / 2).where(~stopped, 0.0)
    records["P_avg"] = power.map(repr).where(power.notna(), "")
    records.to_csv(path, index=False)


def run_scenario(ws: Sandbox) -> dict[str, object]:
    """Ingestion, training, inference and reporting of three weeks of La Haute Borne,
    with a file of bad, duplicate and conflicting records, a re-delivered file and a
    live increment; the tables that result, and the dtypes of the loads with work."""
    jan = ws.landing / "jan.csv"
    write_export_slice(jan, "2014-01-01", "2014-01-20")
    ws.run("ingestion")
    lines = jan.read_text().splitlines()
    identical, conflicting = lines[1], lines[2].split(",")
    conflicting[3] = "123.456"  # P_avg
    (ws.landing / "bad.csv").write_text(HEADER + "\n".join([
        "R80711,not-a-date,0,1,5,0,5,180,180", "R99999,2014-01-20T00:00:00+01:00,0,1,5,0,5,180,180",
        "R80711,2014-01-20T00:00:00+01:00,0,1,5", identical, ",".join(conflicting)]) + "\n")
    ws.run("__default__", runtime_params=FAST_TRAINING)  # the bad file; training, inference, reporting
    shutil.copy(jan, ws.landing / "jan-again.csv")  # re-delivered under another name
    write_live_increment(ws.landing / "live.csv")
    ws.run("ingestion")
    # Detection and reporting recompute from earlier (as after an outage), so that they load work.
    execute(ws, "UPDATE alert_detection SET scored_through = TIMESTAMPTZ '2014-01-01 00:00:00+00', "
                "report_from = TIMESTAMPTZ '2014-01-10 00:00:00+00'")
    dtypes = load_dtypes(ws)
    ws.run("inference", runtime_params=FAST_TRAINING)
    tables = {
        "scada": frame(ws, "SELECT turbine_id, ts, power_kw, wind_speed_ms, wind_direction_deg, "
                           "outdoor_temp_c, pitch_deg, nacelle_angle_deg, vane_angle_deg, source_file "
                           "FROM scada ORDER BY turbine_id, ts"),
        "scada_quarantine": frame(ws, "SELECT source_file, reason, count(*) AS n FROM scada_quarantine "
                                      "GROUP BY source_file, reason ORDER BY source_file, reason"),
        "ingested_files": frame(ws, "SELECT source_file, farm_id, status, rows_read, rows_accepted, "
                                    "rows_duplicate, rows_quarantined FROM ingested_files "
                                    "ORDER BY source_file"),
        "predictions": frame(ws, "SELECT turbine_id, ts, expected_power_kw, power_kw, residual_kw, "
                                 "wind_speed_ms, model_version, unscored_reason FROM predictions "
                                 "ORDER BY turbine_id, ts"),
        "alerts": frame(ws, "SELECT turbine_id, kind, start_ts, end_ts, energy_lost_kwh, records, "
                            "operating_records, mean_relative_residual, deficit_at_open, channel FROM alerts "
                            "ORDER BY turbine_id, kind, start_ts"),
        "kpi_daily": frame(ws, "SELECT * EXCLUDE (updated_at) FROM kpi_daily ORDER BY turbine_id, day"
                           if not ws.warehouse_url else
                           "SELECT farm_id, turbine_id, day, stamps, valid_stamps, energy_kwh, expected_kwh, "
                           "lost_stopped_kwh, lost_underperformance_kwh, lost_data_gap_kwh, other_kwh, "
                           "time_availability, energy_availability, coverage FROM kpi_daily "
                           "ORDER BY turbine_id, day"),
        "scoring_queue": frame(ws, "SELECT count(*) AS n FROM scoring_queue"),
    }
    return {"tables": tables, "dtypes": dtypes, "pages": dashboard_pages(ws)}


def dashboard_pages(ws: Sandbox) -> dict[str, pd.DataFrame]:
    """What each page of the dashboard reads from the sandbox's catalog (its
    `dashboard_*` entries), by page and part."""
    data = DashboardData(DataCatalog.from_config(ws.load("catalog")), Settings(), str(ws.conf))
    pages = {"turbines": data.turbines(), "months": pd.DataFrame({"month": data.months()}),
             "alerts": data.alerts_page()}
    for page, parts in (("fleet", data.fleet_page()), ("turbine", data.turbine_page("R80711")),
                        ("losses", data.losses_page("la-haute-borne", "latest"))):
        pages |= {f"{page}.{part}": frame for part, frame in parts.items()}
    alert = pages["alerts"].iloc[-1]
    end = None if pd.isna(alert["end_ts"]) else str(alert["end_ts"])
    pages["alert evidence"] = data.alert_evidence(alert["turbine_id"], str(alert["start_ts"]), end)
    return pages


def scenario_sandbox(root: Path, url: str | None) -> Sandbox:
    """A sandbox with no bundled history, on PostgreSQL if `url`, with a registered
    model of its own."""
    ws = landing_only_workspace(root)
    if url:
        ws.use_postgres(url)
    local_globals = ws.conf / "local" / "globals.yml"
    content = yaml.safe_load(local_globals.read_text())
    content["model"] = {**ws.load("globals")["model"], "name": f"parity-{root.name}"}
    local_globals.write_text(yaml.safe_dump(content))
    return ws


def test_the_pipelines_and_dashboard_give_the_same_tables_loads_and_pages_on_both(postgres_cluster, tmp_path):
    postgres_cluster.create_database("parity")
    duck = run_scenario(scenario_sandbox(tmp_path / "duckdb", None))
    pg = run_scenario(scenario_sandbox(tmp_path / "postgres", postgres_cluster.url("parity")))

    for table, expected in duck["tables"].items():
        assert len(expected), table
        pd.testing.assert_frame_equal(pg["tables"][table], expected, check_dtype=False, check_exact=False,
                                      rtol=1e-6, atol=1e-6, obj=table)
    assert set(pg["dtypes"]) == set(duck["dtypes"]) and len(duck["dtypes"]) == 19
    assert {name: types for name, types in pg["dtypes"].items() if types != duck["dtypes"][name]} == {}
    # The dashboard (conf/cluster/catalog_dashboard.yml on PostgreSQL) reads the same pages.
    assert set(pg["pages"]) == set(duck["pages"])
    for part, expected in duck["pages"].items():
        pd.testing.assert_frame_equal(pg["pages"][part], expected, check_dtype=False, check_exact=False,
                                      rtol=1e-6, atol=1e-6, obj=part)
    assert all(len(duck["pages"][part]) for part in ("fleet.states", "alerts", "turbine.scatter",
                                                      "turbine.kpis", "losses.waterfall", "alert evidence"))

    # What the scenario covers: quarantine, a duplicate and a conflict, a re-delivered
    # file, alerts closed and open, and every row of the live increment scored.
    tables = pg["tables"]
    files = tables["ingested_files"].set_index("source_file")
    assert list(files.index) == [f"la-haute-borne/{name}.csv" for name in ("bad", "jan", "live")]
    counts = files[["rows_read", "rows_accepted", "rows_duplicate", "rows_quarantined"]]
    assert counts.loc["la-haute-borne/bad.csv"].tolist() == [5, 0, 1, 4]
    assert (counts["rows_read"] == counts.iloc[:, 1:].sum(axis=1)).all()
    assert {"invalid_timestamp", "unknown_turbine", "malformed_row", "duplicate_conflict"} == set(
        tables["scada_quarantine"]["reason"])
    assert len(tables["scada"]) == counts["rows_accepted"].sum() == len(tables["predictions"])
    assert tables["alerts"]["end_ts"].isna().sum() == 1 and tables["alerts"]["end_ts"].notna().sum() >= 1
    assert tables["scoring_queue"]["n"].item() == 0


def test_the_cluster_catalog_has_every_warehouse_entry_of_base_on_postgresql():
    base = yaml.safe_load((PROJECT_ROOT / "conf" / "base" / "catalog.yml").read_text())
    cluster = yaml.safe_load((PROJECT_ROOT / "conf" / "cluster" / "catalog.yml").read_text())
    pairs = [("DuckDBQueryDataset", "PostgresQueryDataset"),
             ("ScadaTableDataset", "PostgresScadaTableDataset"),
             ("AlertsDataset", "PostgresAlertsDataset"), ("KpiDailyDataset", "PostgresKpiDailyDataset")]
    classes = {f"turbine_monitor.datasets.{duck}": f"turbine_monitor.datasets.{pg}" for duck, pg in pairs}
    warehouse = {name: entry for name, entry in base.items()
                 if not name.startswith("_") and entry.get("type") in classes}
    assert set(warehouse) == set(WAREHOUSE_ENTRIES) | {"alerts@update"}
    assert set(warehouse) == {name for name in cluster if not name.startswith("_")}
    for name, entry in warehouse.items():
        expected = {**{k: v for k, v in entry.items() if k not in ("filepath", "memory_limit")},
                    "type": classes[entry["type"]], "url": "${globals:warehouse.url}",
                    "connect_timeout_s": "${globals:warehouse.connect_timeout_s}"}
        assert cluster[name] == expected, name


# Several writers -------------------------------------------------------------------------

_barrier = None


def _set_barrier(barrier) -> None:
    global _barrier
    _barrier = barrier


def _save_at_once(kind: str, url: str, data) -> list[dict]:
    """In a worker process: wait for the other one, then save `data`."""
    dataset = (PostgresScadaTableDataset(url) if kind == "scada" else
               PostgresQueryDataset(url, table="predictions", dequeue="scoring_queue"))
    _barrier.wait(timeout=60)
    dataset.save(data)
    return data.saved if isinstance(data, Partitions) else []


class Given:
    """A partition's data, as a picklable function of its farms."""

    def __init__(self, data):
        self.data = data

    def __call__(self, farms):
        return self.data


def ingestion_batch(name: str, stamps: pd.DatetimeIndex, power: float) -> dict[str, pd.DataFrame]:
    """A batch as the ingestion pipeline makes it: one file of `stamps` of R80711, and a
    quarantined record."""
    source = f"la-haute-borne/{name}"
    scada = pd.DataFrame({"turbine_id": "R80711", "ts": stamps, "power_kw": power, "wind_speed_ms": 7.5,
                          "wind_direction_deg": 180.0, "outdoor_temp_c": 5.0, "pitch_deg": 0.0,
                          "nacelle_angle_deg": 180.0, "vane_angle_deg": 0.0, "source_file": source,
                          "source_row": range(len(stamps))})
    quarantine = pd.DataFrame({"source_file": [source], "source_row": [len(stamps)],
                               "reason": ["invalid_timestamp"], "detail": ["invalid_timestamp: x"],
                               "raw_record": ['{"Date_time": "x"}'], "farm_id": ["la-haute-borne"]})
    files = pd.DataFrame({"source_file": [source], "farm_id": "la-haute-borne", "checksum": [f"sha-{name}"],
                          "size_bytes": 1000, "modified_ns": 1, "status": "ingested", "reason": [None],
                          "rows_accepted": len(stamps), "rows_duplicate": 0, "rows_quarantined": 1,
                          "rows_read": len(stamps) + 1})
    return {"files": files, "scada": scada, "quarantine": quarantine}


def test_two_processes_writing_the_same_rows_at_once_lose_and_double_nothing(postgres_cluster):
    """Two worker processes, on a database with no schema yet: both ingest the same file
    at the same moment (one ingests it, the other skips it); then two files that share
    half their records (the later one counts them as duplicates or conflicts); then
    both save predictions of the same queued rows (each row predicted once)."""
    postgres_cluster.create_database("workers")
    url = postgres_cluster.url("workers")
    stamps = pd.date_range("2015-01-01", periods=144, freq="10min", tz="UTC")
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    with ProcessPoolExecutor(2, mp_context=context, initializer=_set_barrier, initargs=(barrier,)) as pool:
        same = ingestion_batch("same.csv", stamps, 500.0)
        list(pool.map(_save_at_once, ["scada", "scada"], [url, url], [same, same]))
        with psycopg.connect(url) as con:
            files = con.execute("SELECT source_file, rows_read, rows_accepted, rows_duplicate, "
                                "rows_quarantined FROM ingested_files").fetchall()
            assert files == [("la-haute-borne/same.csv", 145, 144, 0, 1)]
            assert con.execute("SELECT count(*), count(DISTINCT ts) FROM scada").fetchone() == (144, 144)
            assert con.execute("SELECT count(*) FROM scada_quarantine").fetchone() == (1,)

        later = stamps + pd.Timedelta(days=1)
        overlap = later[:72].append(later[72:] + pd.Timedelta(days=1))
        list(pool.map(_save_at_once, ["scada", "scada"], [url, url],
                      [ingestion_batch("a.csv", later, 600.0), ingestion_batch("b.csv", overlap, 700.0)]))
        with psycopg.connect(url) as con:
            counts = dict(con.execute("SELECT source_file, ARRAY[rows_read, rows_accepted, rows_duplicate, "
                                      "rows_quarantined] FROM ingested_files").fetchall())
            first, second = sorted([counts["la-haute-borne/a.csv"], counts["la-haute-borne/b.csv"]],
                                   key=lambda c: -c[1])
            assert first == [145, 144, 0, 1] and second == [145, 72, 0, 73]  # 72 conflicts
            assert con.execute("SELECT count(*), count(DISTINCT (turbine_id, ts)) FROM scada").fetchone() == (
                144 * 2 + 72, 144 * 2 + 72)
            assert con.execute("SELECT count(*) FROM scoring_queue").fetchone() == (144 * 2 + 72,)
            assert con.execute("SELECT count(*) FROM scada_quarantine WHERE reason = 'duplicate_conflict'"
                               ).fetchone() == (72,)

        with psycopg.connect(url) as con:
            queued = con.execute("SELECT turbine_id, ts FROM scoring_queue ORDER BY ts").fetchall()
        predictions = pd.DataFrame(queued, columns=["turbine_id", "ts"]).assign(
            expected_power_kw=1.0, power_kw=2.0, residual_kw=1.0, model_version="1")
        saves = [Partitions.of([("la-haute-borne",)], Given(predictions)) for _ in range(2)]
        saved = list(pool.map(_save_at_once, ["predictions", "predictions"], [url, url], saves))
    assert sorted(s[0]["rows"] for s in saved) == [0, len(predictions)]
    with psycopg.connect(url) as con:
        stored = con.execute("SELECT count(*), count(DISTINCT (turbine_id, ts)) FROM predictions").fetchone()
        assert stored == (len(predictions), len(predictions))
        assert con.execute("SELECT count(*) FROM scoring_queue").fetchone() == (0,)


# Server restarts and locks ----------------------------------------------------------------

def queue_rows(url: str, n: int) -> pd.DataFrame:
    """`n` rows put in `scoring_queue`, as predictions to save."""
    stamps = pd.date_range("2015-01-01", periods=n, freq="10min", tz="UTC")
    rows = pd.DataFrame({"turbine_id": "R80711", "ts": stamps})
    PostgresQueryDataset(url, table="scoring_queue").save(rows)
    return rows.assign(expected_power_kw=1.0, power_kw=2.0, residual_kw=1.0, model_version="1")


def test_a_save_after_a_restart_reconnects_and_one_while_the_server_is_down_waits_for_it(postgres_cluster):
    url = postgres_cluster.url()
    rows = queue_rows(url, 20)
    predictions = PostgresQueryDataset(url, table="predictions", dequeue="scoring_queue",
                                       connect_timeout_s=30)
    predictions.save(rows[:5])
    postgres_cluster.restart()
    predictions.save(rows[5:10])  # a new connection: nothing to reconnect by hand
    postgres_cluster.stop()
    restart = threading.Timer(1.5, postgres_cluster.start)
    restart.start()
    start = time.monotonic()
    predictions.save(rows[10:])  # refused until the server is back
    restart.join()
    assert time.monotonic() - start >= 1.0
    assert len(PostgresQueryDataset(url, table="predictions").load()) == 20


def test_a_server_down_longer_than_the_wait_fails_with_a_clear_message(postgres_cluster):
    url = postgres_cluster.url()
    dataset = PostgresQueryDataset(url, table="scada", connect_timeout_s=1)
    postgres_cluster.stop()
    start = time.monotonic()
    with pytest.raises(WarehouseUnavailableError, match=r"refused connections for 1 s"):
        dataset.load()
    assert time.monotonic() - start < 5


def wait_for_lock_wait(url: str) -> None:
    """Until a turbine-monitor connection waits for a lock."""
    with psycopg.connect(url, autocommit=True) as con:
        for _ in range(200):
            if con.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'turbine-monitor' "
                           "AND wait_event_type = 'Lock'").fetchone()[0]:
                return
            time.sleep(0.05)
    raise AssertionError("no save waited for a lock")


def test_a_restart_during_a_save_fails_it_clearly_and_leaves_nothing_half_written(postgres_cluster):
    """The save blocks on a row another transaction inserted (its batch's staging and
    some inserts done), the server restarts: the save fails, none of it committed."""
    url = postgres_cluster.url()
    stamps = pd.date_range("2015-01-01", periods=100, freq="10min", tz="UTC")
    scada = PostgresScadaTableDataset(url)
    scada.load()  # the schema
    blocker = psycopg.connect(url)
    blocker.execute("INSERT INTO scada (turbine_id, ts, source_file, ingested_at) "
                    "VALUES ('R80711', %s, 'x', now())", (stamps[-1].to_pydatetime(),))
    failure: list[BaseException] = []

    def save() -> None:
        try:
            scada.save(ingestion_batch("a.csv", stamps, 500.0))
        except BaseException as error:  # noqa: BLE001 - the test looks at it
            failure.append(error)

    saving = threading.Thread(target=save)
    saving.start()
    wait_for_lock_wait(url)
    postgres_cluster.restart()
    saving.join(timeout=30)
    assert len(failure) == 1 and isinstance(failure[0], WarehouseUnavailableError), failure
    assert "lost during a unit of work; its transaction committed nothing" in str(failure[0])
    blocker.close()
    with psycopg.connect(url) as con:
        for table in ("scada", "ingested_files", "scada_quarantine", "scoring_queue"):
            assert con.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table
    scada.save(ingestion_batch("a.csv", stamps, 500.0))  # and the next run ingests it
    with psycopg.connect(url) as con:
        assert con.execute("SELECT rows_accepted FROM ingested_files").fetchall() == [(100,)]


def test_a_lock_held_longer_than_the_wait_fails_with_a_clear_message_and_writes_nothing(postgres_cluster):
    url = postgres_cluster.url()
    scada = PostgresScadaTableDataset(url, lock_timeout_s=0.5)
    scada.load()
    stamps = pd.date_range("2015-01-01", periods=3, freq="10min", tz="UTC")
    with psycopg.connect(url) as holder:  # another worker's ingestion transaction
        holder.execute("SELECT pg_advisory_xact_lock(%s, 2)", (0x7475_7262,))
        start = time.monotonic()
        with pytest.raises(WarehouseLockedError, match=r"held by another worker for 0.5 s"):
            scada.save(ingestion_batch("a.csv", stamps, 1.0))
        assert time.monotonic() - start < 5
    with psycopg.connect(url) as con:
        assert con.execute("SELECT count(*) FROM ingested_files").fetchone() == (0,)

