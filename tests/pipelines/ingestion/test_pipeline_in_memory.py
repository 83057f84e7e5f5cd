"""The ingestion pipeline as Kedro's starters test theirs: every dataset in memory, a
`SequentialRunner`, no warehouse and no files. Two export files of La Haute Borne
arrive, one of them with a bad record and a duplicate stamp; the batch it assembles
accounts for each, and the turbines table lists the farm's turbines."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from tests.conftest import FLEET_CONFIG, HEADER, PARAMETERS, RAW_DIR
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

    def read(self) -> pa.Table:
        table = pa.table({name: pa.array(list(values), pa.string()) for name, values in zip(
            COLUMNS, zip(*self.rows, strict=True), strict=True)})
        return table.append_column(MALFORMED_LINE, pa.nulls(table.num_rows, pa.string()))

    def metadata(self) -> dict[str, str]:
        return {}


def record(turbine: str, stamp: str, power: str = "812.5") -> tuple:
    return (turbine, stamp, "-1.0", power, "8.1", "1.2", "17.3", "201.0", "202.2")


def test_ingestion_pipeline_in_memory_accounts_for_every_record():
    first = InMemoryFile("la-haute-borne/a.csv", (record("R80711", "2015-06-01T12:00:00+02:00"),
                                   record("R80711", "2015-06-01T12:10:00+02:00"),
                                   record("R80711", "2015-06-01T12:10:00+02:00", power="900.0")))
    second = InMemoryFile("la-haute-borne/b.csv", (record("R80736", "2015-06-01T12:00:00+02:00"),
                                    record("R0000", "2015-06-01T12:00:00+02:00")))
    catalog = DataCatalog({
        "farm_sources": MemoryDataset({"la-haute-borne": {first.name: first, second.name: second}}),
        "farm_assets": MemoryDataset(
            {"la-haute-borne": pd.read_csv(RAW_DIR / "la-haute-borne-asset-table.csv")}),
        "ingested_sources": MemoryDataset(pd.DataFrame(
            columns=["checksum", "source_file", "size_bytes", "modified_ns"])),
        "fleet": MemoryDataset(FLEET_CONFIG),
        "params:ingestion": MemoryDataset(PARAMETERS["ingestion"]),
        "scada@batch": MemoryDataset(copy_mode="assign"),
        "turbines": MemoryDataset(),
    })

    SequentialRunner().run(create_pipeline(), catalog)

    batch = catalog.load("scada@batch")
    files = batch["files"].set_index("source_file")
    assert files.loc[first.name, ["rows_read", "rows_accepted", "rows_quarantined"]].tolist() == [3, 2, 1]
    assert files.loc[second.name, ["rows_read", "rows_accepted", "rows_quarantined"]].tolist() == [2, 1, 1]
    assert set(files["farm_id"]) == {"la-haute-borne"}
    assert (files["rows_read"] == files["rows_accepted"] + files["rows_duplicate"]
            + files["rows_quarantined"]).all()
    assert sorted(batch["quarantine"]["reason"]) == ["duplicate_conflict", "unknown_turbine"]
    assert len(batch["scada"]) == 3 and batch["scada"]["ts"].dt.tz is not None
    assert catalog.load("turbines")[["farm_id", "turbine_id"]].values.tolist() == [
        ["la-haute-borne", t] for t in ("R80711", "R80721", "R80736", "R80790")]
