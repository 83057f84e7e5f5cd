"""The ingestion pipeline as Kedro's starters test theirs: every dataset in memory, a
`SequentialRunner`, no warehouse and no files. Two export files arrive, one of them
with a bad record and a duplicate stamp; the batch it assembles accounts for each."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from tests.conftest import HEADER, PARAMETERS, RAW_DIR
from turbine_monitor.pipelines.ingestion import create_pipeline
from turbine_monitor.values import MALFORMED_LINE

COLUMNS = HEADER.strip().split(",")


@dataclass(frozen=True)
class InMemoryFile:
    """A `values.SourceFile` whose content is a list of records."""

    name: str
    rows: tuple
    size_bytes: int = 100
    modified_ns: int = 0

    @property
    def checksum(self) -> str:
        return f"sha-{self.name}"

    def read(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.rows), columns=COLUMNS, dtype="str").assign(**{MALFORMED_LINE: None})


def record(turbine: str, stamp: str, power: str = "812.5") -> tuple:
    return (turbine, stamp, "-1.0", power, "8.1", "1.2", "17.3", "201.0", "202.2")


def test_ingestion_pipeline_in_memory_accounts_for_every_record():
    first = InMemoryFile("a.csv", (record("R80711", "2015-06-01T12:00:00+02:00"),
                                   record("R80711", "2015-06-01T12:10:00+02:00"),
                                   record("R80711", "2015-06-01T12:10:00+02:00", power="900.0")))
    second = InMemoryFile("b.csv", (record("R80736", "2015-06-01T12:00:00+02:00"),
                                    record("R0000", "2015-06-01T12:00:00+02:00")))
    catalog = DataCatalog({
        "bundled_scada_history": MemoryDataset({}),
        "landing_files": MemoryDataset({"a.csv": first, "b.csv": second}),
        "ingested_sources": MemoryDataset(pd.DataFrame(
            columns=["checksum", "source_file", "size_bytes", "modified_ns"])),
        "asset_table": MemoryDataset(pd.read_csv(RAW_DIR / "la-haute-borne-asset-table.csv")),
        "params:ingestion": MemoryDataset(PARAMETERS["ingestion"]),
        "scada@batch": MemoryDataset(copy_mode="assign"),
    })

    SequentialRunner().run(create_pipeline(), catalog)

    batch = catalog.load("scada@batch")
    files = batch["files"].set_index("source_file")
    assert files.loc["a.csv", ["rows_read", "rows_accepted", "rows_quarantined"]].tolist() == [3, 2, 1]
    assert files.loc["b.csv", ["rows_read", "rows_accepted", "rows_quarantined"]].tolist() == [2, 1, 1]
    assert (files["rows_read"] == files["rows_accepted"] + files["rows_duplicate"]
            + files["rows_quarantined"]).all()
    assert sorted(batch["quarantine"]["reason"]) == ["duplicate_conflict", "unknown_turbine"]
    assert len(batch["scada"]) == 3 and batch["scada"]["ts"].dt.tz is not None
