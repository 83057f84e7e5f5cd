"""Kedro datasets of our own, for what kedro-datasets and kedro-mlflow do not serve.

- `SourceFilesDataset`: SCADA export files in a folder, listed with their size and
  modification time, hashed and read lazily, so a run reads only the files it has
  not ingested.
- `DuckDBQueryDataset`, `ScadaTableDataset`, `AlertsDataset`: the DuckDB warehouse,
  attached per load or save (never held), waiting for the file lock with bounded
  backoff, and writing inside one transaction.
- `ModelRegistryDataset`: a model of the MLflow registry by alias (kedro-mlflow's,
  returning None while the alias is unset).

They do I/O only and import nothing of the project but `turbine_monitor.values`.
"""

from .model_registry import ModelRegistryDataset
from .source_files import ExportFile, SourceFilesDataset
from .warehouse import AlertsDataset, DuckDBQueryDataset, ScadaTableDataset, WarehouseLockedError

__all__ = [
    "AlertsDataset",
    "DuckDBQueryDataset",
    "ExportFile",
    "ModelRegistryDataset",
    "ScadaTableDataset",
    "SourceFilesDataset",
    "WarehouseLockedError",
]
