"""Project hooks."""

from __future__ import annotations

import logging
from typing import Any

from kedro.framework.context import KedroContext
from kedro.framework.hooks import hook_impl
from kedro.pipeline.node import Node

from turbine_monitor.values import AlertUpdate, ModelRelease, Skipped

#: The training output that holds the release decided by `decide_promotion`.
RELEASE = "champion_model@release"


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


class ModelRegistryHooks:
    """Right after the training node that decides a release has run, in its MLflow run:
    register the release (`registry.register_release`: a new version of the registered
    model of `globals.yml`, aliased `challenger`, and `champion` if so decided), or tag
    the run with why nothing was trained."""

    def __init__(self) -> None:
        self._model_name: str | None = None

    @hook_impl
    def after_context_created(self, context: KedroContext) -> None:
        self._model_name = context.config_loader["globals"]["model"]["name"]

    @hook_impl
    def after_node_run(self, node: Node, outputs: dict[str, Any]) -> None:
        release = outputs.get(RELEASE)
        if isinstance(release, ModelRelease):
            from turbine_monitor.registry import register_release

            register_release(release, self._model_name)
        elif isinstance(release, Skipped):
            import mlflow

            if mlflow.active_run() is not None:
                mlflow.set_tag("training_skipped", release.reason)


class RunSummaryHooks:
    """At the end of a pipeline run, one log record saying what happened and where to
    look: records ingested and quarantined, the model decision with its holdout MAE,
    rows scored, alerts open."""

    def __init__(self) -> None:
        self._lines: dict[str, str] = {}

    @hook_impl
    def before_pipeline_run(self) -> None:
        self._lines = {}

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any) -> None:
        name = dataset_name.split("@")[0]
        if name == "scada" and isinstance(data, dict) and len(files := data["files"]):
            self._lines["ingested"] = (
                f"ingested {len(files)} file(s): {files['rows_read'].sum():,} records, "
                f"{files['rows_accepted'].sum():,} accepted, {files['rows_duplicate'].sum():,} duplicate, "
                f"{files['rows_quarantined'].sum():,} quarantined (table scada_quarantine)")
        elif name == "champion_model" and isinstance(data, ModelRelease):
            champion = "no champion before" if data.champion_mae_kw is None else (
                f"champion {data.champion_mae_kw:.1f} kW")
            self._lines["model"] = (f"model {data.decision}: holdout MAE {data.challenger_mae_kw:.1f} kW "
                                    f"({champion})")
        elif name == "champion_model" and isinstance(data, Skipped):
            self._lines["model"] = f"training skipped: {data.reason}"
        elif name == "predictions":
            self._lines["scored"] = f"scored {len(data):,} rows (table predictions)"
        elif name == "alerts" and isinstance(data, AlertUpdate):
            open_alerts = data.episodes[data.episodes["end_ts"].isna()]
            self._lines["alerts"] = (f"{len(open_alerts)} alert(s) open, {len(data.episodes)} episode(s) "
                                     f"since {data.since:%Y-%m-%d} (table alerts)")

    @hook_impl
    def after_pipeline_run(self) -> None:
        if self._lines:
            logging.getLogger(__name__).info(
                "Summary:\n  %s\nNext: `make up` runs the monitor live; `make mlflow-ui`, `make viz` and "
                "`make notebook` show the model, the pipelines and the results.",
                "\n  ".join(self._lines.values()))
