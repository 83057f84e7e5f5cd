"""The DuckDB warehouse: the file held only per unit of work, lock waits, transactional writes.

DuckDB lets one process at a time open the file for writing and does not wait for
the lock, so every load and save here attaches the file, does its work and detaches
it at once, and retries a held lock with jittered exponential backoff for at most
`lock_timeout_s` seconds before failing with `WarehouseLockedError`. That wait is the
project's one retry layer for warehouse contention: nothing retries a node or a flow
run on top of it.

The file is attached to one in-memory DuckDB database per process, kept for the life
of the process: creating a DuckDB database costs ~15 ms (its catalog of built-in
functions), attaching and detaching a file ~1 ms, and detaching releases the file
lock as closing does. That database holds at most `memory_limit` (its cache of the
file's blocks, indexes, intermediate results; `warehouse.memory_limit` in globals.yml)
and spills beyond it to `<warehouse file>.tmp/`.

Records (`scada`, `predictions`, `detector_evidence`) are written in time order
(`TIME_ORDER`): DuckDB keeps each row group's minimum and maximum per column and skips
the row groups that a filter on `ts` (a constant, or one it derives from a join)
excludes, so a run that reads the last hours of every turbine reads the row groups
that hold them, not the table; a farm's year of backlog written turbine by turbine
would put a whole year in every row group. These tables have no primary key (schema.sql):
on a 4.5 GB file, attaching and detaching took ~8 ms each with the keys of `scada` and
`predictions` (DuckDB loads their indexes' metadata), inserting a live run's 400
predictions 50-70 ms, and DuckDB applies an `INSERT ... ON CONFLICT` in key order
whatever the order given.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
from kedro.io import AbstractDataset, DatasetError
from kedro.utils import load_obj

from turbine_monitor.detection import DAY_COLUMNS, EVIDENCE_COLUMNS, OPEN_EPISODE_COLUMNS
from turbine_monitor.values import (
    AlertUpdate,
    FarmResult,
    Partitions,
    WarehouseQuery,
    group_farms,
)

logger = logging.getLogger(__name__)

SCHEMA_SQL = files(__package__).joinpath("schema.sql").read_text()
# DuckDB has no exception type of its own for a lock another process holds: an IOException
# with this message (tests/datasets/test_warehouse.py pins it).
_LOCKED_BY_ANOTHER_PROCESS = "Could not set lock"
#: The order records are inserted in (see the module docstring).
TIME_ORDER = "ORDER BY ts, turbine_id"
#: One-off changes to a warehouse created by an earlier version, by name, each applied
#: once (recorded in `warehouse_migrations`) after the schema statements.
MIGRATIONS = {
    # A warehouse from before the queue: its rows without a prediction join it.
    "fill scoring_queue": """
        INSERT INTO scoring_queue SELECT s.turbine_id, s.ts FROM scada s
        WHERE NOT EXISTS (SELECT 1 FROM predictions p WHERE p.turbine_id = s.turbine_id AND p.ts = s.ts)""",
    # A warehouse from before `detector_evidence` (and before farms): its next detection
    # reads every farm's predictions once, and keeps the evidence terms from then on.
    "detect alerts anew with kept evidence": "DELETE FROM alert_detection; DELETE FROM detector_days",
    # A warehouse from before records were written in time order and `scada` and
    # `predictions` lost their keys: the record tables rebuilt so (schema.sql; the kept
    # evidence is made anew, below); a one-off, ~1 minute per 20 M rows.
    "records without keys, in time order": f"""
        ALTER TABLE scada RENAME TO scada_before;
        ALTER TABLE predictions RENAME TO predictions_before;
        ALTER TABLE detector_evidence RENAME TO detector_evidence_before;
        {SCHEMA_SQL};
        INSERT INTO scada BY NAME SELECT * FROM scada_before {TIME_ORDER};
        INSERT INTO predictions BY NAME SELECT * FROM predictions_before {TIME_ORDER};
        DROP TABLE scada_before;
        DROP TABLE predictions_before;
        DROP TABLE detector_evidence_before""",
    # A warehouse from before the detector kept running totals per evidence record: its
    # next detection reads every farm's predictions once (as the first did), and keeps
    # them from then on.
    "detector evidence as running totals": f"""
        DROP TABLE detector_evidence;
        {SCHEMA_SQL};
        DELETE FROM alert_detection;
        DELETE FROM detector_days""",
}
#: A read: one query, or several (by name) run in one snapshot; and what it loads.
Select = WarehouseQuery | dict[str, WarehouseQuery]
Loaded = pd.DataFrame | dict[str, pd.DataFrame]
_EVIDENCE = ", ".join(EVIDENCE_COLUMNS)
_FIRST_BACKOFF_S = 0.01
_MAX_BACKOFF_S = 0.5
_ALIAS = "warehouse"


class WarehouseLockedError(DatasetError):
    """Another process held the warehouse for longer than the configured wait."""


_unit_of_work = threading.Lock()  # one attached warehouse at a time in this process
_schema_created: set[Path] = set()  # warehouse files this process has brought up to the schema


@cache
def _process_database() -> duckdb.DuckDBPyConnection:
    """This process's in-memory DuckDB database, which the warehouse file is attached to."""
    database = duckdb.connect(":memory:")
    database.execute("SET GLOBAL TimeZone = 'UTC'")
    return database


# This process's database: its memory limit (None: DuckDB's default) and whether its
# spill folder is set (DuckDB cannot move it once used).
_settings: dict[str, Any] = {"memory_limit": None, "spill_folder": False}


def _limit_memory(database: duckdb.DuckDBPyConnection, filepath: Path, memory_limit: str | None) -> None:
    """Cap what DuckDB holds in this process at `memory_limit` (e.g. "512MB"; None:
    DuckDB's default), spilling beyond it to a folder next to the (first) warehouse file."""
    if not _settings["spill_folder"]:
        database.execute("SET GLOBAL temp_directory = $folder", {"folder": f"{filepath}.tmp"})
        _settings["spill_folder"] = True
    if memory_limit != _settings["memory_limit"]:
        if memory_limit is None:
            database.execute("RESET GLOBAL memory_limit")
        else:
            database.execute("SET GLOBAL memory_limit = $limit", {"limit": memory_limit})
        _settings["memory_limit"] = memory_limit


def _attach(filepath: Path, lock_timeout_s: float) -> duckdb.DuckDBPyConnection:
    """Attach `filepath` (created if missing) as `_ALIAS`, waiting for a held lock."""
    database = _process_database()
    path = str(filepath).replace("'", "''")
    deadline = time.monotonic() + lock_timeout_s
    backoff = _FIRST_BACKOFF_S
    while True:
        try:
            database.execute(f"ATTACH '{path}' AS {_ALIAS}")
            return database
        except (duckdb.IOException, duckdb.ResourceInUseException) as exc:
            # ResourceInUse: another DuckDB database of this process has the file open.
            if isinstance(exc, duckdb.IOException) and _LOCKED_BY_ANOTHER_PROCESS not in str(exc):
                raise
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WarehouseLockedError(
                    f"The warehouse {filepath} stayed locked by another process for "
                    f"{lock_timeout_s:g} s (globals.yml: warehouse.lock_timeout_s). {exc}"
                ) from exc
            time.sleep(min(remaining, backoff * random.uniform(0.5, 1.5)))
            backoff = min(2 * backoff, _MAX_BACKOFF_S)


@contextmanager
def connect(filepath: Path, lock_timeout_s: float,
            memory_limit: str | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """The warehouse for one unit of work, created with its schema if missing (the
    schema statements run on a process's first connection to a file); DuckDB holds at
    most `memory_limit` in this process."""
    filepath.parent.mkdir(parents=True, exist_ok=True)
    new_file = not filepath.exists()
    with _unit_of_work:
        _limit_memory(_process_database(), filepath, memory_limit)
        database = _attach(filepath, lock_timeout_s)
        con = database.cursor()
        try:
            con.execute(f"USE {_ALIAS}")
            if new_file or filepath not in _schema_created:
                _bring_up_to_date(con)
                _schema_created.add(filepath)
            yield con
        finally:
            con.close()  # rolls back a transaction left open
            database.execute(f"DETACH {_ALIAS}")


def _bring_up_to_date(con: duckdb.DuckDBPyConnection) -> None:
    """Apply the schema statements, then the migrations not applied yet."""
    con.execute(SCHEMA_SQL)
    applied = {name for (name,) in con.execute("SELECT name FROM warehouse_migrations").fetchall()}
    for name, sql in MIGRATIONS.items():
        if name not in applied:
            con.begin()
            con.execute(sql)
            con.execute("INSERT INTO warehouse_migrations (name) VALUES ($name)", {"name": name})
            con.commit()


class _WarehouseDataset(AbstractDataset):
    def __init__(self, filepath: str, lock_timeout_s: float = 60.0, memory_limit: str | None = None,
                 metadata: dict | None = None):
        self._filepath = Path(filepath)
        self._lock_timeout_s = float(lock_timeout_s)
        self._memory_limit = memory_limit
        self.metadata = metadata

    def _connect(self):
        return connect(self._filepath, self._lock_timeout_s, self._memory_limit)

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "lock_timeout_s": self._lock_timeout_s,
                "memory_limit": self._memory_limit}


def save_partitions(data: Any, save: Callable[[Any], dict[str, Any]]) -> None:
    """Save `data` with `save` (which returns what it saved, as a small dict). A
    `values.Partitions` is produced and committed one partition at a time; what each
    saved goes to `data.saved`, and so do the farms whose work failed
    (`{"failures": {farm: error}}`: a partition that could not be produced, or the farms
    a `values.FarmResult` names), so that the other partitions and the nodes after this
    one still run (the project's `FarmFailureHooks` fails the run at its end)."""
    if not isinstance(data, Partitions):
        save(data)
        return
    for partition in data.values():
        try:
            result = partition()
        except Exception as error:  # noqa: BLE001 - one partition's failure must not stop the others
            data.saved.append({"failures": dict.fromkeys(partition.farms, error)})
            continue
        if isinstance(result, FarmResult):
            if result.failures:
                data.saved.append({"failures": result.failures})
            result = result.data
        data.saved.append(save(result))


class QueryDatasetBase(AbstractDataset):
    """What a query dataset does whatever the backend (`DuckDBQueryDataset`,
    `postgres.PostgresQueryDataset`): checks its arguments, builds the reads (a table's
    columns, or a rule's `values.WarehouseQuery`), lists and groups the farms with work
    into `values.Partitions`, and saves partitions one at a time. A backend runs the
    reads (`_fetch`, `_fetch_rows`) and the inserts (`_insert`)."""

    def _configure(self, table: str | None, columns: list[str] | None, order_by: list[str] | None,
                   query: str | None, query_args: dict[str, Any] | None, partitions: dict[str, Any] | None,
                   upsert: bool, dequeue: str | None) -> None:
        name = type(self).__name__
        if (query is None) == (table is None):
            raise DatasetError(f"{name} needs either a table or a query")
        if partitions is not None and (query is None or "work" not in partitions):
            raise DatasetError(f"{name} partitions need a query and partitions.work")
        self._table, self._columns, self._order_by = table, columns, order_by
        self._query, self._query_args, self._partitions = query, query_args or {}, partitions
        self._upsert, self._dequeue = upsert, dequeue

    def load(self) -> Loaded | Partitions:
        if self._partitions is None:
            return self._read(**self._query_args)
        groups = [farms for farms, _ in self.work()]
        return Partitions.of(groups, lambda farms: self._read(farms=list(farms), **self._query_args))

    def work(self) -> list[tuple[tuple[str, ...], float]]:
        """The partitions `load()` returns, as their farms and their total weight, from the
        `work` query alone (nothing else is read). With `partitions.farms` (a list of farm
        ids, or a comma-separated string; None: every farm), only those farms' work."""
        work = load_obj(self._partitions["work"])(**self._partitions.get("work_args", {}))
        weights = self._fetch_rows(work)
        if (only := self._partitions.get("farms")) is not None:
            only = set(only.split(",") if isinstance(only, str) else only)
            weights = [(farm, weight) for farm, weight in weights if farm in only]
        total = dict(weights)
        groups = group_farms(weights, float(self._partitions.get("max_weight", 0)))
        return [(farms, float(sum(total[farm] for farm in farms))) for farms in groups]

    def _read(self, **arguments: Any) -> Loaded:
        if self._query is None:
            order = f" ORDER BY {', '.join(self._order_by)}" if self._order_by else ""
            select: Select = WarehouseQuery(
                f"SELECT {', '.join(self._columns or ['*'])} FROM {self._table}{order}", {})
        else:
            select = load_obj(self._query)(**arguments)
        return self._fetch(select)

    def save(self, data: pd.DataFrame | Partitions) -> None:
        if self._query is not None:
            raise DatasetError(f"{type(self).__name__} with a query is read-only")
        save_partitions(data, self._insert)

    def _fetch(self, select: Select) -> Loaded:
        """The result of `select`, or of each query of a dict of them in one snapshot."""
        raise NotImplementedError

    def _fetch_rows(self, query: WarehouseQuery) -> list[tuple]:
        """The rows of `query` as tuples."""
        raise NotImplementedError

    def _insert(self, data: pd.DataFrame) -> dict[str, Any]:
        """Insert `data` in one transaction (see the subclasses); `{"rows": <inserted>}`."""
        raise NotImplementedError

    def _describe_query(self) -> dict[str, Any]:
        return {"table": self._table, "query": self._query, "query_args": self._query_args,
                "partitions": self._partitions}


class ScadaTableDatasetBase(AbstractDataset):
    """What an ingestion batch save does whatever the backend: a backend's `_commit`
    stores the batch in one transaction and returns the files another run ingested
    meanwhile (skipped)."""

    #: The measurements compared to tell a duplicate from a conflict.
    _VALUES = ("power_kw", "wind_speed_ms", "wind_direction_deg", "outdoor_temp_c",
               "pitch_deg", "nacelle_angle_deg", "vane_angle_deg")

    def save(self, data: dict[str, pd.DataFrame]) -> None:
        if data["files"].empty:
            return
        for name in self._commit(data):
            logger.info("%s was ingested by another run meanwhile; skipped", name)

    def _commit(self, data: dict[str, pd.DataFrame]) -> list[str]:
        raise NotImplementedError


class AlertsDatasetBase(AbstractDataset):
    """What an alerts save does whatever the backend: a backend's `_replace` stores one
    `AlertUpdate` in one transaction and returns how many of its episodes are new."""

    _KEY = ("turbine_id", "kind", "start_ts")
    # SQL both backends run alike (`$name` parameters), on the update's frames as tables
    # `updated_<field>`: the stored episodes the update replaces (as table `stored`) ...
    _REPLACED_EPISODES = """
        SELECT a.* FROM alerts a JOIN turbines t USING (turbine_id)
        JOIN updated_farms u ON u.farm_id = t.farm_id
        WHERE a.start_ts >= u.since OR EXISTS (  -- an open episode continued
            SELECT 1 FROM updated_episodes e
            WHERE e.turbine_id = a.turbine_id AND e.kind = a.kind AND e.start_ts = a.start_ts)"""
    _DELETE_REPLACED = """
        DELETE FROM alerts a USING stored s
        WHERE a.turbine_id = s.turbine_id AND a.kind = s.kind AND a.start_ts = s.start_ts"""
    # ... the farms' `alert_detection` rows to be ...
    _DETECTION_STATE = """
        SELECT u.farm_id, u.scored_through, u.resume_from,
               least(min(d.report_from), u.since) AS report_from
        FROM updated_farms u LEFT JOIN alert_detection d USING (farm_id)
        GROUP BY u.farm_id, u.scored_through, u.resume_from, u.since"""
    # ... the kept evidence the update may replace (as table `stored_evidence`), the
    # stored records it no longer has, the records before how far a next run may reach
    # back, and the farms' kept open episodes.
    _STORED_EVIDENCE = """
        SELECT e.* FROM detector_evidence e JOIN turbines t USING (turbine_id)
        JOIN updated_farms u USING (farm_id) WHERE e.ts >= $earliest AND e.ts >= u.since"""
    _DELETE_GONE_EVIDENCE = f"""
        DELETE FROM detector_evidence e USING (SELECT {_EVIDENCE} FROM stored_evidence
                                              EXCEPT SELECT {_EVIDENCE} FROM updated_evidence) gone
        WHERE e.ts >= $earliest AND e.turbine_id = gone.turbine_id AND e.ts = gone.ts"""
    _TRIM_EVIDENCE = """
        DELETE FROM detector_evidence e USING (
            SELECT e.turbine_id, max(e.ordinal) AS ordinal FROM detector_evidence e
            JOIN turbines t USING (turbine_id) JOIN (  -- how far a next run may reach back
                SELECT u.farm_id, least(u.since, min(o.start_ts)) AS ts FROM updated_farms u
                LEFT JOIN (SELECT t.farm_id, o.start_ts FROM updated_episodes o JOIN turbines t
                           USING (turbine_id) WHERE o.end_ts IS NULL) o USING (farm_id)
                GROUP BY u.farm_id, u.since) reach USING (farm_id)
            WHERE e.ts < reach.ts GROUP BY e.turbine_id) last
        WHERE e.turbine_id = last.turbine_id AND e.ordinal <= last.ordinal - $kept"""
    _DELETE_OPEN_EPISODES = """
        DELETE FROM detector_episodes WHERE turbine_id IN (
            SELECT turbine_id FROM turbines JOIN updated_farms USING (farm_id))"""

    def save(self, data: AlertUpdate | Partitions) -> None:
        save_partitions(data, self._store)

    def _store(self, update: AlertUpdate | None) -> dict[str, Any]:
        if update is None or update.farms.empty:
            return {"farms": 0, "episodes": 0, "new": 0, "open": 0}
        opened = self._replace(update)
        farms, episodes = update.farms["farm_id"], update.episodes
        saved = {"farms": len(farms), "episodes": len(episodes), "new": opened,
                 "open": int(episodes["end_ts"].isna().sum())}
        logger.info("Alerts of %s: %d episodes recomputed, %d of them new; %d open.",
                    farms.iloc[0] if len(farms) == 1 else f"{len(farms)} farms", saved["episodes"],
                    saved["new"], saved["open"])
        return saved

    def _replace(self, update: AlertUpdate) -> int:
        raise NotImplementedError


class KpiDailyDatasetBase(AbstractDataset):
    """What a `kpi_daily` save does whatever the backend: a backend's `_replace` stores
    one report in one transaction."""

    # SQL both backends run alike, on the report's frames as tables `reported_farms` and
    # `reported_days`: the farms' days replaced, and their `report_from` cleared.
    _DELETE_REPLACED_DAYS = """
        DELETE FROM kpi_daily k USING reported_farms f
        WHERE k.farm_id = f.farm_id AND (f.from_ts IS NULL OR k.day >= CAST(f.from_ts AS DATE))"""
    _CLEAR_REPORT_FROM = """
        UPDATE alert_detection d SET report_from = NULL FROM reported_farms f
        WHERE d.farm_id = f.farm_id AND d.report_from = f.report_from
          AND d.updated_at = f.detected_at"""

    def save(self, data: dict[str, pd.DataFrame] | Partitions) -> None:
        save_partitions(data, self._store)

    def _store(self, report: dict[str, pd.DataFrame]) -> dict[str, Any]:
        if report["farms"].empty:
            return {"farms": 0, "days": 0}
        self._replace(report)
        saved = {"farms": len(report["farms"]), "days": len(report["days"])}
        logger.info("KPIs of %d farm(s): %d turbine days reported.", saved["farms"], saved["days"])
        return saved

    def _replace(self, report: dict[str, pd.DataFrame]) -> None:
        raise NotImplementedError


class DuckDBQueryDataset(_WarehouseDataset, QueryDatasetBase):
    """Loads `columns` (default: all) of `table`, sorted by `order_by`, or the result of
    `query`: the import path of a function that, called with `query_args`, returns a
    `values.WarehouseQuery` (SQL with `$name` parameters, and their values) or a dict of
    them (then loaded in one snapshot as a dict of DataFrames), so that the rule deciding
    which rows to read is a Python function a unit test reaches.

    With `partitions`, `load()` returns `values.Partitions`: `work` (the import path of
    a function called with `work_args`, returning the query that lists `farm_id` and
    `weight`, the farms with work) is run, the farms are grouped in order into
    partitions of at most `max_weight` (0: one farm each), and each partition loads the
    `query` called with `farms=[...]` too, when it is produced. `farms` (a list; None:
    all) keeps only those farms' work: a scoring flow run of a backlog's partition sets it
    from its runtime parameters.

    Saves by inserting into `table` (by column name) in one transaction, replacing the
    rows of the same key with `upsert` (a row stored as it is already is not written
    again). With `dequeue` (a queue table of (turbine_id, ts) keys), only the rows
    still in the queue are inserted, in time order, and leave it in
    the same transaction: each row is saved once, by the first run to take it off the
    queue, with no key on `table` (the warehouse has one writer at a time). Saves
    `values.Partitions` one partition and transaction at a time (`save_partitions`).

    Example (`conf/base/catalog.yml`)::

        scada@to_score:
          type: turbine_monitor.datasets.DuckDBQueryDataset
          filepath: data/warehouse.duckdb
          query: turbine_monitor.pipelines.inference.rules.rows_to_score
          query_args: {history_hours: 6}
          partitions:
            work: turbine_monitor.pipelines.inference.rules.scoring_work
            max_weight: 250000
            farms: ${runtime_params:farms,null}

        predictions@table:
          type: turbine_monitor.datasets.DuckDBQueryDataset
          filepath: data/warehouse.duckdb
          table: predictions
          dequeue: scoring_queue
    """

    def __init__(self, filepath: str, table: str | None = None, columns: list[str] | None = None,
                 order_by: list[str] | None = None, query: str | None = None,
                 query_args: dict[str, Any] | None = None, partitions: dict[str, Any] | None = None,
                 upsert: bool = False, dequeue: str | None = None, lock_timeout_s: float = 60.0,
                 memory_limit: str | None = None, metadata: dict | None = None):
        super().__init__(filepath, lock_timeout_s, memory_limit, metadata)
        self._configure(table, columns, order_by, query, query_args, partitions, upsert, dequeue)

    def _fetch_rows(self, query: WarehouseQuery) -> list[tuple]:
        with self._connect() as con:
            return con.execute(query.sql, query.parameters).fetchall()

    def _fetch(self, select: Select) -> Loaded:
        with self._connect() as con:
            if isinstance(select, WarehouseQuery):
                return con.execute(select.sql, select.parameters).df()
            con.begin()  # one snapshot for every query
            frames = {name: con.execute(query.sql, query.parameters).df() for name, query in select.items()}
            con.commit()
            return frames

    def _insert(self, data: pd.DataFrame) -> dict[str, Any]:
        if data.empty:
            return {"rows": 0}
        with self._connect() as con:
            con.begin()
            con.register("incoming", data)
            if self._upsert:  # rows stored as they are already are not written again
                columns = ", ".join(f'"{column}"' for column in data.columns)
                inserted = con.execute(f"""
                    INSERT OR REPLACE INTO {self._table} BY NAME SELECT {columns} FROM incoming
                    EXCEPT SELECT {columns} FROM {self._table}""").fetchone()[0]
            elif self._dequeue:
                inserted = con.execute(f"""
                    INSERT INTO {self._table} BY NAME
                    SELECT i.* FROM incoming i SEMI JOIN {self._dequeue} q USING (turbine_id, ts)
                    {TIME_ORDER}""").fetchone()[0]
                con.execute(f"DELETE FROM {self._dequeue} q USING incoming i "
                            "WHERE q.turbine_id = i.turbine_id AND q.ts = i.ts")
            else:
                con.execute(f"INSERT INTO {self._table} BY NAME SELECT * FROM incoming")
                inserted = len(data)
            con.commit()
        return {"rows": inserted}

    def _describe(self) -> dict[str, Any]:
        return {**super()._describe(), **self._describe_query()}


class ScadaTableDataset(_WarehouseDataset, ScadaTableDatasetBase):
    """The `scada` table. `load()` returns the whole table; `save(batch)` commits one
    ingestion batch to `scada`, `scada_quarantine` and `ingested_files` in a single
    transaction, so a killed run leaves no half-ingested file.

    The batch is a dict of three DataFrames from the ingestion pipeline:
    `files` (one row per source file, counts from validation), `scada` (validated rows,
    unique per turbine and timestamp within the batch) and `quarantine`.
    The accepted rows also join `scoring_queue` (the rows scoring has to do).
    Inside the transaction, against what the warehouse holds by then:
    a file whose checksum is already recorded is skipped whole (another process won
    the race); a row identical to one already in `scada` is a duplicate (a no-op);
    a row with the same turbine and timestamp but other values is quarantined as
    `duplicate_conflict` (the first one kept). The file counts are updated to match,
    so `rows_read = rows_accepted + rows_duplicate + rows_quarantined` always holds.

    Example (`conf/base/catalog.yml`)::

        scada@batch:
          type: turbine_monitor.datasets.ScadaTableDataset
          filepath: data/warehouse.duckdb
    """

    def load(self) -> pd.DataFrame:
        with self._connect() as con:
            return con.sql("SELECT * FROM scada").df()

    def _commit(self, data: dict[str, pd.DataFrame]) -> list[str]:
        same_values = " AND ".join(f"b.{c} IS NOT DISTINCT FROM s.{c}" for c in self._VALUES)
        record = ", ".join(f"{c}: b.{c}" for c in ("turbine_id", "ts", *self._VALUES))
        with self._connect() as con:
            con.begin()
            for name, frame in data.items():
                con.register(f"batch_{name}", frame)
            con.execute("""
                CREATE TEMP TABLE new_files AS
                SELECT * FROM batch_files ANTI JOIN ingested_files USING (checksum)""")
            con.execute("""
                CREATE TEMP TABLE new_rows AS
                SELECT * FROM batch_scada SEMI JOIN new_files USING (source_file)""")
            con.execute(f"""
                CREATE TEMP TABLE clashes AS
                SELECT b.source_file, b.source_row, ({same_values}) AS identical,
                       s.source_file AS kept_from, to_json({{{record}}}) AS raw_record
                FROM new_rows b JOIN scada s USING (turbine_id, ts)""")
            con.execute("""
                CREATE TEMP TABLE accepted AS
                SELECT * EXCLUDE (source_row), now() AS ingested_at
                FROM new_rows ANTI JOIN clashes USING (source_file, source_row)""")
            con.execute(f"INSERT INTO scada BY NAME SELECT * FROM accepted {TIME_ORDER}")
            con.execute(f"INSERT INTO scoring_queue SELECT turbine_id, ts FROM accepted {TIME_ORDER}")
            con.execute("""
                INSERT INTO scada_quarantine BY NAME
                SELECT q.*, now() AS quarantined_at
                FROM batch_quarantine q SEMI JOIN new_files USING (source_file)
                UNION ALL BY NAME
                SELECT source_file, source_row, 'duplicate_conflict' AS reason,
                       'differs from the row already ingested from ' || kept_from AS detail,
                       raw_record, now() AS quarantined_at
                FROM clashes WHERE NOT identical""")
            con.execute("""
                INSERT INTO ingested_files BY NAME
                SELECT f.* REPLACE (
                           f.rows_accepted - coalesce(c.n_identical, 0)
                               - coalesce(c.n_conflict, 0) AS rows_accepted,
                           f.rows_duplicate + coalesce(c.n_identical, 0) AS rows_duplicate,
                           f.rows_quarantined + coalesce(c.n_conflict, 0) AS rows_quarantined),
                       now() AS ingested_at
                FROM new_files f LEFT JOIN (
                    SELECT source_file, count(*) FILTER (identical) AS n_identical,
                           count(*) FILTER (NOT identical) AS n_conflict
                    FROM clashes GROUP BY source_file) c USING (source_file)""")
            skipped = con.sql("SELECT source_file FROM batch_files ANTI JOIN new_files "
                              "USING (checksum)").fetchall()
            con.commit()
        return [name for (name,) in skipped]


class AlertsDataset(_WarehouseDataset, AlertsDatasetBase):
    """The `alerts` table. `load()` returns it. `save(update)` stores an `AlertUpdate`
    (some farms' detection) in one transaction; `values.Partitions` of them one
    transaction per partition (`save_partitions`). For each farm, the episodes of its
    turbines starting at or after its `since`, and the open ones it continued, are
    replaced by the recomputed ones, keyed by (turbine_id, kind, start_ts): a known
    episode keeps its `opened_at` (and its `updated_at` unless it changed), a new one is
    stamped now; earlier episodes stay as they are. What the detector continues from is
    replaced alike: `detector_days` takes the update's day sums, `detector_evidence` its
    evidence records from `since` on (keeping, per turbine, its last
    `kept_evidence_records` before `since` or the start of an open alert of its farm, if
    earlier: a later run reads no further back), `detector_episodes` the farm's open
    underperformance episodes, and `alert_detection` the farm's `scored_through` and
    `resume_from`, and its `report_from` moves back to `since` if earlier (reporting
    recomputes the days from there on, and clears it).

    Example (`conf/base/catalog.yml`)::

        alerts:
          type: turbine_monitor.datasets.AlertsDataset
          filepath: data/warehouse.duckdb
          kept_evidence_records: 300
    """

    def __init__(self, filepath: str, kept_evidence_records: int, lock_timeout_s: float = 60.0,
                 memory_limit: str | None = None, metadata: dict | None = None):
        super().__init__(filepath, lock_timeout_s, memory_limit, metadata)
        self._kept_evidence_records = int(kept_evidence_records)

    def load(self) -> pd.DataFrame:
        with self._connect() as con:
            return con.sql("SELECT * FROM alerts ORDER BY start_ts, turbine_id, kind").df()

    def _replace(self, update: AlertUpdate) -> int:
        key = ", ".join(self._KEY)
        with self._connect() as con:
            con.begin()
            for name in ("farms", "episodes", "days", "evidence", "open_episodes"):
                con.register(f"updated_{name}", getattr(update, name))
            opened = con.execute(f"SELECT count(*) FROM updated_episodes ANTI JOIN alerts USING ({key})"
                                 ).fetchone()[0]
            con.execute(f"CREATE OR REPLACE TEMP TABLE stored AS {self._REPLACED_EPISODES}")
            con.execute(self._DELETE_REPLACED)
            con.execute(f"""
                INSERT INTO alerts BY NAME
                SELECT e.*, coalesce(s.opened_at, now()) AS opened_at,
                       CASE WHEN s.end_ts IS NOT DISTINCT FROM e.end_ts AND s.records = e.records
                            THEN s.updated_at ELSE now() END AS updated_at
                FROM updated_episodes e LEFT JOIN stored s USING ({key})""")
            con.execute("DROP TABLE stored")
            self._store_detector_state(con, update)
            con.execute(f"CREATE OR REPLACE TEMP TABLE detection_state AS {self._DETECTION_STATE}")
            con.execute("DELETE FROM alert_detection WHERE farm_id IN (SELECT farm_id FROM updated_farms)")
            con.execute("INSERT INTO alert_detection BY NAME SELECT * FROM detection_state")
            con.execute("DROP TABLE detection_state")
            con.commit()
        return opened

    def _store_detector_state(self, con: duckdb.DuckDBPyConnection, update: AlertUpdate) -> None:
        """Replace what the detector continues from (`update` registered as `updated_*`).
        Only what changed is written: a farm recomputed from an earlier point (an open
        stop, a late record) brings its records since then back, and most come out as they
        were. The constant bound lets the scans skip the row groups before every farm's
        `since`."""
        earliest = update.farms["since"].min()
        days, evidence = ", ".join(DAY_COLUMNS), ", ".join(EVIDENCE_COLUMNS)
        open_episodes = ", ".join(OPEN_EPISODE_COLUMNS)
        con.execute(f"""
            INSERT OR REPLACE INTO detector_days BY NAME
            SELECT {days} FROM updated_days
            EXCEPT SELECT {days} FROM detector_days WHERE day >= CAST($earliest AS DATE)""",
                    {"earliest": earliest})
        con.execute(f"CREATE OR REPLACE TEMP TABLE stored_evidence AS {self._STORED_EVIDENCE}",
                    {"earliest": earliest})
        con.execute(self._DELETE_GONE_EVIDENCE, {"earliest": earliest})
        con.execute(f"""
            INSERT INTO detector_evidence BY NAME SELECT * FROM (
                SELECT {evidence} FROM updated_evidence EXCEPT SELECT {evidence} FROM stored_evidence)
            {TIME_ORDER}""")
        con.execute("DROP TABLE stored_evidence")
        con.execute(self._TRIM_EVIDENCE, {"kept": self._kept_evidence_records})
        con.execute(self._DELETE_OPEN_EPISODES)
        con.execute(f"INSERT INTO detector_episodes BY NAME SELECT {open_episodes} "
                    "FROM updated_open_episodes")


class KpiDailyDataset(_WarehouseDataset, KpiDailyDatasetBase):
    """The `kpi_daily` table. `load()` returns it. `save(report)` stores a report of some
    farms (a dict of DataFrames: `farms` with `farm_id`, `from_ts`, `report_from`,
    `detected_at` as the reporting run read them, and `days`, the KPI rows) in one
    transaction; `values.Partitions` of them one transaction per partition
    (`save_partitions`). Each farm's rows from the day of its `from_ts` on (NULL: all)
    are replaced by its `days`, and its `alert_detection.report_from` is cleared if no
    alert detection stored the farm since the run read it (`report_from` and `updated_at`
    as read): otherwise the next run reports from the new point.

    Example (`conf/base/catalog.yml`)::

        kpi_daily:
          type: turbine_monitor.datasets.KpiDailyDataset
          filepath: data/warehouse.duckdb
    """

    def load(self) -> pd.DataFrame:
        with self._connect() as con:
            return con.sql("SELECT * FROM kpi_daily ORDER BY farm_id, turbine_id, day").df()

    def _replace(self, report: dict[str, pd.DataFrame]) -> None:
        with self._connect() as con:
            con.begin()
            con.register("reported_farms", report["farms"])
            con.register("reported_days", report["days"])
            con.execute(self._DELETE_REPLACED_DAYS)
            con.execute("INSERT INTO kpi_daily BY NAME SELECT * FROM reported_days")
            con.execute(self._CLEAR_REPORT_FROM)
            con.commit()
