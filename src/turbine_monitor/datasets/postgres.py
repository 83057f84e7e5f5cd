"""The PostgreSQL warehouse (the cluster profile, `conf/cluster/`): the datasets of
warehouse.py on a PostgreSQL database that several workers write at once. Same tables and
columns (schema.sql itself), same loads (the same pandas dtypes as DuckDB's: the nodes
are shared) and same saves; what differs is how several writers stay exact.

- Every record table has its unique key (schema_postgres.sql: `scada`, `predictions`,
  `scoring_queue`, `detector_evidence` on (turbine_id, ts); `ingested_files` on
  its checksum, `alert_detection` on its farm, as on DuckDB the others), and the
  inserts that may meet a row another worker wrote skip it (`ON CONFLICT DO NOTHING`) or
  replace it (upserts).
- Where a save's result depends on what the tables hold, its transaction first takes a
  transaction-scoped advisory lock, so that such saves run one after the other and each
  sees what the previous committed (READ COMMITTED reads the latest commit per
  statement): one lock for ingestion (a file ingested once, duplicates and conflicts
  counted against the `scada` rows of every earlier batch), one per farm for alerts
  (its episodes and detector state replaced) and for `kpi_daily`.
- Scoring takes its rows off `scoring_queue` with `DELETE ... RETURNING` and inserts
  the predictions of the rows it took: of two workers scoring the same rows, the second
  waits for the first's commit and then takes nothing.

Each load or save opens a connection (the URL as libpq reads it: password from the URL,
`PGPASSWORD` or `~/.pgpass`), with `TimeZone` UTC and `lock_timeout` set to the
dataset's `lock_timeout_s` (a lock held longer fails with `WarehouseLockedError`), and
closes it. A refused connection (a server restarting) is retried with jittered
exponential backoff for `connect_timeout_s`, then fails with `WarehouseUnavailableError`;
so does a connection lost during a unit of work, whose transaction then committed
nothing. DataFrames are written with COPY into temporary tables, then set-based SQL.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import files
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from kedro.io import DatasetError
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.numeric import FloatLoader
from psycopg.types.string import StrDumper

from turbine_monitor.detection import DAY_COLUMNS, EVIDENCE_COLUMNS, OPEN_EPISODE_COLUMNS
from turbine_monitor.values import AlertUpdate, WarehouseQuery

from . import warehouse
from .warehouse import (
    MIGRATIONS,
    TIME_ORDER,
    AlertsDatasetBase,
    KpiDailyDatasetBase,
    Loaded,
    QueryDatasetBase,
    ScadaTableDatasetBase,
    Select,
    WarehouseLockedError,
)

#: The schema: schema.sql's tables and views (DuckDB's DOUBLE is PostgreSQL's DOUBLE
#: PRECISION; the rest of it is SQL both read alike), then the keys and indexes of
#: schema_postgres.sql.
SCHEMA_SQL = (re.sub(r"\bDOUBLE\b(?! PRECISION)", "DOUBLE PRECISION", warehouse.SCHEMA_SQL)
              + files(__package__).joinpath("schema_postgres.sql").read_text())
#: The advisory locks' first key (the project's), and the second per purpose: the schema
#: (session-scoped), ingestion; alerts and kpi_daily take one per farm (its name hashed).
_LOCK_SPACE = 0x7475_7262  # "turb"
_SCHEMA_LOCK, _INGESTION_LOCK = 1, 2
#: Connection errors that waiting does not cure.
_PERMANENT = re.compile(r"authentication failed|no password supplied|does not exist|pg_hba\.conf|"
                        r"invalid (?:URI|connection option|integer value)|missing \"=\"", re.IGNORECASE)
_FIRST_BACKOFF_S = 0.05
_MAX_BACKOFF_S = 1.0
_PARAMETER = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


class WarehouseUnavailableError(DatasetError):
    """The PostgreSQL warehouse refused connections for longer than the configured wait,
    or the connection was lost during a unit of work (whose transaction committed
    nothing)."""


_schema_guard = threading.Lock()
_schema_ready: set[str] = set()  # databases this process has brought up to the schema


def _where(url: str) -> str:
    """The database of `url` for a message, without its password."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "the warehouse (invalid URL)"
    host = info.get("host", "localhost")
    return f"the warehouse {info.get('user', '')}{'@' if info.get('user') else ''}{host}:" \
           f"{info.get('port', 5432)}/{info.get('dbname', '')}"


def _open(url: str, connect_timeout_s: float) -> psycopg.Connection:
    """A connection to `url`, retrying refused ones for `connect_timeout_s`."""
    deadline = time.monotonic() + connect_timeout_s
    backoff = _FIRST_BACKOFF_S
    while True:
        remaining = deadline - time.monotonic()
        try:
            con = psycopg.connect(url, autocommit=True, connect_timeout=max(2, int(remaining) + 1),
                                  application_name="turbine-monitor")
            break
        except psycopg.OperationalError as exc:
            if _PERMANENT.search(str(exc)):
                raise WarehouseUnavailableError(f"Cannot connect to {_where(url)}: {exc}") from exc
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WarehouseUnavailableError(
                    f"{_where(url)} refused connections for {connect_timeout_s:g} s "
                    f"(globals.yml: warehouse.connect_timeout_s). {exc}".strip()) from exc
            time.sleep(min(remaining, backoff * random.uniform(0.5, 1.5)))
            backoff = min(2 * backoff, _MAX_BACKOFF_S)
    con.adapters.register_dumper(str, StrDumper)  # strings typed text: unnest($farms) resolves
    con.adapters.register_loader("numeric", FloatLoader)  # sum(bigint) as DuckDB's HUGEINT: a float
    return con


def _bring_up_to_date(con: psycopg.Connection, url: str) -> None:
    """Apply the schema once per process and database (and server start: a URL may name
    a new server), under a session advisory lock (two processes starting together would
    race on `CREATE TABLE IF NOT EXISTS`), and record DuckDB's migrations as applied:
    the schema is their result already."""
    started = con.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
    database = f"{url} {started.isoformat()}"
    with _schema_guard:
        if database in _schema_ready:
            return
        con.execute("SELECT pg_advisory_lock(%s, %s)", (_LOCK_SPACE, _SCHEMA_LOCK))
        try:
            con.execute(SCHEMA_SQL)
            con.execute("INSERT INTO warehouse_migrations (name) SELECT unnest(%s::text[]) "
                        "ON CONFLICT DO NOTHING", (list(MIGRATIONS),))
        finally:
            if not con.broken:
                con.execute("SELECT pg_advisory_unlock(%s, %s)", (_LOCK_SPACE, _SCHEMA_LOCK))
        _schema_ready.add(database)


@contextmanager
def connect(url: str, lock_timeout_s: float = 60.0, connect_timeout_s: float = 30.0
            ) -> Iterator[psycopg.Connection]:
    """A connection to the warehouse for one unit of work (autocommit: a transaction is
    `con.transaction()`), its schema created on a process's first connection to the
    database; a lock wait beyond `lock_timeout_s` raises `WarehouseLockedError`, a lost
    connection `WarehouseUnavailableError`."""
    con = _open(url, connect_timeout_s)
    try:
        con.execute(f"SET TimeZone = 'UTC'; SET lock_timeout = {int(lock_timeout_s * 1000)}")
        _bring_up_to_date(con, url)
        yield con
    except errors.LockNotAvailable as exc:
        raise WarehouseLockedError(
            f"A lock on {_where(url)} stayed held by another worker for {lock_timeout_s:g} s "
            f"(globals.yml: warehouse.lock_timeout_s); nothing was written. {exc}") from exc
    except psycopg.OperationalError as exc:
        if not con.broken:
            raise
        raise WarehouseUnavailableError(
            f"The connection to {_where(url)} was lost during a unit of work; its transaction "
            f"committed nothing. {exc}".strip()) from exc
    finally:
        con.close()


def _sql(query: str) -> str:
    """`$name` parameters as psycopg's `%(name)s` (a literal % doubled)."""
    return _PARAMETER.sub(r"%(\1)s", query.replace("%", "%%"))


def _value(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple, np.ndarray, pd.Index, pd.Series)):
        return [_value(item) for item in value]
    if value is pd.NaT or (isinstance(value, float) and np.isnan(value)):
        return None
    return value


def _execute(con: psycopg.Connection, query: WarehouseQuery) -> psycopg.Cursor:
    return con.execute(_sql(query.sql), {name: _value(v) for name, v in query.parameters.items()})


# Loads: DuckDB's pandas types ------------------------------------------------------------

_INTEGERS = {"int2": ("int16", "Int16"), "int4": ("int32", "Int32"), "int8": ("int64", "Int64"),
             "oid": ("int64", "Int64")}
_FLOATS = {"float4", "float8", "numeric"}


def _column(values: tuple, typname: str) -> Any:
    """A result column as DuckDB's `.df()` gives it: integers as int64 (Int64 with
    NULLs), floats as float64 (NaN), booleans as bool (boolean with NULLs), timestamps
    as datetime64[us, UTC], dates as datetime64[us], strings as pandas' inferred type
    (object when empty or all NULL)."""
    has_null = None in values
    if typname in _INTEGERS:
        plain, nullable = _INTEGERS[typname]
        return pd.array(list(values), dtype=nullable) if has_null else np.array(values, dtype=plain)
    if typname in _FLOATS:
        return np.array(values, dtype="float64")
    if typname == "bool":
        return pd.array(list(values), dtype="boolean") if has_null else np.array(values, dtype=bool)
    if typname == "timestamptz":
        return pd.to_datetime(pd.Series(values, dtype=object), utc=True).astype("datetime64[us, UTC]")
    if typname in ("timestamp", "date"):
        return pd.to_datetime(pd.Series(values, dtype=object)).astype("datetime64[us]")
    if all(v is None for v in values):
        return np.array(values, dtype=object)
    return pd.Series(list(values))


def _frame(cursor: psycopg.Cursor) -> pd.DataFrame:
    """The cursor's result as a DataFrame with DuckDB's column types."""
    rows = cursor.fetchall()
    types = cursor.adapters.types
    names, columns = [], []
    transposed = zip(*rows, strict=True) if rows else [()] * len(cursor.description)
    for description, values in zip(cursor.description, transposed, strict=True):
        info = types.get(description.type_code)
        names.append(description.name)
        columns.append(_column(values, info.name if info else "text"))
    frame = pd.DataFrame(dict(zip(range(len(names)), columns, strict=True)), index=pd.RangeIndex(len(rows)))
    frame.columns = names
    return frame


# Saves: DataFrames into temporary tables -------------------------------------------------

_table_types: dict[str, dict[str, str]] = {}


def _columns_of(con: psycopg.Connection, table: str) -> dict[str, str]:
    """The columns of `table` and their type names (`pg_type.typname`), in order."""
    if table not in _table_types:
        rows = con.execute("""
            SELECT a.attname, t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
            WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
            ORDER BY a.attnum""", (table,)).fetchall()
        _table_types[table] = dict(rows)
    return _table_types[table]


def _inferred(series: pd.Series) -> str:
    """A PostgreSQL type for a column that its target table does not have."""
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        return "timestamptz"
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return "timestamp"
    if pd.api.types.is_bool_dtype(series.dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(series.dtype):
        return "int8"
    if pd.api.types.is_float_dtype(series.dtype):
        return "float8"
    first = series.dropna()
    first = first.iloc[0] if len(first) else None
    if isinstance(first, dt.datetime):
        return "timestamptz"
    if isinstance(first, dt.date):
        return "date"
    return "text"


def _values(series: pd.Series, typname: str) -> list:
    """The column as Python values for COPY into a `typname` column (missing: None)."""
    missing = series.isna().to_numpy()
    if typname == "timestamptz":
        stamps = pd.to_datetime(series, utc=True)
        values = list(stamps.dt.to_pydatetime())
    elif typname == "timestamp":
        values = list(pd.to_datetime(series).dt.to_pydatetime())
    elif typname == "date":
        values = list(pd.to_datetime(series).dt.date)
    elif typname in _FLOATS:
        values = series.to_numpy(dtype="float64", na_value=np.nan).tolist()
    elif typname in _INTEGERS:
        values = series.astype("Int64").to_numpy(dtype="int64", na_value=0).tolist()
    elif typname == "bool":
        values = series.astype("boolean").to_numpy(dtype=bool, na_value=False).tolist()
    else:
        values = [v if isinstance(v, str) else json.dumps(v) if isinstance(v, (dict, list)) else str(v)
                  for v in series.astype(object).tolist()]
    for i in np.flatnonzero(missing):
        values[i] = None
    return values


def _stage(con: psycopg.Connection, name: str, frame: pd.DataFrame, like: str | None = None) -> list[str]:
    """`frame` as the temporary table `name` (dropped at commit), each column typed as
    the column of the same name of table `like`, or as its pandas type says; returns
    its columns. Written with binary COPY; NaN, NaT and NA are NULL (as DuckDB reads
    them)."""
    known = _columns_of(con, like) if like else {}
    columns = [str(column) for column in frame.columns]
    types = [known.get(column) or _inferred(frame[column]) for column in columns]
    definition = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(column), sql.SQL(typname))
                                    for column, typname in zip(columns, types, strict=True))
    con.execute(sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(sql.Identifier(name), definition))
    data = [_values(frame[column], typname) for column, typname in zip(columns, types, strict=True)]
    with con.cursor() as cursor, cursor.copy(
            sql.SQL("COPY {} FROM STDIN (FORMAT BINARY)").format(sql.Identifier(name))) as copy:
        copy.set_types(types)
        for row in zip(*data, strict=True):
            copy.write_row(row)
    return columns


def _names(columns: list[str] | tuple[str, ...], prefix: str = "") -> str:
    return ", ".join(f'{prefix}"{column}"' for column in columns)


def _lock_farms(con: psycopg.Connection, purpose: str, farms: pd.Series) -> None:
    """Take the transaction-scoped advisory lock of `purpose` of each farm, in order
    (two saves of overlapping farms cannot deadlock)."""
    for farm in sorted(set(farms.dropna().astype(str))):
        con.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_SPACE, f"{purpose}:{farm}"))


class _PostgresDataset:
    """A dataset on a PostgreSQL warehouse: its URL and bounds."""

    def __init__(self, url: str, lock_timeout_s: float = 60.0, connect_timeout_s: float = 30.0,
                 metadata: dict | None = None):
        if not url:
            raise DatasetError("The PostgreSQL warehouse needs a URL (globals.yml: warehouse.url, from "
                               "TURBINE_MONITOR_WAREHOUSE_URL in the cluster profile)")
        self._url = str(url)
        self._lock_timeout_s = float(lock_timeout_s)
        self._connect_timeout_s = float(connect_timeout_s)
        self.metadata = metadata

    def _connect(self):
        return connect(self._url, self._lock_timeout_s, self._connect_timeout_s)

    def _describe(self) -> dict[str, Any]:
        return {"url": _where(self._url), "lock_timeout_s": self._lock_timeout_s,
                "connect_timeout_s": self._connect_timeout_s}

    def _load_table(self, query: str) -> pd.DataFrame:
        with self._connect() as con:
            return _frame(con.execute(query))


class PostgresQueryDataset(_PostgresDataset, QueryDatasetBase):
    """`DuckDBQueryDataset` on PostgreSQL: the same arguments but `url` (and the
    connection bounds) for `filepath` and `memory_limit`, the same loads (a query's
    `$name` parameters bound by psycopg; a dict of queries read in one REPEATABLE READ
    snapshot) and saves. Several workers may save at once: `upsert` is
    `INSERT ... ON CONFLICT (<primary key>) DO UPDATE`; with `dequeue`, the rows taken off
    the queue by this transaction's `DELETE ... RETURNING` are the ones inserted, so
    of two workers saving the same rows each is inserted once.

    Example (`conf/cluster/catalog.yml`)::

        predictions@table:
          type: turbine_monitor.datasets.PostgresQueryDataset
          url: ${globals:warehouse.url}
          table: predictions
          dequeue: scoring_queue
    """

    def __init__(self, url: str, table: str | None = None, columns: list[str] | None = None,
                 order_by: list[str] | None = None, query: str | None = None,
                 query_args: dict[str, Any] | None = None, partitions: dict[str, Any] | None = None,
                 upsert: bool = False, dequeue: str | None = None, lock_timeout_s: float = 60.0,
                 connect_timeout_s: float = 30.0, metadata: dict | None = None):
        super().__init__(url, lock_timeout_s, connect_timeout_s, metadata)
        self._configure(table, columns, order_by, query, query_args, partitions, upsert, dequeue)

    def _fetch_rows(self, query: WarehouseQuery) -> list[tuple]:
        with self._connect() as con:
            return _execute(con, query).fetchall()

    def _fetch(self, select: Select) -> Loaded:
        with self._connect() as con:
            if isinstance(select, WarehouseQuery):
                return _frame(_execute(con, select))
            with con.transaction():  # one snapshot for every query
                con.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                return {name: _frame(_execute(con, query)) for name, query in select.items()}

    def _insert(self, data: pd.DataFrame) -> dict[str, Any]:
        if data.empty:
            return {"rows": 0}
        with self._connect() as con, con.transaction():
            columns = _names(_stage(con, "incoming", data, like=self._table))
            if self._upsert:  # rows stored as they are already are not written again
                key = [name for (name,) in con.execute("""
                    SELECT a.attname FROM pg_index i
                    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                    WHERE i.indrelid = %s::regclass AND i.indisprimary""", (self._table,)).fetchall()]
                others = [c for c in data.columns if c not in key]
                action = ("DO UPDATE SET " + ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in others)
                          if others else "DO NOTHING")
                inserted = con.execute(f"""
                    INSERT INTO {self._table} ({columns})
                    SELECT * FROM (SELECT {columns} FROM incoming
                                   EXCEPT SELECT {columns} FROM {self._table}) x
                    ON CONFLICT ({_names(key)}) {action}""").rowcount
            elif self._dequeue:
                inserted = con.execute(f"""
                    WITH taken AS (
                        DELETE FROM {self._dequeue} q USING incoming i
                        WHERE q.turbine_id = i.turbine_id AND q.ts = i.ts RETURNING q.turbine_id, q.ts)
                    INSERT INTO {self._table} ({columns})
                    SELECT {_names(data.columns, "i.")} FROM incoming i JOIN taken USING (turbine_id, ts)
                    ORDER BY i.ts, i.turbine_id
                    ON CONFLICT DO NOTHING""").rowcount
            else:
                inserted = con.execute(f"INSERT INTO {self._table} ({columns}) SELECT {columns} FROM incoming"
                                       ).rowcount
        return {"rows": inserted}

    def _describe(self) -> dict[str, Any]:
        return {**super()._describe(), **self._describe_query()}


class PostgresScadaTableDataset(_PostgresDataset, ScadaTableDatasetBase):
    """`ScadaTableDataset` on PostgreSQL: one ingestion batch per transaction, with the
    same duplicate and conflict accounting (`rows_read = rows_accepted + rows_duplicate
    + rows_quarantined`). The transaction first takes the ingestion advisory lock, so
    that batches of several workers commit one after the other, each against the
    `scada` rows and `ingested_files` of the batches before it: of two workers
    ingesting the same file at once, one ingests it and the other skips it.

    Example (`conf/cluster/catalog.yml`)::

        scada@batch:
          type: turbine_monitor.datasets.PostgresScadaTableDataset
          url: ${globals:warehouse.url}
    """

    def load(self) -> pd.DataFrame:
        return self._load_table("SELECT * FROM scada")

    def _commit(self, data: dict[str, pd.DataFrame]) -> list[str]:
        same_values = " AND ".join(f"b.{c} IS NOT DISTINCT FROM s.{c}" for c in self._VALUES)
        record = ", ".join(f"'{c}', b.{c}" for c in ("turbine_id", "ts", *self._VALUES))
        with self._connect() as con, con.transaction():
            con.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_SPACE, _INGESTION_LOCK))
            files_columns = _stage(con, "batch_files", data["files"], like="ingested_files")
            scada_columns = _stage(con, "batch_scada", data["scada"], like="scada")
            quarantine_columns = _stage(con, "batch_quarantine", data["quarantine"], like="scada_quarantine")
            con.execute("""
                CREATE TEMP TABLE new_files ON COMMIT DROP AS
                SELECT * FROM batch_files b
                WHERE NOT EXISTS (SELECT 1 FROM ingested_files i WHERE i.checksum = b.checksum)""")
            con.execute("""
                CREATE TEMP TABLE new_rows ON COMMIT DROP AS
                SELECT * FROM batch_scada WHERE source_file IN (SELECT source_file FROM new_files)""")
            con.execute(f"""
                CREATE TEMP TABLE clashes ON COMMIT DROP AS
                SELECT b.source_file, b.source_row, ({same_values}) AS identical,
                       s.source_file AS kept_from, CAST(json_build_object({record}) AS TEXT) AS raw_record
                FROM new_rows b JOIN scada s USING (turbine_id, ts)""")
            kept = [c for c in scada_columns if c not in ("source_row", "ingested_at")]
            con.execute(f"""
                WITH accepted AS (
                    INSERT INTO scada ({_names(kept)}, ingested_at)
                    SELECT {_names(kept, "b.")}, now() FROM new_rows b
                    WHERE NOT EXISTS (SELECT 1 FROM clashes c
                                      WHERE c.source_file = b.source_file AND c.source_row = b.source_row)
                    {TIME_ORDER}
                    ON CONFLICT DO NOTHING RETURNING turbine_id, ts)
                INSERT INTO scoring_queue (turbine_id, ts) SELECT turbine_id, ts FROM accepted {TIME_ORDER}
                ON CONFLICT DO NOTHING""")
            quarantined = [c for c in quarantine_columns if c != "quarantined_at"]
            conflict = {"source_file": "source_file", "source_row": "source_row",
                        "reason": "'duplicate_conflict'",
                        "detail": "'differs from the row already ingested from ' || kept_from",
                        "raw_record": "raw_record"}
            con.execute(f"""
                INSERT INTO scada_quarantine ({_names(quarantined)}, quarantined_at)
                SELECT {_names(quarantined, "q.")}, now() FROM batch_quarantine q
                WHERE q.source_file IN (SELECT source_file FROM new_files)
                UNION ALL
                SELECT {", ".join(conflict.get(c, "NULL") for c in quarantined)}, now()
                FROM clashes WHERE NOT identical""")
            counts = {"rows_accepted": "f.rows_accepted - coalesce(c.n_identical, 0)"
                                       " - coalesce(c.n_conflict, 0)",
                      "rows_duplicate": "f.rows_duplicate + coalesce(c.n_identical, 0)",
                      "rows_quarantined": "f.rows_quarantined + coalesce(c.n_conflict, 0)"}
            recorded = [c for c in files_columns if c != "ingested_at"]
            con.execute(f"""
                INSERT INTO ingested_files ({_names(recorded)}, ingested_at)
                SELECT {", ".join(counts.get(c, f'f."{c}"') for c in recorded)}, now()
                FROM new_files f LEFT JOIN (
                    SELECT source_file, count(*) FILTER (WHERE identical) AS n_identical,
                           count(*) FILTER (WHERE NOT identical) AS n_conflict
                    FROM clashes GROUP BY source_file) c USING (source_file)
                ON CONFLICT (checksum) DO NOTHING""")
            skipped = con.execute("""
                SELECT source_file FROM batch_files b
                WHERE NOT EXISTS (SELECT 1 FROM new_files n WHERE n.checksum = b.checksum)""").fetchall()
        return [name for (name,) in skipped]


class PostgresAlertsDataset(_PostgresDataset, AlertsDatasetBase):
    """`AlertsDataset` on PostgreSQL: the same replacement of each farm's recomputed
    episodes and detector state, in one transaction per update that first takes the
    advisory lock of each of its farms (in order), so that two detections of a farm
    replace its state one after the other, never interleaved.

    Example (`conf/cluster/catalog.yml`)::

        alerts:
          type: turbine_monitor.datasets.PostgresAlertsDataset
          url: ${globals:warehouse.url}
          kept_evidence_records: 300
    """

    def __init__(self, url: str, kept_evidence_records: int, lock_timeout_s: float = 60.0,
                 connect_timeout_s: float = 30.0, metadata: dict | None = None):
        super().__init__(url, lock_timeout_s, connect_timeout_s, metadata)
        self._kept_evidence_records = int(kept_evidence_records)

    def load(self) -> pd.DataFrame:
        return self._load_table("SELECT * FROM alerts ORDER BY start_ts, turbine_id, kind")

    def _replace(self, update: AlertUpdate) -> int:
        key = _names(self._KEY)
        with self._connect() as con, con.transaction():
            _lock_farms(con, "alerts", update.farms["farm_id"])
            _stage(con, "updated_farms", update.farms, like="alert_detection")
            episode_columns = _stage(con, "updated_episodes", update.episodes, like="alerts")
            _stage(con, "updated_days", update.days, like="detector_days")
            _stage(con, "updated_evidence", update.evidence, like="detector_evidence")
            _stage(con, "updated_open_episodes", update.open_episodes, like="detector_episodes")
            opened = con.execute("""
                SELECT count(*) FROM updated_episodes e WHERE NOT EXISTS (
                    SELECT 1 FROM alerts a
                    WHERE a.turbine_id = e.turbine_id AND a.kind = e.kind AND a.start_ts = e.start_ts)"""
                                 ).fetchone()[0]
            con.execute(f"CREATE TEMP TABLE stored ON COMMIT DROP AS {self._REPLACED_EPISODES}")
            con.execute(self._DELETE_REPLACED)
            episodes = [c for c in episode_columns if c not in ("opened_at", "updated_at")]
            con.execute(f"""
                INSERT INTO alerts ({_names(episodes)}, opened_at, updated_at)
                SELECT {_names(episodes, "e.")}, coalesce(s.opened_at, now()),
                       CASE WHEN s.end_ts IS NOT DISTINCT FROM e.end_ts AND s.records = e.records
                            THEN s.updated_at ELSE now() END
                FROM updated_episodes e LEFT JOIN stored s USING ({key})""")
            self._store_detector_state(con, update)
            con.execute(f"CREATE TEMP TABLE detection_state ON COMMIT DROP AS {self._DETECTION_STATE}")
            con.execute("DELETE FROM alert_detection WHERE farm_id IN (SELECT farm_id FROM updated_farms)")
            con.execute("""
                INSERT INTO alert_detection (farm_id, scored_through, resume_from, report_from)
                SELECT farm_id, scored_through, resume_from, report_from FROM detection_state""")
        return int(opened)

    def _store_detector_state(self, con: psycopg.Connection, update: AlertUpdate) -> None:
        """Replace what the detector continues from, as `AlertsDataset` does."""
        earliest = {"earliest": _value(update.farms["since"].min())}
        days, evidence = _names(DAY_COLUMNS), _names(EVIDENCE_COLUMNS)
        day_values = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in DAY_COLUMNS[2:])
        con.execute(f"""
            INSERT INTO detector_days ({days})
            SELECT * FROM (SELECT {days} FROM updated_days
                           EXCEPT SELECT {days} FROM detector_days WHERE day >= CAST(%(earliest)s AS DATE)) x
            ON CONFLICT (turbine_id, day) DO UPDATE SET {day_values}""", earliest)
        con.execute(_sql(f"CREATE TEMP TABLE stored_evidence ON COMMIT DROP AS {self._STORED_EVIDENCE}"),
                    earliest)
        con.execute(_sql(self._DELETE_GONE_EVIDENCE), earliest)
        con.execute(f"""
            INSERT INTO detector_evidence ({evidence}) SELECT * FROM (
                SELECT {evidence} FROM updated_evidence EXCEPT SELECT {evidence} FROM stored_evidence) x
            {TIME_ORDER}""")
        con.execute(_sql(self._TRIM_EVIDENCE), {"kept": self._kept_evidence_records})
        con.execute(self._DELETE_OPEN_EPISODES)
        open_episodes = _names(OPEN_EPISODE_COLUMNS)
        con.execute(f"INSERT INTO detector_episodes ({open_episodes}) SELECT {open_episodes} "
                    "FROM updated_open_episodes")


class PostgresKpiDailyDataset(_PostgresDataset, KpiDailyDatasetBase):
    """`KpiDailyDataset` on PostgreSQL: the same replacement of each farm's days and
    compare-and-clear of its `report_from`, in one transaction per report that first
    takes the `kpi_daily` advisory lock of each of its farms (in order).

    Example (`conf/cluster/catalog.yml`)::

        kpi_daily:
          type: turbine_monitor.datasets.PostgresKpiDailyDataset
          url: ${globals:warehouse.url}
    """

    def load(self) -> pd.DataFrame:
        return self._load_table("SELECT * FROM kpi_daily ORDER BY farm_id, turbine_id, day")

    def _replace(self, report: dict[str, pd.DataFrame]) -> None:
        with self._connect() as con, con.transaction():
            _lock_farms(con, "kpi_daily", report["farms"]["farm_id"])
            _stage(con, "reported_farms", report["farms"], like="alert_detection")
            days = _stage(con, "reported_days", report["days"], like="kpi_daily")
            con.execute(self._DELETE_REPLACED_DAYS)
            con.execute(f"INSERT INTO kpi_daily ({_names(days)}) SELECT {_names(days)} FROM reported_days")
            con.execute(self._CLEAR_REPORT_FROM)
