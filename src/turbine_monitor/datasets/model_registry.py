"""Every farm's model of the MLflow registry, by alias, as a Kedro dataset that only reads."""

from __future__ import annotations

import hashlib
import pickle
import sys
from dataclasses import replace
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import mlflow
from kedro.io import AbstractDataset, DatasetError
from mlflow import MlflowClient

from turbine_monitor.nbm import CompiledForest
from turbine_monitor.values import FarmModels, RegisteredModel


class FarmModelsDataset(AbstractDataset):
    """The registered models `<model_name>-<farm_id>` that have `alias`: `load()` returns
    `values.FarmModels`, a dict from farm id to a function loading that farm's
    `values.RegisteredModel` (version, run id and the `power_model` the pyfunc wraps).
    Aliases are resolved in one registry query per load; a model is read when its
    function is first called, once per version for the life of the dataset (by version:
    the alias may move meanwhile). A farm without the alias (no champion yet) is absent.
    Read-only: training registers versions and moves aliases through the project's
    `ModelRegistryHooks`.

    A model is loaded in its serving form: its estimator also compiled
    (`nbm.CompiledForest`, when it can be), which predicts a live run's few rows faster.
    With `cache_dir`, a version read from MLflow is also kept there (by tracking store,
    model and version: a registered version never changes), so that the next process
    reads it in about a millisecond instead of loading the pyfunc again: a live run of a
    fleet loads every farm's champion. The scikit-learn estimator is kept in a file of
    its own, read only when a batch too large for the compiled forest needs it.

    Example (`conf/base/catalog.yml`)::

        champions:
          type: turbine_monitor.datasets.FarmModelsDataset
          model_name: turbine-power-nbm
          alias: champion
          cache_dir: data/06_models
    """

    def __init__(self, model_name: str, alias: str = "champion", cache_dir: str | None = None,
                 metadata: dict[str, Any] | None = None):
        self._model_name, self._alias, self.metadata = model_name, alias, metadata
        self._cache_dir = Path(cache_dir) if cache_dir else None
        self._loaded: dict[tuple[str, str], RegisteredModel] = {}

    def load(self) -> FarmModels:
        client, prefix = MlflowClient(), f"{self._model_name}-"
        models, page_token = [], None
        while True:
            page = client.search_registered_models(filter_string=f"name LIKE '{prefix}%'",
                                                   page_token=page_token)
            models += page
            if not (page_token := page.token):
                break
        return FarmModels({model.name.removeprefix(prefix): partial(self._model, model.name,
                                                                    str(model.aliases[self._alias]))
                           for model in models
                           if model.name.startswith(prefix) and self._alias in model.aliases})

    def _model(self, name: str, version: str) -> RegisteredModel:
        if (name, version) not in self._loaded:
            cached = self._cached(name, version)
            estimator_file = cached.with_name(f"{version}.estimator.pkl") if cached is not None else None
            if cached is not None and cached.exists():
                model = pickle.loads(cached.read_bytes())
                model.power_model.estimator = _PickledEstimator(estimator_file)
            else:
                model = self._serving_form(self._from_mlflow(name, version))
                if cached is not None:
                    _write_atomically(estimator_file, pickle.dumps(model.power_model.estimator))
                    lean = replace(model, power_model=replace(model.power_model, estimator=None))
                    _write_atomically(cached, pickle.dumps(lean))  # last: a complete entry
            self._loaded[name, version] = model
        return self._loaded[name, version]

    @staticmethod
    def _from_mlflow(name: str, version: str) -> RegisteredModel:
        # The version's own artifacts (a local path for a local store: nothing copied),
        # without MLflow's check of the installed packages against the model's
        # requirements (it reads every distribution; the model was logged from this
        # project's locked environment).
        uri = MlflowClient().get_model_version_download_uri(name, version)
        # The model ships this project's code (`code_paths`) for use elsewhere; here that
        # code is already imported, so MLflow's prepending of it to sys.path is undone
        # (one entry per model load would pile up, and shadow the project's own modules).
        search_path = list(sys.path)
        try:
            pyfunc = mlflow.pyfunc.load_model(mlflow.artifacts.download_artifacts(artifact_uri=uri),
                                              suppress_warnings=True)
        finally:
            sys.path[:] = search_path
        return RegisteredModel(version=version, run_id=pyfunc.metadata.run_id,
                               power_model=pyfunc.unwrap_python_model().power_model)

    @staticmethod
    def _serving_form(model: RegisteredModel) -> RegisteredModel:
        """`model` with its estimator compiled, if it can be."""
        try:
            forest = CompiledForest.of(model.power_model.estimator)
        except ValueError:  # another kind of model: its estimator predicts alone
            return model
        return replace(model, power_model=replace(model.power_model, forest=forest))

    def _cached(self, name: str, version: str) -> Path | None:
        if self._cache_dir is None:
            return None
        store = hashlib.sha256(mlflow.get_tracking_uri().encode()).hexdigest()[:12]
        return self._cache_dir / store / name / f"{version}.serving.pkl"

    def save(self, data: Any) -> None:
        raise DatasetError("FarmModelsDataset is read-only: training registers models (ModelRegistryHooks)")

    def _describe(self) -> dict[str, Any]:
        return {"model_name": self._model_name, "alias": self._alias}


class _PickledEstimator:
    """A cached model's scikit-learn estimator, read from its file when first used."""

    def __init__(self, path: Path):
        self._path = path

    @cached_property
    def _estimator(self) -> Any:
        return pickle.loads(self._path.read_bytes())

    def predict(self, features: Any) -> Any:
        return self._estimator.predict(features)


def _write_atomically(path: Path, content: bytes) -> None:
    """`content` to `path` through a temporary file: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial_file = path.with_suffix(".tmp")
    partial_file.write_bytes(content)
    partial_file.replace(path)
