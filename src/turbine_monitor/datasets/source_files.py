"""SCADA export files in a folder, listed with their size and modification time,
hashed and read only when asked."""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from stat import S_ISREG
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from kedro.io import AbstractDataset, DatasetError

from turbine_monitor.values import MALFORMED_LINE, UnreadableFileError


@dataclass(frozen=True)
class ExportFile:
    """One export file (a `values.SourceFile`): its name, size, modification time (ns
    since the epoch), its content checksum (computed on first use) and a reader that
    returns every field as the text delivered (missing fields as nulls).

    Rows whose field count does not match the header are kept, with their text in
    the `malformed_line` column, so that nothing read is dropped.
    """

    name: str
    path: Path
    size_bytes: int
    modified_ns: int

    @cached_property
    def checksum(self) -> str:
        """sha256 of the content."""
        digest = hashlib.sha256()
        with self.path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()

    def read(self) -> pd.DataFrame:
        try:
            table = _read_parquet(self.path) if self.path.suffix == ".parquet" else _read_csv(self.path)
        except (pa.ArrowException, UnicodeDecodeError, csv.Error, OSError) as exc:
            raise UnreadableFileError(f"{self.name}: {exc}") from exc
        return table.to_pandas()


def _read_parquet(path: Path) -> pa.Table:
    table = pq.read_table(path)
    return table.cast(pa.schema([(name, pa.string()) for name in table.column_names]))


def _read_csv(path: Path) -> pa.Table:
    with path.open(newline="", encoding="utf-8") as f:
        header = next(csv.reader(f), None)
    if not header:
        return pa.table({})
    malformed: list[str] = []

    def keep_malformed(row: Any) -> str:
        malformed.append(row.text)
        return "skip"

    table = pacsv.read_csv(
        path,
        parse_options=pacsv.ParseOptions(invalid_row_handler=keep_malformed),
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(header, pa.string()), strings_can_be_null=True
        ),
    )
    table = table.append_column(MALFORMED_LINE, pa.nulls(table.num_rows, pa.string()))
    if malformed:
        extra = {name: pa.nulls(len(malformed), pa.string()) for name in header}
        extra[MALFORMED_LINE] = pa.array(malformed, pa.string())
        table = pa.concat_tables([table, pa.table(extra)])
    return table


class SourceFilesDataset(AbstractDataset[dict[str, ExportFile], None]):
    """Read-only: `load()` lists the files matching `glob` under `path`, sorted by
    name, as `{name: ExportFile}`; nothing is hashed or parsed until asked for.

    CSV files are read with pyarrow, Parquet files with pyarrow, all fields as text.

    Example (`conf/base/catalog.yml`)::

        landing_files:
          type: turbine_monitor.datasets.SourceFilesDataset
          path: data/01_raw/landing
          glob: "*.csv"
    """

    def __init__(self, path: str, glob: str = "*.csv", metadata: dict[str, Any] | None = None):
        self._path = Path(path)
        self._glob = glob
        self.metadata = metadata

    def load(self) -> dict[str, ExportFile]:
        stats = {p: p.stat() for p in self._path.glob(self._glob)}
        return {p.name: ExportFile(p.name, p, stat.st_size, stat.st_mtime_ns)
                for p, stat in sorted(stats.items()) if S_ISREG(stat.st_mode)}

    def save(self, data: dict[str, ExportFile]) -> None:
        raise DatasetError(f"{type(self).__name__} is read-only")

    def _exists(self) -> bool:
        return self._path.is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "glob": self._glob}
