"""Project hooks."""

from __future__ import annotations

import atexit
import gc
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kedro.framework.context import KedroContext
from kedro.framework.hooks import hook_impl
from kedro.io import CatalogProtocol
from kedro.pipeline.node import Node

from turbine_monitor.fleet import Farm
from turbine_monitor.values import FarmFailures, ModelRelease, Partitions, Skipped

#: The training output that holds the release decided by `decide_promotion`.
RELEASE = "champions@release"
#: The champions as scoring and alert detection read them.
SCORING_CHAMPIONS = "champions@registry"


class LoggingLevels:
    """MLflow and kedro-mlflow set their loggers' levels when they are imported, which is
    after Kedro applied `conf/logging.yml`: apply its levels again as a session starts."""

    @hook_impl(tryfirst=True)
    def after_context_created(self) -> None:
        from kedro.framework.project import LOGGING

        for name, options in LOGGING.get("loggers", {}).items():
            if "level" in options:
                logging.getLogger(name).setLevel(options["level"])


class ForgetFinishedMlflowRun:
    """kedro-mlflow's hook is one object per process and keeps the id of the last run it
    opened; when a later session in the same process runs a pipeline whose tracking is
    disabled (ingestion, inference), it reopens that finished run before every node and
    leaves it active. Clearing the id before each pipeline run keeps sessions apart
    (tests, notebooks, any long-lived process)."""

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self) -> None:
        # Imported here, not at module level: settings.py imports this module, and
        # scripts that only read configuration should not pay for importing MLflow.
        from kedro_mlflow.framework.hooks.mlflow_hook import mlflow_hook

        mlflow_hook.run_id = None


class FrozenStartupObjects:
    """Keep Python's cyclic garbage collector off the objects that exist when the
    process's first pipeline starts (the imported libraries, the session, its catalog:
    ~300,000 objects once MLflow, scikit-learn, Prefect and Kedro are imported, ~0.2 s a
    full collection), so that a full collection during a run scans only what came after:
    a 100-farm live run triggers one or two. Frozen once per process and kept frozen
    until it exits: freezing again at every run would also freeze the garbage earlier
    runs left (a long-lived process, e.g. ingestion, training and the backlog in one),
    which then could not be freed. At exit they go back to the collector, for the
    libraries that check that their objects were freed (DuckDB's bindings)."""

    def __init__(self) -> None:
        self._frozen = False

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self) -> None:
        if not self._frozen:
            gc.freeze()
            atexit.register(gc.unfreeze)
            self._frozen = True


class ModelRegistryHooks:
    """Right after the training node that decides a release has run, in its MLflow run:
    register the release (`registry.register_release`: a new version of the farm's
    registered model, `<model.name>-<farm_id>` of `globals.yml`, aliased `challenger`, and
    `champion` if so decided), or tag the run with why nothing was trained. A new
    champion is then read once as scoring reads it (`champions@registry`), so that its
    model cache holds it before the next live run needs it."""

    def __init__(self) -> None:
        self._model_name: str | None = None
        self._catalog: CatalogProtocol | None = None

    @hook_impl
    def after_context_created(self, context: KedroContext) -> None:
        self._model_name = context.config_loader["globals"]["model"]["name"]

    @hook_impl
    def after_catalog_created(self, catalog: CatalogProtocol) -> None:
        self._catalog = catalog

    @hook_impl
    def after_node_run(self, node: Node, outputs: dict[str, Any], inputs: dict[str, Any]) -> None:
        release = outputs.get(RELEASE)
        if release is None:
            return
        import mlflow

        if mlflow.active_run() is not None and isinstance(farm := inputs.get("training_farm"), Farm):
            mlflow.set_tag("farm_id", farm.farm_id)
        if isinstance(release, ModelRelease):
            from turbine_monitor.registry import farm_model_name, register_release

            register_release(release, farm_model_name(self._model_name, release.farm_id))
            if release.promote and SCORING_CHAMPIONS in self._catalog:
                self._catalog.load(SCORING_CHAMPIONS)[release.farm_id]()
        elif isinstance(release, Skipped) and mlflow.active_run() is not None:
            mlflow.set_tag("training_skipped", release.reason)


class FarmFailureHooks:
    """A farm whose work failed (its model would not load, its partition could not be
    read) does not stop the other farms': the datasets record it with what they saved
    (`values.Partitions.saved`) and the run goes on; at its very end (after every
    other hook) this raises `values.FarmFailures` naming those farms, so that the run
    ends failed: `kedro run` exits 1 with that one message, a Prefect flow run ends
    Failed."""

    def __init__(self) -> None:
        self._failures: dict[str, Exception] = {}

    @hook_impl
    def before_pipeline_run(self) -> None:
        self._failures = {}

    @hook_impl
    def after_dataset_saved(self, data: Any) -> None:
        if isinstance(data, Partitions):
            for saved in data.saved:
                self._failures.update(saved.get("failures", {}))

    @hook_impl(trylast=True)
    def after_pipeline_run(self) -> None:
        if self._failures:
            failures, self._failures = self._failures, {}
            raise FarmFailures(failures)


class RunSummaryHooks:
    """At the end of a pipeline run, one log record saying what happened and where to
    look: records ingested and quarantined, the model decision with its holdout MAE,
    rows scored, alerts open. Inside `deferred()`, the runs of several sessions add up
    to one record, logged as it ends (`kedro run-fleet`)."""

    def __init__(self) -> None:
        self._lines: dict[str, str] = {}
        self._counts: dict[str, int] = {}
        self._deferred = False

    @contextmanager
    def deferred(self) -> Iterator[None]:
        self._deferred = True
        self._reset()
        try:
            yield
        finally:
            self._deferred = False
            self._log()

    def _reset(self) -> None:
        self._lines, self._counts = {}, {}

    def _add(self, **counts: int) -> dict[str, int]:
        for name, value in counts.items():
            self._counts[name] = self._counts.get(name, 0) + int(value)
        return self._counts

    @hook_impl
    def before_pipeline_run(self) -> None:
        if not self._deferred:
            self._reset()

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any) -> None:
        name = dataset_name.split("@")[0]
        if name == "scada" and isinstance(data, dict) and len(files := data["files"]):
            n = self._add(files=len(files), read=files["rows_read"].sum(),
                          accepted=files["rows_accepted"].sum(), duplicate=files["rows_duplicate"].sum(),
                          quarantined=files["rows_quarantined"].sum())
            self._lines["ingested"] = (
                f"ingested {n['files']} file(s): {n['read']:,} records, {n['accepted']:,} accepted, "
                f"{n['duplicate']:,} duplicate, {n['quarantined']:,} quarantined (table scada_quarantine)")
        elif name == "champions" and isinstance(data, ModelRelease):
            champion = "no champion before" if data.champion_mae_kw is None else (
                f"champion {data.champion_mae_kw:.1f} kW")
            self._lines[f"model {data.farm_id}"] = (
                f"model of {data.farm_id} {data.decision}: holdout MAE {data.challenger_mae_kw:.1f} kW "
                f"({champion})")
        elif name == "champions" and isinstance(data, Skipped):
            self._lines[f"model {data.reason}"] = f"training skipped: {data.reason}"
        elif name == "predictions" and isinstance(data, Partitions):
            n = self._add(scored=sum(saved.get("rows", 0) for saved in data.saved))
            self._lines["scored"] = f"scored {n['scored']:,} rows (table predictions)"
        elif name == "alerts" and isinstance(data, Partitions):
            self._counts["open"] = sum(saved.get("open", 0) for saved in data.saved)  # the latest run's
            farms = sum(saved.get("farms", 0) for saved in data.saved)
            self._lines["alerts"] = f"{self._counts['open']} alert(s) open in {farms} farm(s) (table alerts)"
        elif name == "kpi_daily" and isinstance(data, Partitions):
            n = self._add(kpi_days=sum(saved.get("days", 0) for saved in data.saved))
            self._lines["kpis"] = f"reported {n['kpi_days']:,} turbine day(s) (table kpi_daily)"

    @hook_impl
    def after_pipeline_run(self) -> None:
        if not self._deferred:
            self._log()

    def _log(self) -> None:
        if self._lines:
            logging.getLogger(__name__).info(
                "Summary:\n  %s\nNext: `make up` runs the monitor live; `make dashboard` shows the results; "
                "`make mlflow-ui`, `make viz` and `make notebook` the model, the pipelines and the data.",
                "\n  ".join(self._lines.values()))
