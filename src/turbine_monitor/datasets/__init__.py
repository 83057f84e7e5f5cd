"""Kedro datasets of our own, for what kedro-datasets and kedro-mlflow do not serve.

- `FarmSourceFilesDataset`, `FarmAssetTablesDataset`: each farm's SCADA export files
  (listed with their size and modification time, hashed and read lazily, so a run reads
  only the files it has not ingested) and asset table.
- `DuckDBQueryDataset`, `ScadaTableDataset`, `AlertsDataset`, `KpiDailyDataset`: the
  DuckDB warehouse, attached per load or save (never held), waiting for the file lock
  with bounded backoff, and writing inside one transaction.
- `FarmModelsDataset`: every farm's model of the MLflow registry by alias, each read
  when first used.

They do I/O only and import nothing of the project but `turbine_monitor.values`.
"""

from .model_registry import FarmModelsDataset
from .source_files import ExportFile, FarmAssetTablesDataset, FarmSourceFilesDataset
from .warehouse import (
    AlertsDataset,
    DuckDBQueryDataset,
    KpiDailyDataset,
    ScadaTableDataset,
    WarehouseLockedError,
)

__all__ = [
    "AlertsDataset",
    "DuckDBQueryDataset",
    "ExportFile",
    "FarmAssetTablesDataset",
    "FarmModelsDataset",
    "FarmSourceFilesDataset",
    "KpiDailyDataset",
    "ScadaTableDataset",
    "WarehouseLockedError",
]
