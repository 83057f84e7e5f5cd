"""The warehouse under contention: lock waits, two processes, and kill -9 mid-commit."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.conftest import HEADER, PROJECT_ROOT, RAW_DIR
from tests.pipelines.ingestion.test_real_data import write_full_export
from turbine_monitor.datasets import DuckDBQueryDataset, WarehouseLockedError
from turbine_monitor.sandbox import Sandbox


def hold_lock(warehouse: Path, seconds: float) -> subprocess.Popen:
    """Another process that opens the warehouse read-write and keeps it open."""
    code = (f"import duckdb, time, sys; con = duckdb.connect({str(warehouse)!r}); "
            f"print('locked', flush=True); time.sleep({seconds})")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def kedro_run(ws: Sandbox, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "KEDRO_LOGGING_CONFIG": str(PROJECT_ROOT / "tests" / "plain_logging.yml")}
    return subprocess.Popen(
        [sys.executable, "-m", "kedro", "run", "--pipeline", "ingestion", "--conf-source", str(ws.conf)],
        cwd=PROJECT_ROOT, env=env, text=True, **kwargs)


def test_a_held_lock_fails_with_a_clear_message_after_the_configured_wait(tmp_path):
    dataset = DuckDBQueryDataset(str(tmp_path / "w.duckdb"), table="scada", lock_timeout_s=0.5)
    holder = hold_lock(tmp_path / "w.duckdb", seconds=30)
    try:
        start = time.monotonic()
        with pytest.raises(WarehouseLockedError, match=r"stayed locked by another process for 0.5 s"):
            dataset.load()
        assert 0.4 < time.monotonic() - start < 5
    finally:
        holder.kill()
        holder.wait()


def test_a_briefly_held_lock_is_waited_for(tmp_path):
    dataset = DuckDBQueryDataset(str(tmp_path / "w.duckdb"), table="scada", lock_timeout_s=30)
    holder = hold_lock(tmp_path / "w.duckdb", seconds=1.0)
    try:
        assert dataset.load().empty
    finally:
        holder.wait()
    assert holder.returncode == 0


def test_threads_of_one_process_share_the_warehouse_and_release_it_between_units(tmp_path):
    """Nodes running at once in one process (Prefect's thread pool) take turns on the
    warehouse; after each unit of work another process can open the file at once."""
    path = tmp_path / "w.duckdb"
    predictions = DuckDBQueryDataset(str(path), table="predictions", lock_timeout_s=5)

    def write_and_read(turbine: str) -> int:
        for ts in pd.date_range("2015-01-01", periods=10, freq="10min", tz="UTC"):
            predictions.save(pd.DataFrame({"turbine_id": [turbine], "ts": [ts], "model_version": ["1"]}))
            rows = len(predictions.load())
        return rows

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert max(pool.map(write_and_read, ["T1", "T2", "T3", "T4"])) == 40
    opened = subprocess.run([sys.executable, "-c", f"import duckdb; duckdb.connect({str(path)!r}).close()"],
                            capture_output=True, text=True)
    assert opened.returncode == 0, opened.stderr


@pytest.mark.slow
def test_two_processes_ingesting_and_reading_at_once_both_succeed(tmp_path):
    """Two ingestion loops on one warehouse, each with its own landing zone: some rows
    overlap (identical), one file is delivered to both. Nothing fails, nothing is lost."""
    script = textwrap.dedent("""
        import sys, time
        from pathlib import Path
        from kedro.framework.session import KedroSession
        from kedro.framework.startup import bootstrap_project
        project, conf, landing, turbine, go, header = sys.argv[1:7]
        bootstrap_project(Path(project))
        while not Path(go).exists():
            time.sleep(0.01)
        for i in range(8):
            rows = [f"{t},2015-01-{1 + i:02d}T{h:02d}:00:00+01:00,0,{h}.5,6.0,0,5,180,180\\n"
                    for t in (turbine, "R80711") for h in range(24)]
            Path(landing, f"{turbine}-{i}.csv").write_text(header + "".join(rows))
            with KedroSession.create(project_path=Path(project), conf_source=conf) as session:
                session.run(pipeline_names=["ingestion"])
    """)
    go = tmp_path / "go"
    asset_table_only = tmp_path / "raw"
    asset_table_only.mkdir()
    shutil.copy(RAW_DIR / "la-haute-borne-asset-table.csv", asset_table_only)
    workers = []
    for name, turbine in (("a", "R80721"), ("b", "R80736")):
        ws = Sandbox.create(tmp_path / name, raw_dir=asset_table_only)
        ws.configure(warehouse=tmp_path / "shared.duckdb")
        (ws.landing / "shared.csv").write_text(HEADER + "R80790,2015-02-01T00:00:00+01:00,0,1,2,0,5,1,1\n")
        workers.append((ws, subprocess.Popen(
            [sys.executable, "-c", script, str(PROJECT_ROOT), str(ws.conf), str(ws.landing), turbine,
             str(go), HEADER],
            cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)))
    # The experiment exists before the two sessions start (kedro-mlflow creates a missing
    # one as a session opens: two at once on a fresh store would race).
    if MlflowClient().get_experiment_by_name("turbine-monitor") is None:
        MlflowClient().create_experiment("turbine-monitor", artifact_location=str(tmp_path / "mlartifacts"))
    go.touch()
    reader = DuckDBQueryDataset(str(tmp_path / "shared.duckdb"), table="scada", columns=["turbine_id"])
    while any(p.poll() is None for _, p in workers):
        reader.load()
    for _, process in workers:
        assert process.returncode == 0, process.stderr.read()[-3000:]
    ws = workers[0][0]
    assert ws.scalar("SELECT count(*) FROM ingested_files") == 17
    assert ws.scalar("SELECT count(*) FROM scada") == 3 * 8 * 24 + 1
    assert ws.scalar("SELECT sum(rows_duplicate) FROM ingested_files") == 8 * 24
    assert ws.scalar("SELECT count(*) FROM scada_quarantine") == 0
    assert ws.scalar("SELECT count(*) FROM ingested_files WHERE rows_read <> "
                     "rows_accepted + rows_duplicate + rows_quarantined") == 0


@pytest.mark.slow
def test_kill_9_during_commit_leaves_no_half_ingested_file(workspace):
    write_full_export(workspace.landing / "full.csv")
    run = kedro_run(workspace, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for line in run.stdout:
        if "Saving data to scada" in line:
            time.sleep(0.2)  # inside the transaction (the commit takes ~0.4 s)
            run.send_signal(signal.SIGKILL)
            break
    run.wait()
    assert run.returncode == -signal.SIGKILL
    files = workspace.scalar("SELECT count(*) FROM ingested_files")
    rows = workspace.scalar("SELECT count(*) FROM scada") + workspace.scalar(
        "SELECT count(*) FROM scada_quarantine")
    assert (files, rows) in {(0, 0), (1, 420_480)}

    rerun = kedro_run(workspace, stdout=subprocess.DEVNULL)
    assert rerun.wait() == 0
    assert workspace.sql("SELECT rows_read, rows_accepted + rows_duplicate + rows_quarantined "
                         "FROM ingested_files") == [(420_480, 420_480)]
    assert workspace.scalar("SELECT count(*) FROM scada") + workspace.scalar(
        "SELECT count(*) FROM scada_quarantine") == 420_480


def test_a_warehouse_from_an_earlier_version_is_migrated_once(tmp_path):
    """A warehouse from before the scoring queue and the detector's kept evidence (and
    before farms, and with keys on `scada` and `predictions`): its unscored row joins
    the queue, its alert detection starts over (the next run reads every farm's
    predictions once and keeps their evidence terms), and `scada` and `predictions` are
    rebuilt without keys, rows kept; a later process's connection applies none again."""
    import duckdb

    from turbine_monitor.datasets.warehouse import connect

    path = tmp_path / "old.duckdb"
    ts = [pd.Timestamp("2015-01-01", tz="UTC") + pd.Timedelta(minutes=10 * i) for i in range(2)]
    with duckdb.connect(str(path)) as old:
        old.execute("CREATE TABLE scada (turbine_id VARCHAR, ts TIMESTAMPTZ, power_kw DOUBLE, "
                    "wind_speed_ms DOUBLE, wind_direction_deg DOUBLE, outdoor_temp_c DOUBLE, "
                    "pitch_deg DOUBLE, nacelle_angle_deg DOUBLE, vane_angle_deg DOUBLE, "
                    "source_file VARCHAR, ingested_at TIMESTAMPTZ, PRIMARY KEY (turbine_id, ts))")
        old.execute("CREATE TABLE predictions (turbine_id VARCHAR, ts TIMESTAMPTZ, expected_power_kw DOUBLE, "
                    "power_kw DOUBLE, residual_kw DOUBLE, wind_speed_ms DOUBLE, model_version VARCHAR, "
                    "unscored_reason VARCHAR, scored_at TIMESTAMPTZ, PRIMARY KEY (turbine_id, ts))")
        old.execute("CREATE TABLE alert_detection (scored_through TIMESTAMPTZ NOT NULL, "
                    "updated_at TIMESTAMPTZ)")
        old.execute("CREATE TABLE detector_days (turbine_id VARCHAR, day DATE, evidence DOUBLE, "
                    "matched DOUBLE, own_num DOUBLE, own_den DOUBLE, peer_num DOUBLE, peer_den DOUBLE, "
                    "PRIMARY KEY (turbine_id, day))")
        for stamp in ts:
            old.execute("INSERT INTO scada (turbine_id, ts, source_file, ingested_at) "
                        "VALUES ('R80711', $1, 'a', $1)", [stamp])
        old.execute("INSERT INTO predictions (turbine_id, ts, model_version, scored_at) "
                    "VALUES ('R80711', $1, '1', $1)", [ts[0]])
        old.execute("INSERT INTO alert_detection VALUES ($1, $1)", [ts[0]])
        old.execute("INSERT INTO detector_days VALUES ('R80711', '2015-01-01', 1, 1, 1, 1, 1, 1)")

    with connect(path, lock_timeout_s=5) as con:
        assert con.sql("SELECT turbine_id, ts FROM scoring_queue").fetchall() == [("R80711", ts[1])]
        assert con.sql("SELECT ts FROM scada ORDER BY rowid").fetchall() == [(t,) for t in ts]
        assert con.sql("SELECT turbine_id, ts, model_version FROM predictions").fetchall() == [
            ("R80711", ts[0], "1")]
        assert con.sql("SELECT count(*) FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY' "
                       "AND table_name IN ('scada', 'predictions')").fetchall() == [(0,)]
        assert con.sql("SELECT count(*) FROM alert_detection").fetchall() == [(0,)]
        assert con.sql("SELECT count(*) FROM detector_days").fetchall() == [(0,)]
        con.execute("INSERT INTO alert_detection (farm_id, scored_through) VALUES ('lhb', now())")
    again = (f"from pathlib import Path; from turbine_monitor.datasets.warehouse import connect\n"
             f"with connect(Path({str(path)!r}), 5) as con: "
             f"print(con.execute('SELECT count(*) FROM alert_detection').fetchone()[0])")  # another process
    assert subprocess.run([sys.executable, "-c", again], capture_output=True, text=True, check=True
                          ).stdout.strip() == "1"


def test_duckdb_holds_at_most_the_memory_limit_and_spills_beyond_it(tmp_path):
    """A sort larger than the limit completes (DuckDB spills it to disk); the limit is
    the process database's setting while it applies."""
    from turbine_monitor.datasets.warehouse import connect

    path = tmp_path / "w.duckdb"
    sort = "SELECT count(*) FROM (SELECT range AS x FROM range(12000000) ORDER BY hash(range) LIMIT 11000000)"
    with connect(path, lock_timeout_s=5, memory_limit="64MB") as con:
        assert con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0] == "61.0 MiB"
        assert con.execute(sort).fetchall()[0][0] == 11_000_000
    with connect(path, lock_timeout_s=5) as con:  # no limit: DuckDB's default again
        assert con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0] != "61.0 MiB"


def test_a_prediction_is_saved_only_for_a_row_still_in_the_queue(tmp_path):
    """Two runs that scored the same rows (a run's save came after another had taken
    them off the queue): the second saves nothing, so each row has one prediction; a
    row that was never queued gets none."""
    from turbine_monitor.datasets.warehouse import connect

    path = tmp_path / "w.duckdb"
    ts = [pd.Timestamp("2015-01-01", tz="UTC") + pd.Timedelta(minutes=10 * i) for i in range(4)]
    with connect(path, lock_timeout_s=5) as con:
        con.executemany("INSERT INTO scoring_queue VALUES ('R80711', $1)", [[t] for t in ts[:3]])
    predictions = DuckDBQueryDataset(filepath=str(path), table="predictions", dequeue="scoring_queue",
                                     lock_timeout_s=5)
    scored = pd.DataFrame({"turbine_id": "R80711", "ts": ts, "expected_power_kw": 100.0, "power_kw": 90.0,
                           "residual_kw": -10.0, "wind_speed_ms": 7.0, "model_version": "1",
                           "unscored_reason": None})
    predictions.save(scored.iloc[:2])
    predictions.save(scored.assign(model_version="2"))  # rows 0 and 1 were taken already
    with connect(path, lock_timeout_s=5) as con:
        assert con.sql("SELECT ts, model_version FROM predictions ORDER BY ts").fetchall() == [
            (ts[0], "1"), (ts[1], "1"), (ts[2], "2")]
        assert con.sql("SELECT count(*) FROM scoring_queue").fetchall() == [(0,)]


def test_an_upsert_replaces_the_rows_of_the_same_key_and_adds_the_new_ones(tmp_path):
    from turbine_monitor.datasets.warehouse import connect

    path = tmp_path / "w.duckdb"
    turbines = DuckDBQueryDataset(filepath=str(path), table="turbines", upsert=True, lock_timeout_s=5)
    fleet = pd.DataFrame({"farm_id": ["north", "north", "south"], "turbine_id": ["A", "B", "C"],
                          "latitude": [48.0, 48.1, 47.0], "longitude": [5.0, 5.1, 4.0],
                          "rated_power_kw": [2050.0, 2050.0, 2000.0]})
    turbines.save(fleet)
    turbines.save(fleet)  # unchanged
    moved = fleet.iloc[1:].assign(latitude=[48.2, 47.0])  # B moved, C as it was
    turbines.save(pd.concat([moved, fleet.iloc[:1].assign(turbine_id="D")]))
    with connect(path, lock_timeout_s=5) as con:
        stored = con.sql("SELECT turbine_id, farm_id, latitude FROM turbines ORDER BY turbine_id").fetchall()
    assert stored == [("A", "north", 48.0), ("B", "north", 48.2), ("C", "south", 47.0), ("D", "north", 48.0)]


def test_a_partitioned_load_with_farms_given_reads_only_those_farms(tmp_path):
    """Three farms with rows to score: `partitions.farms` (the catalog's
    `${runtime_params:farms,null}`) keeps the partitions, their weights and the rows read
    to the farms given; without it every farm's work is read."""
    from turbine_monitor.datasets.warehouse import connect

    path = tmp_path / "w.duckdb"
    ts = [pd.Timestamp("2015-01-01", tz="UTC") + pd.Timedelta(minutes=10 * i) for i in range(3)]
    rows = {"north": 3, "south": 2, "west": 1}
    with connect(path, lock_timeout_s=5) as con:
        for farm, n in rows.items():
            con.execute("INSERT INTO turbines (farm_id, turbine_id) VALUES ($farm, $farm || '-1')",
                        {"farm": farm})
            for t in ts[:n]:
                con.execute("INSERT INTO scada (turbine_id, ts, power_kw, source_file, ingested_at) "
                            "VALUES ($farm || '-1', $ts, 10.0, 'x.csv', now())", {"farm": farm, "ts": t})
                con.execute("INSERT INTO scoring_queue VALUES ($farm || '-1', $ts)", {"farm": farm, "ts": t})

    def to_score(**partitions) -> DuckDBQueryDataset:
        return DuckDBQueryDataset(str(path), query="turbine_monitor.pipelines.inference.rules.rows_to_score",
                                  query_args={"history_hours": 3}, lock_timeout_s=5, partitions={
                                      "work": "turbine_monitor.pipelines.inference.rules.scoring_work",
                                      "max_weight": 4, **partitions})

    assert to_score().work() == [(("north",), 3.0), (("south", "west"), 3.0)]
    assert to_score(farms=None).work() == to_score().work()
    only = to_score(farms=["west", "north", "elsewhere"])
    assert only.work() == [(("north", "west"), 4.0)]
    partitions = only.load()
    assert list(partitions) == ["north +1 farm"]
    loaded = partitions["north +1 farm"]()
    assert sorted(loaded["farm_id"].unique()) == ["north", "west"] and len(loaded) == 4
    assert to_score(farms="south").work() == [(("south",), 2.0)]  # one farm, as `--params farms=south`


@pytest.mark.parametrize("env", ["local", "cluster"])
def test_the_partitioned_catalog_entries_take_the_farms_runtime_parameter(env):
    from kedro.config import OmegaConfigLoader

    from turbine_monitor import settings

    entries = ("scada@to_score", "predictions@to_detect", "alerts@to_report")
    for runtime_params, farms in ((None, None), ({"farms": ["a", "b"]}, ["a", "b"])):
        catalog = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), env=env, runtime_params=runtime_params,
                                    **settings.CONFIG_LOADER_ARGS)["catalog"]
        assert [catalog[entry]["partitions"]["farms"] for entry in entries] == [farms] * 3
