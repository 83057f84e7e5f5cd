"""Accuracy benchmark: train on 2014, evaluate on all of 2015 (DESIGN.md protocol).

    uv run python bench/model_accuracy.py

Ingests the bundled 2014-2015 data through the ingestion pipeline into a temporary
warehouse, applies the training pipeline's normal-operation filter to both years,
fits the model and the IEC baseline on 2014 with the parameters in
conf/base/parameters_training.yml (chosen on 2014 only), and prints both on 2015 from
the same run. Nothing is tuned on 2015.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import duckdb
import pandas as pd
from common import bundled_farm
from ingestion import full_export_sandbox

from turbine_monitor.pipelines.training.nodes import (
    fit_power_model,
    flag_normal_operation,
    predict_holdout,
    summarise_holdout,
)
from turbine_monitor.project import load_config


def ingested_scada(root: Path) -> pd.DataFrame:
    sandbox, _ = full_export_sandbox(root)
    sandbox.run("ingestion")
    with duckdb.connect(str(sandbox.warehouse), read_only=True) as con:
        return con.sql("SELECT * FROM scada ORDER BY turbine_id, ts").df()


def main() -> None:
    params = load_config("parameters")["training"]
    farm = bundled_farm()
    with tempfile.TemporaryDirectory() as tmp:
        scada = ingested_scada(Path(tmp))
    flagged = flag_normal_operation(scada, farm, params)
    flagged["split"] = flagged["ts"].dt.year.map({2014: "train", 2015: "holdout"})
    start = time.perf_counter()
    model = fit_power_model(flagged, farm, params)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    predictions = predict_holdout(model, flagged)
    predict_s = time.perf_counter() - start
    metrics = {k: v["value"] for k, v in summarise_holdout(predictions).items()}

    train_rows = int((flagged["split"].eq("train") & flagged["exclusion"].isna()).sum())
    print(f"train: 2014, {train_rows:,} normal-operation rows; test: 2015, {len(predictions):,} rows")
    print(f"fit {fit_s:.1f} s, predict {predict_s:.1f} s (2 cores)\n")
    print(f"{'':<34}{'MAE kW':>9}{'RMSE kW':>9}{'MAE ws>=4':>11}{'bias kW':>9}")
    for name, label in (("model", "model (HistGradientBoosting)"), ("iec", "IEC binned curve, interpolated")):
        print(f"{label:<34}{metrics[f'{name}_mae_kw']:9.2f}{metrics[f'{name}_rmse_kw']:9.2f}"
              f"{metrics[f'{name}_mae_ws4_kw']:11.2f}{metrics[f'{name}_bias_kw']:9.2f}")
    gain = 1 - metrics["model_mae_kw"] / metrics["iec_mae_kw"]
    print(f"\nmodel MAE is {gain:.1%} below the IEC baseline's")
    print("per turbine MAE (model / IEC):", ", ".join(
        f"{t} {metrics[f'model_mae_kw_{t}']:.1f} / {metrics[f'iec_mae_kw_{t}']:.1f}"
        for t in sorted(farm.assets["Wind_turbine_name"])))


if __name__ == "__main__":
    main()
