"""Ingestion benchmark: the whole 2014-2015 export (420,480 records) as one landing file.

    uv run python bench/ingestion.py

Prints, from the same run: the ingestion pipeline's time and the peak memory of the
process that ran it, next to the time DuckDB alone takes to load the same CSV into a
table. Works in a temporary folder; the project's data/ is not touched.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from turbine_monitor.project import PROJECT_ROOT, kedro_session
from turbine_monitor.sandbox import RAW_DIR, Sandbox


def full_export_sandbox(root: Path) -> tuple[Sandbox, Path]:
    """A sandbox whose landing zone holds the full 2014-2015 export as one CSV and whose
    bundled history folder holds only the asset table, so exactly that file is ingested."""
    (root / "raw").mkdir(parents=True)
    (root / "raw" / "la-haute-borne-asset-table.csv").write_bytes(
        (RAW_DIR / "la-haute-borne-asset-table.csv").read_bytes())
    sandbox = Sandbox.create(root / "sandbox", raw_dir=root / "raw")
    csv = sandbox.landing / "la-haute-borne-data-2014-2015.csv"
    parquet = [str(RAW_DIR / f"la-haute-borne-scada-{y}.parquet") for y in (2014, 2015)]
    duckdb.sql(f"COPY (SELECT * FROM read_parquet({parquet})) TO '{csv}' (HEADER, QUOTE '')")
    return sandbox, csv


def run_pipeline(conf: Path) -> None:
    """In a fresh process: run the ingestion pipeline, print its time and peak RSS."""
    from kedro.framework.project import pipelines

    with kedro_session(conf) as session:
        # Start-up is not pipeline time: kedro-mlflow creating its store, and importing
        # the project's pipelines (training's brings scikit-learn and MLflow).
        session.load_context()
        pipelines.get("ingestion")
        start = time.perf_counter()
        session.run(pipeline_names=["ingestion"])
        seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb}))


def duckdb_alone(csv: Path, root: Path) -> float:
    con = duckdb.connect(str(root / "duckdb-alone.duckdb"))
    start = time.perf_counter()
    con.execute(f"CREATE TABLE scada AS SELECT * FROM read_csv('{csv}')")
    seconds = time.perf_counter() - start
    con.close()
    return seconds


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sandbox, csv = full_export_sandbox(root)
        inner = subprocess.run(
            [sys.executable, __file__, "--run-pipeline", str(sandbox.conf)], cwd=PROJECT_ROOT,
            env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"},
            check=True, capture_output=True, text=True)
        result = json.loads(inner.stdout.strip().splitlines()[-1])
        alone = duckdb_alone(csv, root)
        counts = sandbox.sql("SELECT rows_read, rows_accepted, rows_duplicate, rows_quarantined "
                             "FROM ingested_files")[0]
    print(f"file: {csv.name}, {counts[0]:,} records "
          f"(accepted {counts[1]:,}, duplicate {counts[2]:,}, quarantined {counts[3]:,})")
    print(f"{'ingestion pipeline (parse, validate, dedupe, commit)':<55} {result['seconds']:6.2f} s"
          f"   peak RSS {result['peak_mb']:.0f} MB")
    print(f"{'DuckDB alone: CREATE TABLE AS SELECT * FROM read_csv':<55} {alone:6.2f} s")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--run-pipeline":
        run_pipeline(Path(sys.argv[2]))
    else:
        main()
