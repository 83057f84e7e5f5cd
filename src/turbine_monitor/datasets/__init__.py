"""Kedro datasets of our own, for what kedro-datasets and kedro-mlflow do not serve.

- `FarmSourceFilesDataset`, `FarmAssetTablesDataset`: each farm's SCADA export files
  (listed with their size and modification time, hashed and read lazily, so a run reads
  only the files it has not ingested) and asset table.
- `DuckDBQueryDataset`, `ScadaTableDataset`, `AlertsDataset`, `KpiDailyDataset`: the
  DuckDB warehouse, attached per load or save (never held), waiting for the file lock
  with bounded backoff, and writing inside one transaction.
- `PostgresQueryDataset`, `PostgresScadaTableDataset`, `PostgresAlertsDataset`,
  `PostgresKpiDailyDataset`: the same on a PostgreSQL database (the cluster profile),
  for several writers at once: unique keys, conflict-skipping inserts and advisory
  locks; refused connections retried with bounded backoff (`WarehouseUnavailableError`).
  Imported when first used: a process on DuckDB does not import psycopg (~170 ms).
- `FarmModelsDataset`: every farm's model of the MLflow registry by alias, each read
  when first used.

They do I/O only and import nothing of the project but `turbine_monitor.values`.
"""

from typing import TYPE_CHECKING, Any

from .model_registry import FarmModelsDataset
from .source_files import ExportFile, FarmAssetTablesDataset, FarmSourceFilesDataset
from .warehouse import (
    AlertsDataset,
    DuckDBQueryDataset,
    KpiDailyDataset,
    ScadaTableDataset,
    WarehouseLockedError,
)

if TYPE_CHECKING:
    from .postgres import (
        PostgresAlertsDataset,
        PostgresKpiDailyDataset,
        PostgresQueryDataset,
        PostgresScadaTableDataset,
        WarehouseUnavailableError,
    )

_POSTGRES = ("PostgresAlertsDataset", "PostgresKpiDailyDataset", "PostgresQueryDataset",
             "PostgresScadaTableDataset", "WarehouseUnavailableError")


def __getattr__(name: str) -> Any:
    if name in _POSTGRES:
        from . import postgres

        return getattr(postgres, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AlertsDataset",
    "DuckDBQueryDataset",
    "ExportFile",
    "FarmAssetTablesDataset",
    "FarmModelsDataset",
    "FarmSourceFilesDataset",
    "KpiDailyDataset",
    "PostgresAlertsDataset",
    "PostgresKpiDailyDataset",
    "PostgresQueryDataset",
    "PostgresScadaTableDataset",
    "ScadaTableDataset",
    "WarehouseLockedError",
    "WarehouseUnavailableError",
]
