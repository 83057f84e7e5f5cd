"""Kedro datasets of our own, for what kedro-datasets does not serve.

- `SourceFilesDataset`: SCADA export files in a folder, listed with their content
  checksum and read lazily, so a run parses only the files it has not ingested.
- `DuckDBQueryDataset`, `ScadaBatchDataset`: the DuckDB warehouse, opened per load
  or save (never held), waiting for the file lock with bounded backoff, and
  writing insert-ignore inside one transaction.
"""

from .source_files import SourceFile, SourceFilesDataset
from .warehouse import DuckDBQueryDataset, ScadaBatchDataset, WarehouseLockedError

__all__ = [
    "DuckDBQueryDataset",
    "ScadaBatchDataset",
    "SourceFile",
    "SourceFilesDataset",
    "WarehouseLockedError",
]
