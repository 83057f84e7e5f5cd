"""The training pipeline against a real SQLite MLflow store: registered versions,
aliases, the promotion decision both ways, the retraining gate, and the champion
loading in a fresh process."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pytest
from mlflow import MlflowClient

from tests.conftest import FAST_TRAINING, PROJECT_ROOT, write_export_slice
from turbine_monitor.datasets import FarmModelsDataset

MODEL = "turbine-power-nbm-la-haute-borne"  # the bundled farm's model
# One boosting iteration: a model that is surely worse than any reasonable one.
POOR = {"training": {"window_days": 30, "holdout_days": 5, "estimator": {"max_iter": 1}}}


@pytest.fixture
def tracked(workspace, tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return workspace, MlflowClient(uri)


def aliases(client: MlflowClient) -> dict[str, str]:
    return {alias: str(version) for alias, version in client.get_registered_model(MODEL).aliases.items()}


def run_tags(client: MlflowClient, version: str) -> dict[str, str]:
    return client.get_run(client.get_model_version(MODEL, version).run_id).data.tags


def test_champion_challenger_lifecycle(tracked):
    ws, client = tracked
    write_export_slice(ws.landing / "jan.csv", "2014-01-01", "2014-02-01")
    ws.run("__default__", POOR)
    assert [str(v.version) for v in client.search_model_versions(f"name='{MODEL}'")] == ["1"]
    assert aliases(client) == {"champion": "1", "challenger": "1"}
    assert run_tags(client, "1")["promotion_decision"] == "promoted"

    ws.run("training", FAST_TRAINING)  # nothing new since the champion's data: the gate holds
    assert len(client.search_model_versions(f"name='{MODEL}'")) == 1

    write_export_slice(ws.landing / "feb-a.csv", "2014-02-01", "2014-02-08")
    ws.run("__default__", FAST_TRAINING)
    assert aliases(client) == {"champion": "2", "challenger": "2"}
    run = client.get_run(client.get_model_version(MODEL, "2").run_id)
    assert run.data.metrics["challenger_holdout_mae_kw"] < run.data.metrics["champion_holdout_mae_kw"]
    assert run.data.tags["champion_version_before"] == "1"

    write_export_slice(ws.landing / "feb-b.csv", "2014-02-08", "2014-02-15")
    ws.run("__default__", POOR)
    assert aliases(client) == {"champion": "2", "challenger": "3"}
    run = client.get_run(client.get_model_version(MODEL, "3").run_id)
    assert run.data.tags["promotion_decision"] == "kept_champion"
    assert run.data.metrics["challenger_holdout_mae_kw"] > run.data.metrics["champion_holdout_mae_kw"]
    for metric in ("model_mae_kw", "iec_mae_kw", "model_rmse_kw", "model_mae_ws4_kw", "model_bias_kw",
                   "model_mae_kw_R80711"):
        assert f"holdout.{metric}" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert artifacts == {"figures/power_curves.png", "figures/residual_distribution.png",
                         "figures/residuals_over_time.png"}


def test_the_champion_is_read_once_per_version_and_follows_the_alias(tracked):
    ws, client = tracked
    write_export_slice(ws.landing / "jan.csv", "2014-01-01", "2014-02-01")
    ws.run("__default__", POOR)
    write_export_slice(ws.landing / "feb.csv", "2014-02-01", "2014-02-08")
    ws.run("__default__", FAST_TRAINING)
    champions = FarmModelsDataset("turbine-power-nbm")
    first = champions.load()["la-haute-borne"]()
    assert str(first.version) == "2" and champions.load()["la-haute-borne"]() is first
    client.set_registered_model_alias(MODEL, "champion", "1")
    assert str(champions.load()["la-haute-borne"]().version) == "1"


def test_a_version_read_once_is_read_from_the_cache_by_the_next_process(tracked, tmp_path, monkeypatch):
    ws, client = tracked
    write_export_slice(ws.landing / "jan.csv", "2014-01-01", "2014-02-01")
    ws.run("__default__", POOR)
    cache = tmp_path / "model-cache"
    first = FarmModelsDataset("turbine-power-nbm", cache_dir=str(cache)).load()["la-haute-borne"]()
    assert len(list(cache.rglob("1.serving.pkl"))) == 1
    # The pyfunc's artifacts gone: only the cache can give the version now.
    shutil.rmtree(ws.root / "mlartifacts")
    again = FarmModelsDataset("turbine-power-nbm", cache_dir=str(cache)).load()["la-haute-borne"]()
    assert (again.version, again.run_id) == (first.version, first.run_id)
    assert again.power_model.feature_names == first.power_model.feature_names
    # It predicts as the pyfunc's model does: a few rows by its compiled forest, many by
    # its scikit-learn estimator (read from the cache when first needed).
    with duckdb.connect(str(ws.warehouse), read_only=True) as con:
        scada = con.sql("SELECT * FROM scada ORDER BY turbine_id, ts").df()
    features = first.power_model.features(scada)
    assert again.power_model.forest is not None
    for rows in (features.head(4), features):
        expected = first.power_model.estimator.predict(rows)
        np.testing.assert_array_equal(again.power_model.predict_features(rows, compiled_max_rows=100),
                                      np.where(rows["wind_speed"].isna(), np.nan, expected))
    # Another tracking store has a version 1 of its own: the cache never answers for it.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'other.db'}")
    ws.run("training", POOR)
    other = FarmModelsDataset("turbine-power-nbm", cache_dir=str(cache)).load()["la-haute-borne"]()
    assert other.version == "1" and other.run_id != first.run_id


@pytest.mark.slow
def test_champion_loads_and_predicts_in_a_fresh_process(tracked):
    ws, client = tracked
    write_export_slice(ws.landing / "jan.csv", "2014-01-01", "2014-02-01")
    ws.run("__default__", FAST_TRAINING)
    script = f"""
import json, duckdb, mlflow
mlflow.set_tracking_uri({client.tracking_uri!r})
model = mlflow.pyfunc.load_model("models:/{MODEL}@champion")
con = duckdb.connect({str(ws.warehouse)!r}, read_only=True)
scada = con.sql("SELECT * FROM scada WHERE ts >= '2014-01-20' AND ts < '2014-01-21' ORDER BY ALL").df()
expected = model.predict(scada)
error = abs(scada["power_kw"] - expected)[scada["wind_speed_ms"] >= 4].mean()
inputs = model.metadata.get_input_schema().input_names()
print(json.dumps({{"rows": len(scada), "predicted": len(expected), "mae": float(error), "inputs": inputs}}))
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, check=True,
                         capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["rows"] == result["predicted"] > 500
    assert result["mae"] < 150  # a real power model, not noise (rated power is 2,050 kW)
    assert not {"power_kw", "pitch_deg"} & set(result["inputs"])


def test_training_leaves_a_new_champion_in_the_model_cache_scoring_reads(tracked):
    ws, _ = tracked
    write_export_slice(ws.landing / "jan.csv", "2014-01-01", "2014-02-01")
    ws.run("ingestion")
    ws.run("training", POOR)
    cache = Path(ws.globals()["paths"]["model_cache"])
    assert sorted(path.name for path in cache.rglob("*.pkl")) == ["1.estimator.pkl", "1.serving.pkl"]
    # The pyfunc's artifacts gone: scoring can only have the champion from the cache.
    shutil.rmtree(ws.root / "mlartifacts")
    ws.run("inference")
    assert ws.scalar("SELECT count(*) FROM predictions WHERE model_version = '1'") > 0
