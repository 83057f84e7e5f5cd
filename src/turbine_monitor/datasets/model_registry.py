"""A model of the MLflow registry, by alias, as a Kedro dataset that only reads."""

from __future__ import annotations

from typing import Any

from kedro_mlflow.io.models import MlflowModelRegistryDataset
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

from turbine_monitor.values import RegisteredModel


class ModelRegistryDataset(MlflowModelRegistryDataset):
    """kedro-mlflow's registry dataset loading `models:/<model_name>@<alias>`, as a
    `values.RegisteredModel` (version, run id and the `power_model` the pyfunc wraps), or
    None while no version has the alias (a fresh registry has no champion). The alias is
    resolved on every load, the model read once per version (by version: the alias may
    move meanwhile). Read-only: training registers versions and moves aliases through
    the project's `ModelRegistryHooks`.

    Example (`conf/base/catalog.yml`)::

        champion_model:
          type: turbine_monitor.datasets.ModelRegistryDataset
          model_name: turbine-power-nbm
          alias: champion
    """

    def __init__(self, model_name: str, alias: str = "champion", metadata: dict[str, Any] | None = None):
        # The model was logged from this project's locked environment: skip MLflow's check
        # of the installed packages against its requirements (it reads every distribution).
        super().__init__(model_name=model_name, alias=alias, load_args={"suppress_warnings": True},
                         metadata=metadata)
        self._loaded: RegisteredModel | None = None

    def _load(self) -> RegisteredModel | None:
        client = MlflowClient()
        try:
            aliases = client.get_registered_model(self.model_name).aliases
        except MlflowException as exc:
            if exc.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
                return None
            raise
        if self.alias not in aliases:
            return None
        version = str(aliases[self.alias])
        if self._loaded is None or self._loaded.version != version:
            pyfunc = self._mlflow_model_module.load_model(f"models:/{self.model_name}/{version}",
                                                          **self._load_args)
            self._loaded = RegisteredModel(version=version, run_id=pyfunc.metadata.run_id,
                                           power_model=pyfunc.unwrap_python_model().power_model)
        return self._loaded
