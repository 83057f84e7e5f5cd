"""The MLflow model registry and run artifacts as Kedro datasets.

Both write into the MLflow run that kedro-mlflow opened for the Kedro run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import mlflow
import sklearn
from kedro.io import AbstractDataset, DatasetError
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

import turbine_monitor
from turbine_monitor.nbm import ModelRelease, PowerModelPyfunc, RegisteredModel
from turbine_monitor.skipped import Skipped

logger = logging.getLogger(__name__)

_PACKAGE_DIR = Path(turbine_monitor.__file__).parent


class ModelRegistryDataset(AbstractDataset[RegisteredModel | None, ModelRelease | Skipped]):
    """`load()`: the version `alias` points to (None when no version has it yet); the
    alias is resolved on every load, the model read once per version.

    `save(release)`: log the model as a pyfunc (with its feature engineering, signature
    and input example) in the active MLflow run, register it as a new version of
    `model_name` with the alias `challenger_alias`, and, when the release says so, move
    `alias` to it in one call. The decision, both MAEs and the holdout go to the run.
    `save(Skipped(reason))` (nothing was trained) registers nothing and tags the run
    with the reason.
    """

    def __init__(self, model_name: str, alias: str = "champion", challenger_alias: str = "challenger",
                 metadata: dict[str, Any] | None = None):
        self._model_name = model_name
        self._alias = alias
        self._challenger_alias = challenger_alias
        self.metadata = metadata
        self._loaded: RegisteredModel | None = None

    def load(self) -> RegisteredModel | None:
        client = MlflowClient()
        try:
            version = client.get_model_version_by_alias(self._model_name, self._alias)
        except MlflowException as exc:
            if exc.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST) or "not found" in str(exc).lower():
                return None
            raise
        if self._loaded is None or self._loaded.version != version.version:
            # By version: the alias may move meanwhile. The model was logged from this
            # project's locked environment, so skip MLflow's check of the installed
            # packages against its requirements (it reads every distribution's metadata).
            pyfunc = mlflow.pyfunc.load_model(f"models:/{self._model_name}/{version.version}",
                                              suppress_warnings=True)
            self._loaded = RegisteredModel(version=version.version, run_id=version.run_id,
                                           power_model=pyfunc.unwrap_python_model().power_model)
        return self._loaded

    def save(self, release: ModelRelease | Skipped) -> None:
        if isinstance(release, Skipped):
            if mlflow.active_run() is not None:
                mlflow.set_tag("training_skipped", release.reason)
            logger.info("No model version registered: %s.", release.reason)
            return
        if mlflow.active_run() is None:
            raise DatasetError("ModelRegistryDataset.save needs an active MLflow run (kedro-mlflow)")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=PowerModelPyfunc(release.power_model),
            signature=PowerModelPyfunc.SIGNATURE,
            input_example=release.input_example,
            registered_model_name=self._model_name,
            code_paths=[str(_PACKAGE_DIR)],
            pip_requirements=[f"mlflow=={mlflow.__version__}", f"scikit-learn=={sklearn.__version__}",
                              "pandas", "numpy", "pyarrow"],
        )
        version = str(info.registered_model_version)
        client = MlflowClient()
        model = release.power_model
        for key, value in {"trained_from": model.trained_from, "trained_until": model.trained_until,
                           "holdout_mae_kw": release.challenger_mae_kw}.items():
            client.set_model_version_tag(self._model_name, version, key, str(value))
        client.set_registered_model_alias(self._model_name, self._challenger_alias, version)
        if release.promote:
            client.set_registered_model_alias(self._model_name, self._alias, version)
        decision = "promoted" if release.promote else "kept_champion"
        mlflow.set_tags({
            "promotion_decision": decision, "model_version": version,
            "champion_version_before": release.champion_version or "none",
            "holdout_start": release.holdout["start"], "holdout_end": release.holdout["end"],
            "trained_until": str(model.trained_until),
        })
        mlflow.log_metrics({"challenger_holdout_mae_kw": release.challenger_mae_kw,
                            "holdout_rows": release.holdout["rows"]})
        if release.champion_mae_kw is not None:
            mlflow.log_metric("champion_holdout_mae_kw", release.champion_mae_kw)
        logger.info("Registered %s version %s (%s).", self._model_name, version, decision)

    def _describe(self) -> dict[str, Any]:
        return {"model_name": self._model_name, "alias": self._alias}


class MlflowFiguresDataset(AbstractDataset[None, dict]):
    """Save-only: log each matplotlib figure of a dict as `<artifact_dir>/<key>.png` in
    the active MLflow run."""

    def __init__(self, artifact_dir: str = "figures", metadata: dict[str, Any] | None = None):
        self._artifact_dir = artifact_dir
        self.metadata = metadata

    def load(self) -> None:
        raise DatasetError(f"{type(self).__name__} is save-only")

    def save(self, figures: dict) -> None:
        import matplotlib.pyplot as plt

        for name, figure in figures.items():
            mlflow.log_figure(figure, f"{self._artifact_dir}/{name}.png")
            plt.close(figure)

    def _describe(self) -> dict[str, Any]:
        return {"artifact_dir": self._artifact_dir}
