"""The SCADA export files of every farm, listed with their size and modification time,
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

_METADATA_LINES = 100  # a header is looked for in a file's first lines


@dataclass(frozen=True)
class ExportFile:
    """One export file (a `values.SourceFile`): its name (`<farm_id>/<file name>`),
    size, modification time (ns since the epoch), its content checksum (computed on
    first use), its metadata lines, and a reader that returns every field as the text
    delivered (missing fields as nulls), as an Arrow table.

    With a `comment_prefix`, the lines before the header that start with it are
    metadata (`key: value`), and the header is the first line starting with
    `header_prefix` (the comment prefix then dropped from the column names). Rows whose
    field count does not match the header are kept, with their text in the
    `malformed_line` column, so that nothing read is dropped.
    """

    name: str
    path: Path
    size_bytes: int
    modified_ns: int
    comment_prefix: str | None = None
    header_prefix: str | None = None

    @cached_property
    def checksum(self) -> str:
        """sha256 of the content."""
        digest = hashlib.sha256()
        with self.path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()

    def metadata(self) -> dict[str, str]:
        """The `key: value` lines before the header (none without a comment prefix)."""
        return self._preamble()[1]

    def read(self) -> pa.Table:
        try:
            if self.path.suffix == ".parquet":
                return _read_parquet(self.path)
            header_line, _ = self._preamble()
            return _read_csv(self.path, header_line, self.comment_prefix)
        except (pa.ArrowException, UnicodeDecodeError, csv.Error, OSError) as exc:
            raise UnreadableFileError(f"{self.name}: {exc}") from exc

    def _preamble(self) -> tuple[int, dict[str, str]]:
        """The index of the header line, and the metadata lines before it."""
        if not self.comment_prefix:
            return 0, {}
        metadata: dict[str, str] = {}
        with self.path.open(encoding="utf-8", newline="") as f:
            for index, line in enumerate(f):
                if index >= _METADATA_LINES:
                    break
                if line.startswith(self.header_prefix or "\0"):
                    return index, metadata
                text = line.removeprefix(self.comment_prefix).strip()
                if line.startswith(self.comment_prefix.rstrip()) and ":" in text:
                    key, value = text.split(":", 1)
                    metadata[key.strip()] = value.strip()
                elif not line.startswith(self.comment_prefix.rstrip()):
                    break
        return 0, metadata


def _read_parquet(path: Path) -> pa.Table:
    table = pq.read_table(path)
    return table.cast(pa.schema([(name, pa.string()) for name in table.column_names]))


def _read_csv(path: Path, header_line: int, comment_prefix: str | None) -> pa.Table:
    with path.open(newline="", encoding="utf-8") as f:
        for _ in range(header_line):
            next(f)
        header = next(csv.reader(f), None)
    if not header:
        return pa.table({})
    if comment_prefix and header[0].startswith(comment_prefix):
        header[0] = header[0].removeprefix(comment_prefix)
    malformed: list[str] = []

    def keep_malformed(row: Any) -> str:
        malformed.append(row.text)
        return "skip"

    table = pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(skip_rows=header_line + 1, column_names=header),
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


class FarmSourceFilesDataset(AbstractDataset[dict[str, dict[str, ExportFile]], None]):
    """Read-only: `load()` lists, for each farm of `farms`, the files of its bundled
    `history` (optional) and then those matching its format's `file_glob` (default
    `*.csv`) in its `landing` folder, as `{farm_id: {name: ExportFile}}` (names
    `<farm_id>/<file name>`, history first, then sorted); nothing is hashed or parsed
    until asked for. A farm whose landing folder does not exist yet has no files.

    CSV and Parquet files are read with pyarrow, all fields as text.

    Example (`conf/base/catalog.yml`; farms and formats as in `conf/base/farms.yml`)::

        farm_sources:
          type: turbine_monitor.datasets.FarmSourceFilesDataset
          farms: ${globals:farms}
          formats: ${globals:formats}
    """

    def __init__(self, farms: dict[str, dict], formats: dict[str, dict],
                 metadata: dict[str, Any] | None = None):
        self._farms = farms
        self._formats = formats
        self.metadata = metadata

    def load(self) -> dict[str, dict[str, ExportFile]]:
        return {farm_id: self._farm_files(farm_id, farm) for farm_id, farm in self._farms.items()}

    def _farm_files(self, farm_id: str, farm: dict) -> dict[str, ExportFile]:
        export = self._formats.get(farm.get("format"), {})
        options = {key: export.get(key) for key in ("comment_prefix", "header_prefix")}
        paths = [Path(p) for p in ([farm["history"]] if farm.get("history") else [])]
        if paths and not paths[0].is_file():
            raise DatasetError(f"farm {farm_id!r}: its history file {paths[0]} does not exist (farms.yml)")
        landing = Path(farm["landing"])
        paths += sorted(landing.glob(export.get("file_glob", "*.csv"))) if landing.is_dir() else []
        files = {}
        for path in paths:
            stat = path.stat()
            if S_ISREG(stat.st_mode):
                name = f"{farm_id}/{path.name}"
                files[name] = ExportFile(name, path, stat.st_size, stat.st_mtime_ns, **options)
        return files

    def save(self, data: dict) -> None:
        raise DatasetError(f"{type(self).__name__} is read-only")

    def _describe(self) -> dict[str, Any]:
        return {"farms": list(self._farms)}


class FarmAssetTablesDataset(AbstractDataset[dict[str, pd.DataFrame | Exception], None]):
    """Read-only: `load()` reads each farm's asset table (CSV, `assets` in `farms`) as
    `{farm_id: DataFrame}`; a table that cannot be read is given as the error instead,
    for the fleet check to report it naming the farm.

    Example (`conf/base/catalog.yml`)::

        farm_assets:
          type: turbine_monitor.datasets.FarmAssetTablesDataset
          farms: ${globals:farms}
    """

    def __init__(self, farms: dict[str, dict], metadata: dict[str, Any] | None = None):
        self._farms = farms
        self.metadata = metadata

    def load(self) -> dict[str, pd.DataFrame | Exception]:
        tables: dict[str, pd.DataFrame | Exception] = {}
        for farm_id, farm in self._farms.items():
            try:
                tables[farm_id] = pd.read_csv(farm["assets"])
            except (OSError, KeyError, ValueError) as error:
                tables[farm_id] = error
        return tables

    def save(self, data: dict) -> None:
        raise DatasetError(f"{type(self).__name__} is read-only")

    def _describe(self) -> dict[str, Any]:
        return {"farms": list(self._farms)}
