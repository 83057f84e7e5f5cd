"""Kedro datasets of our own, for what kedro-datasets does not serve.

- `SourceFilesDataset`: SCADA export files in a folder, listed with their size and
  modification time, hashed and read lazily, so a run reads only the files it has
  not ingested.
- `DuckDBQueryDataset`, `ScadaTableDataset`, `AlertsDataset`: the DuckDB warehouse,
  attached per load or save (never held), waiting for the file lock with bounded
  backoff, and writing inside one transaction.
- `ModelRegistryDataset`, `MlflowFiguresDataset`: the MLflow registry (champion and
  challenger aliases) and run artifacts, written into kedro-mlflow's run.
"""

from .model_registry import MlflowFiguresDataset, ModelRegistryDataset
from .source_files import SourceFile, SourceFilesDataset
from .warehouse import AlertsDataset, DuckDBQueryDataset, ScadaTableDataset, WarehouseLockedError

__all__ = [
    "AlertsDataset",
    "DuckDBQueryDataset",
    "MlflowFiguresDataset",
    "ModelRegistryDataset",
    "ScadaTableDataset",
    "SourceFile",
    "SourceFilesDataset",
    "WarehouseLockedError",
]
