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
lock as closing does.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
from kedro.io import AbstractDataset, DatasetError
from kedro.utils import load_obj

from turbine_monitor.values import AlertUpdate, Skipped, WarehouseQuery

logger = logging.getLogger(__name__)

SCHEMA_SQL = files(__package__).joinpath("schema.sql").read_text()
# DuckDB has no exception type of its own for a lock another process holds: an IOException
# with this message (tests/datasets/test_warehouse.py pins it).
_LOCKED_BY_ANOTHER_PROCESS = "Could not set lock"
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
def connect(filepath: Path, lock_timeout_s: float) -> Iterator[duckdb.DuckDBPyConnection]:
    """The warehouse for one unit of work, created with its schema if missing (the
    schema statements run on a process's first connection to a file)."""
    filepath.parent.mkdir(parents=True, exist_ok=True)
    new_file = not filepath.exists()
    with _unit_of_work:
        database = _attach(filepath, lock_timeout_s)
        con = database.cursor()
        try:
            con.execute(f"USE {_ALIAS}")
            if new_file or filepath not in _schema_created:
                con.execute(SCHEMA_SQL)
                _schema_created.add(filepath)
            yield con
        finally:
            con.close()  # rolls back a transaction left open
            database.execute(f"DETACH {_ALIAS}")


class _WarehouseDataset(AbstractDataset):
    def __init__(self, filepath: str, lock_timeout_s: float = 60.0, metadata: dict | None = None):
        self._filepath = Path(filepath)
        self._lock_timeout_s = float(lock_timeout_s)
        self.metadata = metadata

    def _connect(self):
        return connect(self._filepath, self._lock_timeout_s)

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "lock_timeout_s": self._lock_timeout_s}


class DuckDBQueryDataset(_WarehouseDataset):
    """Loads `columns` (default: all) of `table`, sorted by `order_by`, or the result of
    `query`: the import path of a function that, called with `query_args`, returns a
    `values.WarehouseQuery` (SQL with `$name` parameters, and their values), so that
    the rule deciding which rows to read is a Python function a unit test reaches.
    Saves by inserting into `table` (by column name), ignoring rows whose key is
    already there, in one transaction.

    Example (`conf/base/catalog.yml`)::

        scada@to_score:
          type: turbine_monitor.datasets.DuckDBQueryDataset
          filepath: data/warehouse.duckdb
          query: turbine_monitor.pipelines.inference.rules.rows_to_score
          query_args: {history_hours: 6}

        predictions:
          type: turbine_monitor.datasets.DuckDBQueryDataset
          filepath: data/warehouse.duckdb
          table: predictions
    """

    def __init__(self, filepath: str, table: str | None = None, columns: list[str] | None = None,
                 order_by: list[str] | None = None, query: str | None = None,
                 query_args: dict[str, Any] | None = None, lock_timeout_s: float = 60.0,
                 metadata: dict | None = None):
        super().__init__(filepath, lock_timeout_s, metadata)
        if (query is None) == (table is None):
            raise DatasetError("DuckDBQueryDataset needs either a table or a query")
        self._table, self._columns, self._order_by = table, columns, order_by
        self._query, self._query_args = query, query_args or {}

    def _select(self) -> WarehouseQuery:
        if self._query is not None:
            return load_obj(self._query)(**self._query_args)
        order = f" ORDER BY {', '.join(self._order_by)}" if self._order_by else ""
        return WarehouseQuery(f"SELECT {', '.join(self._columns or ['*'])} FROM {self._table}{order}", {})

    def load(self) -> pd.DataFrame:
        select = self._select()
        with self._connect() as con:
            return con.execute(select.sql, select.parameters).df()

    def save(self, data: pd.DataFrame) -> None:
        if self._query is not None:
            raise DatasetError("DuckDBQueryDataset with a query is read-only")
        with self._connect() as con:
            con.begin()
            con.register("incoming", data)
            con.execute(f"INSERT INTO {self._table} BY NAME SELECT * FROM incoming "
                        "ON CONFLICT DO NOTHING")
            con.commit()

    def _describe(self) -> dict[str, Any]:
        return {**super()._describe(), "table": self._table, "query": self._query,
                "query_args": self._query_args}


class ScadaTableDataset(_WarehouseDataset):
    """The `scada` table. `load()` returns the whole table; `save(batch)` commits one
    ingestion batch to `scada`, `scada_quarantine` and `ingested_files` in a single
    transaction, so a killed run leaves no half-ingested file.

    The batch is a dict of three DataFrames from the ingestion pipeline:
    `files` (one row per source file, counts from validation), `scada` (validated rows,
    unique per turbine and timestamp within the batch) and `quarantine`.
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

    _VALUES = ("power_kw", "wind_speed_ms", "wind_direction_deg", "outdoor_temp_c",
               "pitch_deg", "nacelle_angle_deg", "vane_angle_deg")

    def load(self) -> pd.DataFrame:
        with self._connect() as con:
            return con.sql("SELECT * FROM scada").df()

    def save(self, data: dict[str, pd.DataFrame]) -> None:
        if data["files"].empty:
            return
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
                INSERT INTO scada BY NAME
                SELECT * EXCLUDE (source_row), now() AS ingested_at
                FROM new_rows ANTI JOIN clashes USING (source_file, source_row)""")
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
        for (name,) in skipped:
            logger.info("%s was ingested by another run meanwhile; skipped", name)


class AlertsDataset(_WarehouseDataset):
    """The `alerts` table. `load()` returns it. `save(update)` stores an `AlertUpdate`
    in one transaction: the episodes starting at or after `update.since` are replaced
    by the recomputed ones, keyed by (turbine_id, kind, start_ts): a known episode
    keeps its `opened_at` (and its `updated_at` unless it changed), a new one is
    stamped now; earlier episodes stay as they are; `alert_detection` records
    `update.scored_through`. `save(Skipped(reason))` changes nothing.

    Example (`conf/base/catalog.yml`)::

        alerts:
          type: turbine_monitor.datasets.AlertsDataset
          filepath: data/warehouse.duckdb
    """

    _KEY = ("turbine_id", "kind", "start_ts")

    def load(self) -> pd.DataFrame:
        with self._connect() as con:
            return con.sql("SELECT * FROM alerts ORDER BY start_ts, turbine_id, kind").df()

    def save(self, update: AlertUpdate | Skipped) -> None:
        if isinstance(update, Skipped):
            logger.info("Alerts left as they are: %s.", update.reason)
            return
        key = ", ".join(self._KEY)
        with self._connect() as con:
            con.begin()
            con.register("episodes", update.episodes)
            opened = con.sql(f"SELECT turbine_id, kind, start_ts FROM episodes ANTI JOIN alerts USING ({key})"
                             ).fetchall()
            con.execute("CREATE TEMP TABLE stored AS SELECT * FROM alerts WHERE start_ts >= $since",
                        {"since": update.since})
            con.execute("DELETE FROM alerts WHERE start_ts >= $since", {"since": update.since})
            con.execute(f"""
                INSERT INTO alerts BY NAME
                SELECT e.*, coalesce(s.opened_at, now()) AS opened_at,
                       CASE WHEN s.end_ts IS NOT DISTINCT FROM e.end_ts AND s.records = e.records
                            THEN s.updated_at ELSE now() END AS updated_at
                FROM episodes e LEFT JOIN stored s USING ({key})""")
            con.execute("DROP TABLE stored")
            con.execute("DELETE FROM alert_detection")
            con.execute("INSERT INTO alert_detection (scored_through) VALUES ($at)",
                        {"at": update.scored_through})
            con.commit()
        open_now = update.episodes[update.episodes["end_ts"].isna()]
        open_keys = set(open_now[list(self._KEY)].itertuples(index=False, name=None))
        logger.info("Alerts since %s: %d episodes, %d of them new (%d of those still open).", update.since,
                    len(update.episodes), len(opened), sum(tuple(key) in open_keys for key in opened))
