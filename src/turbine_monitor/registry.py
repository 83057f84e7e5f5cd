"""Registering a model release in the MLflow registry: the one place that writes
versions and moves the `champion` and `challenger` aliases of each farm's model
(DESIGN.md's contract)."""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow
import sklearn
from mlflow import MlflowClient

import turbine_monitor
from turbine_monitor.nbm import PowerModelPyfunc
from turbine_monitor.values import ModelRelease

logger = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
_PACKAGE_DIR = Path(turbine_monitor.__file__).parent


def farm_model_name(model_name: str, farm_id: str) -> str:
    """The registered model of farm `farm_id`: `<model.name>-<farm_id>` (DESIGN.md)."""
    return f"{model_name}-{farm_id}"


def register_release(release: ModelRelease, model_name: str) -> str:
    """Log the release's model as a pyfunc (with its feature engineering, signature and
    input example) in the active MLflow run, register it as a new version of
    `model_name` tagged with its training span and holdout MAE, alias it `challenger`,
    and `champion` too when `release.promote`; tag the run with the decision. Returns the
    new version."""
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=PowerModelPyfunc(release.power_model),
        signature=PowerModelPyfunc.SIGNATURE,
        input_example=release.input_example,
        registered_model_name=model_name,
        code_paths=[str(_PACKAGE_DIR)],
        pip_requirements=[f"mlflow=={mlflow.__version__}", f"scikit-learn=={sklearn.__version__}",
                          "pandas", "numpy", "pyarrow"],
    )
    version = str(info.registered_model_version)
    client = MlflowClient()
    model = release.power_model
    for key, value in {"trained_from": model.trained_from, "trained_until": model.trained_until,
                       "holdout_mae_kw": release.challenger_mae_kw}.items():
        client.set_model_version_tag(model_name, version, key, str(value))
    client.set_registered_model_alias(model_name, CHALLENGER, version)
    if release.promote:
        client.set_registered_model_alias(model_name, CHAMPION, version)
    mlflow.set_tags({
        "registered_model": model_name,
        "promotion_decision": release.decision, "model_version": version,
        "champion_version_before": release.champion_version or "none",
        "holdout_start": release.holdout["start"], "holdout_end": release.holdout["end"],
        "trained_until": str(model.trained_until),
    })
    logger.info("Registered %s version %s (%s).", model_name, version, release.decision)
    return version
