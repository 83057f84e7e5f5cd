"""Prefect flows running the project's Kedro pipelines, and their deployments.

Each flow opens one KedroSession with the project's hooks (so kedro-mlflow opens at
most one MLflow run) and runs one pipeline with `PrefectTaskRunner`: every Kedro node
is a Prefect task run, and Kedro's log records go to the Prefect API. The flows hold
no pipeline logic: they publish what the pipeline did (artifacts, alert events) and
skip scheduled runs that start too late. Configuration: `conf/<env>/prefect.yml`.

Kedro is imported here, at module level, on purpose: importing it inside a task run
reconfigures logging under Prefect's feet.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import mlflow
import pandas as pd
from kedro.config import OmegaConfigLoader
from kedro.framework.hooks import hook_impl
from kedro.framework.project import settings
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.io import CatalogProtocol
from prefect import flow, get_client, get_run_logger, runtime
from prefect.artifacts import create_table_artifact
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.objects import ConcurrencyLimitConfig
from prefect.events import emit_event
from prefect.exceptions import ObjectAlreadyExists
from prefect.logging.handlers import APILogHandler
from prefect.states import Completed, State

from turbine_monitor.orchestration.runner import PrefectTaskRunner

PROJECT_ROOT = Path(__file__).resolve().parents[3]
FLOWS_FILE = Path(__file__).resolve().relative_to(PROJECT_ROOT).as_posix()
FORWARDED_LOGGERS = ("kedro", "kedro_mlflow", "turbine_monitor")

bootstrap_project(PROJECT_ROOT)


def load_config(conf_source: str | None = None, env: str | None = None) -> dict[str, Any]:
    """The `prefect:` section of the Kedro configuration (`prefect*.yml`)."""
    loader = OmegaConfigLoader(conf_source=conf_source or str(PROJECT_ROOT / settings.CONF_SOURCE), env=env,
                               **settings.CONFIG_LOADER_ARGS)
    return loader["prefect"]["prefect"]


def stale_skip_message(scheduled: datetime, started: datetime, interval_s: float,
                       intervals: float) -> str | None:
    """Why a scheduled run that started at `started` must not do its work, or None:
    it started more than `intervals` schedule intervals after its scheduled time."""
    late_s, limit_s = (started - scheduled).total_seconds(), interval_s * intervals
    if late_s <= limit_s:
        return None
    return f"Skipped: started {late_s:.0f} s after its scheduled time (limit {limit_s:.0f} s)."


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of `frame` as JSON-ready dicts (ISO timestamps, NaN as None)."""
    return json.loads(frame.to_json(orient="records", date_format="iso"))


class FlowRunHooks:
    """Kedro hooks a flow adds to its session: tag the MLflow run kedro-mlflow opened
    (if any) with the Prefect flow run id, count the rows each dataset saved, and keep
    the session's catalog (to read results after the run)."""

    def __init__(self, flow_run_id: str):
        self.flow_run_id = flow_run_id
        self.mlflow_run_id: str | None = None
        self.rows_saved: dict[str, int] = {}
        self.catalog: CatalogProtocol | None = None

    @hook_impl
    def after_catalog_created(self, catalog: CatalogProtocol) -> None:
        self.catalog = catalog

    @hook_impl(trylast=True)  # after kedro-mlflow's hook has started the run
    def before_pipeline_run(self) -> None:
        if (run := mlflow.active_run()) is not None:
            mlflow.set_tag("prefect_flow_run_id", self.flow_run_id)
            self.mlflow_run_id = run.info.run_id

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any) -> None:
        if isinstance(data, pd.DataFrame):
            self.rows_saved[dataset_name] = len(data)


@contextmanager
def kedro_logs_to_prefect() -> Iterator[None]:
    """Send the records of Kedro's, kedro-mlflow's and the project's loggers to the
    Prefect API, attached to the task run (or else the flow run) emitting them. Loggers
    already forwarded (PREFECT_LOGGING_EXTRA_LOGGERS) are left alone."""
    handler = APILogHandler()
    loggers = [logger for logger in map(logging.getLogger, FORWARDED_LOGGERS)
               if not any(isinstance(h, APILogHandler) for h in logger.handlers)]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


@contextmanager
def kedro_session(env: str, runtime_params: dict | None, conf_source: str | None,
                  hooks: FlowRunHooks) -> Iterator[KedroSession]:
    """One KedroSession with the project's hooks and `hooks`, logging to Prefect."""
    with kedro_logs_to_prefect(), KedroSession.create(
            project_path=PROJECT_ROOT, env=env, conf_source=conf_source, runtime_params=runtime_params,
    ) as session:
        session._hook_manager.register(hooks)  # no public way to add a hook to one session
        yield session


def skip_if_stale(config: dict[str, Any], deployment: str) -> State | None:
    """A Completed "Skipped: ..." state if this run started too long after its
    scheduled time (a retry of a run that started in time is never skipped)."""
    if runtime.flow_run.run_count > 1:
        return None
    message = stale_skip_message(runtime.flow_run.scheduled_start_time, datetime.now(UTC),
                                 config["deployments"][deployment]["interval_seconds"],
                                 config["stale_after_intervals"])
    if message is None:
        return None
    get_run_logger().warning(message)
    return Completed(message=message)


def _flow_options(deployment: str) -> dict[str, Any]:
    """Flow-level retries from the project's configuration (read when the flow is
    defined: a worker loads the flow from this file)."""
    spec = load_config()["deployments"][deployment]
    return {"retries": spec["retries"], "retry_delay_seconds": spec["retry_delay_seconds"]}


@flow(name="turbine-monitor-training", **_flow_options("training"))
def training_flow(env: str = "local", runtime_params: dict | None = None,
                  conf_source: str | None = None) -> State | None:
    """Run the training pipeline; publish the holdout metrics, the promotion decision
    and the MLflow run id as the `training-summary` table artifact."""
    config = load_config(conf_source, env)
    if skipped := skip_if_stale(config, "training"):
        return skipped
    hooks = FlowRunHooks(runtime.flow_run.id)
    with kedro_session(env, runtime_params, conf_source, hooks) as session:
        session.run(pipeline_names=["training"], runner=PrefectTaskRunner(config["tasks"]))
        if hooks.mlflow_run_id is None:
            get_run_logger().warning("Training is not tracked in MLflow (mlflow.yml): no summary.")
            return None
        run = mlflow.MlflowClient().get_run(hooks.mlflow_run_id)
    tags, metrics = run.data.tags, run.data.metrics
    decision = tags.get("promotion_decision") or f"skipped: {tags.get('training_skipped', 'unknown')}"
    rows = [{"name": "promotion_decision", "value": decision},
            {"name": "model_version", "value": tags.get("model_version", "")},
            {"name": "mlflow_run_id", "value": run.info.run_id}]
    rows += [{"name": name, "value": value} for name, value in sorted(metrics.items())
             if name.startswith("holdout.") or name.endswith("_holdout_mae_kw")]
    create_table_artifact(rows, key="training-summary", description=(
        f"Training: **{decision}**; MLflow run `{run.info.run_id}`."))
    return None


@flow(name="turbine-monitor-inference", **_flow_options("inference"))
def inference_flow(env: str = "local", runtime_params: dict | None = None,
                   conf_source: str | None = None) -> State | None:
    """Run the inference pipeline (ingest, score, update alerts); emit a
    `turbine-monitor.alert.opened` event per newly opened alert and publish the rows
    scored and the open alerts as the `inference-summary` table artifact."""
    config = load_config(conf_source, env)
    if skipped := skip_if_stale(config, "inference"):
        return skipped
    hooks = FlowRunHooks(runtime.flow_run.id)
    started = datetime.now(UTC)
    with kedro_session(env, runtime_params, conf_source, hooks) as session:
        session.run(pipeline_names=["inference"], runner=PrefectTaskRunner(config["tasks"]))
        alerts = hooks.catalog.load("alerts")
    # The warehouse stamps an alert's `opened_at` when it first stores it: no need to
    # open the (possibly locked) warehouse before the nodes, which retry a lock.
    opened = alerts[alerts["opened_at"] >= started]
    for alert in records(opened):
        emit_event(event="turbine-monitor.alert.opened",
                   resource={"prefect.resource.id": f"turbine-monitor.turbine.{alert['turbine_id']}"},
                   payload=alert)
    open_alerts = alerts[alerts["end_ts"].isna()]
    rows_scored = hooks.rows_saved.get("predictions@table", 0)
    create_table_artifact(
        records(open_alerts[["turbine_id", "kind", "start_ts", "records", "energy_lost_kwh"]]),
        key="inference-summary",
        description=(f"Rows scored: **{rows_scored}**. Open alerts: **{len(open_alerts)}** "
                     f"({len(opened)} newly opened)."))
    return None


def concurrency_limit(spec: dict[str, Any]) -> ConcurrencyLimitConfig:
    """A deployment's concurrency limit from its `prefect.yml` entry."""
    return ConcurrencyLimitConfig(limit=spec["concurrency_limit"],
                                  collision_strategy=spec["collision_strategy"],
                                  grace_period_seconds=spec["grace_period_seconds"])


def register_deployment(deployment: str, conf_source: str | None = None, env: str | None = None) -> UUID:
    """Create or update in place the interval-scheduled deployment `deployment`
    (`prefect.yml`: deployments) on the process work pool, created if missing.

    The configuration is read from `conf_source` (default: the project's `conf/`) and
    Kedro environment `env`; either one, when given, is also added to the deployment's
    parameters, so that the flow runs read the same configuration."""
    config = load_config(conf_source, env)
    pool, spec = config["work_pool"], config["deployments"][deployment]
    parameters = {**spec["parameters"], **({"conf_source": conf_source} if conf_source else {}),
                  **({"env": env} if env else {})}
    with get_client(sync_client=True) as client, suppress(ObjectAlreadyExists):
        client.create_work_pool(WorkPoolCreate(name=pool["name"], type=pool["type"]))
    source = flow.from_source(source=str(PROJECT_ROOT), entrypoint=f"{FLOWS_FILE}:{spec['flow']}")
    return source.deploy(
        name=spec["name"], work_pool_name=pool["name"], work_queue_name=spec["work_queue"],
        interval=spec["interval_seconds"], parameters=parameters, tags=spec["tags"],
        concurrency_limit=concurrency_limit(spec),
        ignore_warnings=True,  # the process work pool is deliberate (not `flow.serve()`)
        print_next_steps=False,
    )
