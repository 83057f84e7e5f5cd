"""Prefect flows running the project's Kedro pipelines, and their deployments.

Each flow run reads its configuration (`conf/<env>/prefect.yml`) from its own `env` and
`conf_source` parameters, opens one KedroSession with the project's hooks (so
kedro-mlflow opens at most one MLflow run) and runs one pipeline with
`PrefectTaskRunner`: every Kedro node is a Prefect task run, and Kedro's log records go
to the Prefect API. (An inference run that may score a backlog on the workers,
`fleet.scoring_deployment`, opens one for ingestion and, unless it did, one for
scoring.) The flows hold no pipeline logic: they publish what the pipeline did
(artifacts, alert events), skip scheduled runs that start too late, and log where
their time went (a `Timings: {...}` line). A failed run is not retried: the next
scheduled run does its work (ingestion, scoring and training all pick up from what the
warehouse and the registry hold).

Kedro is imported here, at module level, on purpose: importing it inside a task run
reconfigures logging under Prefect's feet. Importing this module has no other effect
than importing.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pandas as pd
import psutil
from kedro.framework.hooks import hook_impl
from kedro.framework.session import KedroSession
from kedro.io import CatalogProtocol
from prefect import flow, get_client, get_run_logger, runtime, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterDeploymentId,
    FlowRunFilterId,
    FlowRunFilterName,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import ConcurrencyLimitConfig, Flow, FlowRun, StateType
from prefect.deployments import run_deployment
from prefect.deployments.runner import EntrypointType, deploy
from prefect.events import emit_event
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.logging.handlers import APILogHandler
from prefect.states import Completed, State

from turbine_monitor.hooks import RELEASE
from turbine_monitor.orchestration.runner import PrefectTaskRunner
from turbine_monitor.project import kedro_session, load_config
from turbine_monitor.values import FarmFailures, ModelRelease, Partitions, Skipped

# isort: split
# Imported now rather than when the session opens: a worker starts a flow run's process
# `prefetch_seconds` before its scheduled time and the process imports this module while
# it waits, so that these imports (~1.5 s: the project's pipelines with scikit-learn and
# MLflow, MLflow's SQL stores) do not delay the run.
import kedro_mlflow.framework.hooks  # noqa: F401
import mlflow.store.model_registry.sqlalchemy_store  # noqa: F401
import mlflow.store.tracking.sqlalchemy_store  # noqa: F401

import turbine_monitor.pipeline_registry  # noqa: F401

FORWARDED_LOGGERS = ("kedro", "kedro_mlflow", "turbine_monitor")  # at their levels in conf/logging.yml
TIMINGS_PREFIX = "Timings: "
FLOW_RUN_TAG = "prefect_flow_run_id"  # on the MLflow run of a training flow run
ALERT_OPENED = "turbine-monitor.alert.opened"  # the event of an alert opened live
IN_FLIGHT = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.CANCELLING]

logger = logging.getLogger(__name__)


def prefect_config(conf_source: str | None = None, env: str | None = None) -> dict[str, Any]:
    """The `prefect:` section of the Kedro configuration (`prefect*.yml`)."""
    return load_config("prefect", conf_source, env)["prefect"]


def stale_skip_message(scheduled: datetime, started: datetime, interval_s: float,
                       intervals: float) -> str | None:
    """Why a scheduled run that started at `started` must not do its work, or None:
    it started more than `intervals` schedule intervals after its scheduled time."""
    late_s, limit_s = (started - scheduled).total_seconds(), interval_s * intervals
    if late_s <= limit_s:
        return None
    return f"Skipped: started {late_s:.0f} s after its scheduled time (limit {limit_s:.0f} s)."


def skipped_as_stale(state: State) -> bool:
    """Whether a flow run ended without doing its work because it started too late."""
    return state.is_completed() and (state.message or "").startswith("Skipped:")


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of `frame` as JSON-ready dicts (ISO timestamps, NaN as None)."""
    return json.loads(frame.to_json(orient="records", date_format="iso"))


class RunTimings:
    """Where a flow run's time goes: the CPU its process spent starting (interpreter,
    imports, Prefect's engine) before the flow began, opening the Kedro session, the
    pipeline, publishing; logged as one `Timings: {json}` line at the end."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self.flow_started = time.time()
        self.startup_cpu_s = self._cpu()
        self.process_started_s = self.flow_started - self._process.create_time()
        self.pipeline_started: float | None = None
        self.pipeline_ended: float | None = None

    def _cpu(self) -> float:
        times = self._process.cpu_times()
        return times.user + times.system

    def log(self) -> dict[str, Any]:
        end = time.time()
        pipeline_started = self.pipeline_started or end
        pipeline_ended = self.pipeline_ended or pipeline_started
        timings = {
            "startup_cpu_s": round(self.startup_cpu_s, 2),
            "process_started_s": round(self.process_started_s, 2),
            "session_s": round(pipeline_started - self.flow_started, 2),
            "pipeline_s": round(pipeline_ended - pipeline_started, 2),
            "publish_s": round(end - pipeline_ended, 2),
            "process_cpu_s": round(self._cpu(), 2),
            "nice": self._process.nice(),
        }
        get_run_logger().info(TIMINGS_PREFIX + json.dumps(timings))
        return timings


class FlowRunHooks:
    """Kedro hooks a flow adds to its session: tag the MLflow run kedro-mlflow opened
    (if any) with the Prefect flow run id and end the MLflow runs earlier flow runs
    left running, time the pipeline, count the rows each dataset saved, and keep the
    session's catalog (to read results after the run)."""

    def __init__(self, flow_run_id: str, timings: RunTimings):
        self.flow_run_id = flow_run_id
        self.timings = timings
        self.mlflow_run_id: str | None = None
        self.rows_saved: dict[str, int] = {}
        self.catalog: CatalogProtocol | None = None
        self.outputs: dict[str, Any] = {}  # the pipeline's output datasets, once it has run
        self.farm_failures: dict[str, Exception] = {}  # farms whose work failed (the others' was saved)
        self.config: dict[str, Any] = {}  # the run's `prefect.yml`

    @hook_impl
    def after_catalog_created(self, catalog: CatalogProtocol) -> None:
        self.catalog = catalog

    @hook_impl(trylast=True)  # after kedro-mlflow's hook has started the run
    def before_pipeline_run(self) -> None:
        import mlflow

        if (run := mlflow.active_run()) is not None:
            mlflow.set_tag(FLOW_RUN_TAG, self.flow_run_id)
            self.mlflow_run_id = run.info.run_id
            end_abandoned_mlflow_runs(run.info.experiment_id)
        if self.timings.pipeline_started is None:  # a flow run's first pipeline (of one or two)
            self.timings.pipeline_started = time.time()

    @hook_impl
    def after_pipeline_run(self) -> None:
        self.timings.pipeline_ended = time.time()

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any) -> None:
        if isinstance(data, pd.DataFrame):
            self.rows_saved[dataset_name] = len(data)
        elif isinstance(data, Partitions):
            self.rows_saved[dataset_name] = sum(saved.get("rows", 0) for saved in data.saved)


def end_abandoned_mlflow_runs(experiment_id: str) -> list[str]:
    """End as KILLED the MLflow runs of `experiment_id` still RUNNING whose Prefect flow
    run has ended (or is gone): their process was killed before kedro-mlflow could end
    them. Returns their MLflow run ids."""
    from mlflow import MlflowClient

    client = MlflowClient()
    ended = []
    with get_client(sync_client=True) as prefect:
        for run in client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'"):
            flow_run_id = run.data.tags.get(FLOW_RUN_TAG)
            if flow_run_id is None:
                continue
            try:
                state = prefect.read_flow_run(UUID(flow_run_id)).state
            except ObjectNotFound:
                state = None
            if state is None or state.is_final():
                client.set_terminated(run.info.run_id, "KILLED")
                logger.warning("Ended MLflow run %s as KILLED: its flow run %s ended %s.", run.info.run_id,
                               flow_run_id, state.name if state else "and is gone")
                ended.append(run.info.run_id)
    return ended


def end_mlflow_run_of(flow: Flow, flow_run: FlowRun, state: State) -> None:
    """Prefect state hook (crashed, cancelled): end as KILLED the MLflow run kedro-mlflow
    started in this flow run's process, if any (else MLflow's exit handler would end it
    FINISHED)."""
    if "mlflow" not in sys.modules:  # the session never opened: no MLflow run
        return
    import mlflow

    with suppress(Exception):  # a state hook must not hide why the run ended
        if mlflow.active_run() is not None:
            mlflow.end_run(status="KILLED")


@contextmanager
def kedro_logs_to_prefect() -> Iterator[None]:
    """Send the records of Kedro's, kedro-mlflow's and the project's loggers to the
    Prefect API, attached to the task run (or else the flow run) emitting them. Loggers
    already forwarded (PREFECT_LOGGING_EXTRA_LOGGERS) are left alone."""
    handler = APILogHandler()
    forwarded = [named for named in map(logging.getLogger, FORWARDED_LOGGERS)
                 if not any(isinstance(h, APILogHandler) for h in named.handlers)]
    for named in forwarded:
        named.addHandler(handler)
    try:
        yield
    finally:
        for named in forwarded:
            named.removeHandler(handler)


@contextmanager
def flow_run_session(env: str, runtime_params: dict | None, conf_source: str | None,
                     hooks: FlowRunHooks) -> Iterator[KedroSession]:
    """One KedroSession with the project's hooks and `hooks`, logging to Prefect."""
    with kedro_logs_to_prefect(), kedro_session(conf_source, env, runtime_params, (hooks,)) as session:
        yield session


def skip_if_stale(config: dict[str, Any], deployment: str) -> State | None:
    """A Completed "Skipped: ..." state if this run started too long after its
    scheduled time (a retry of a run that started in time, or a run another flow run
    started, e.g. one farm of a training round, is never skipped)."""
    if runtime.flow_run.run_count > 1 or runtime.flow_run.parent_flow_run_id is not None:
        return None
    message = stale_skip_message(runtime.flow_run.scheduled_start_time, datetime.now(UTC),
                                 config["deployments"][deployment]["interval_seconds"],
                                 config["stale_after_intervals"])
    if message is None:
        return None
    get_run_logger().warning(message)
    return Completed(message=message)


def start_flow_run(deployment: str, env: str, conf_source: str | None) -> FlowRunHooks | State:
    """The flow-run hooks of this flow run of `deployment` (its timings started, its
    `prefect.yml` read), or, if the run started too late, the Completed "Skipped" state
    for the flow to return."""
    timings = RunTimings()
    config = prefect_config(conf_source, env)
    if skipped := skip_if_stale(config, deployment):
        return skipped
    hooks = FlowRunHooks(runtime.flow_run.id, timings)
    hooks.config = config
    return hooks


def run_session(hooks: FlowRunHooks, pipeline: str, env: str, runtime_params: dict | None,
                conf_source: str | None) -> None:
    """Run the Kedro `pipeline` in a session of its own with `hooks`, which gather what it
    did (farms whose work failed added to `farm_failures`: the other farms' work was saved)."""
    runner = PrefectTaskRunner(hooks.config["tasks"], hooks.config["fleet"]["partition_parallelism"])
    with flow_run_session(env, runtime_params, conf_source, hooks) as session:
        try:
            hooks.outputs = session.run(pipeline_names=[pipeline], runner=runner)
        except FarmFailures as failures:
            hooks.farm_failures.update(failures.failures)


def run_pipeline(deployment: str, pipeline: str, env: str, runtime_params: dict | None,
                 conf_source: str | None) -> FlowRunHooks | State:
    """Run the Kedro `pipeline` in this flow run of `deployment` and return what the
    flow-run hooks gathered (farms whose work failed in `farm_failures`: the other farms'
    work was saved), or, if the run started too late, the Completed "Skipped" state for
    the flow to return."""
    run = start_flow_run(deployment, env, conf_source)
    if not isinstance(run, State):
        run_session(run, pipeline, env, runtime_params, conf_source)
    return run


@task(cache_policy=NO_CACHE, persist_result=False)
def train_farm(farm: str, env: str, runtime_params: dict | None, conf_source: str | None,
               flow_run_id: str) -> dict[str, Any]:
    """Train farm `farm`: the training pipeline in a Kedro session of its own (one MLflow
    run, tagged with the flow run). Returns the farm's row of the `training-summary`
    artifact."""
    hooks = FlowRunHooks(flow_run_id, RunTimings())
    with flow_run_session(env, {**(runtime_params or {}), "farm": farm}, conf_source, hooks) as session:
        outputs = session.run(pipeline_names=["training"])
    return training_summary_row(farm, outputs[RELEASE].load(), hooks.mlflow_run_id)


def train_farms(farms: list[str], **arguments: Any) -> dict[str, dict[str, Any] | Exception]:
    """Each farm's `train_farm` task run, one after the other in this flow run's process
    (one Kedro session at a time: kedro-mlflow's hook is one object per process). A
    farm's row, or why it failed, by farm."""
    results: dict[str, dict[str, Any] | Exception] = {}
    for farm in farms:
        try:
            results[farm] = train_farm.with_options(task_run_name=f"train {farm}")(farm=farm, **arguments)
        except Exception as error:  # noqa: BLE001 - one farm's failure must not stop the others
            results[farm] = error
    return results


class FarmRunFailed(RuntimeError):
    """A flow run started on the workers (`run_on_workers`: a farm's training, a
    partition's scoring) did not complete."""


def run_on_workers(flow_name: str, deployment: dict[str, Any], runs: dict[str, dict[str, Any]],
                   summary_key: str, poll_s: float = 2.0) -> dict[str, list[dict[str, Any]] | FarmRunFailed]:
    """A flow run of `deployment` (a `prefect.yml` entry running the flow named
    `flow_name`) per entry of `runs` (its flow run name: its parameters), started as
    subflows of this flow run, at most the deployment's `parallelism` at a time (the next
    as one ends); whichever worker of the pool is free runs each. A run of that name
    still in flight (left by an earlier flow run that ended first) is waited for instead
    of starting another. Waits for all of them; by name, the rows of the run's
    `summary_key` table artifact (each with `flow_run`, the name), or why the run did
    not complete. A request the server fails (it restarting) is made again at the next
    poll; the runs are idempotent per flow run and name."""
    full_name = f"{flow_name}/{deployment['name']}"
    results: dict[str, list[dict[str, Any]] | FarmRunFailed] = {}
    with get_client(sync_client=True) as client:
        deployment_id = client.read_deployment_by_name(full_name).id
        active = {run.name: run.id for run in client.read_flow_runs(flow_run_filter=FlowRunFilter(
            deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id]),
            name=FlowRunFilterName(any_=list(runs)),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=IN_FLIGHT))))}
        waiting = [name for name in runs if name not in active]
        while waiting or active:
            while waiting and len(active) < deployment["parallelism"]:
                try:
                    active[waiting[0]] = run_deployment(
                        full_name, parameters=runs[waiting[0]], flow_run_name=waiting[0], timeout=0,
                        as_subflow=True, idempotency_key=f"{runtime.flow_run.id}:{waiting[0]}").id
                except Exception as error:  # noqa: BLE001 - asked again at the next poll
                    get_run_logger().warning("Could not start %s yet: %r", waiting[0], error)
                    break
                waiting.pop(0)
            time.sleep(poll_s)
            try:
                now = _read_runs(client, active)
                for name, run in [(name, run) for name, run in now.items() if run.state.is_final()]:
                    rows = [{**row, "flow_run": name} for artifact in client.read_artifacts(
                                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]),
                                                               key=ArtifactFilterKey(any_=[summary_key])))
                            for row in json.loads(artifact.data)]
                    results[name] = (rows if run.state.is_completed() and rows else FarmRunFailed(
                        f"flow run {name} ended {run.state.name}: {run.state.message}"))
                    del active[name]
            except Exception as error:  # noqa: BLE001 - asked again at the next poll
                get_run_logger().warning("Could not read the runs started on the workers: %r", error)
    return results


def _read_runs(client: SyncPrefectClient, ids: dict[str, UUID]) -> dict[str, FlowRun]:
    """The flow runs `ids` (by name), as the server has them now."""
    runs = {run.id: run for run in client.read_flow_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(ids.values()))))}
    return {name: runs[run_id] for name, run_id in ids.items() if run_id in runs}


def train_farms_on_workers(farms: list[str], deployment: dict[str, Any], env: str,
                           runtime_params: dict | None, conf_source: str | None,
                           poll_s: float = 2.0) -> dict[str, dict[str, Any] | Exception]:
    """Each farm trained by a flow run of its own of `deployment` (a `prefect.yml` entry
    running `training_flow`; `run_on_workers`). A farm's row is its run's
    `training-summary` row, or why the run did not complete."""
    names = {farm: f"train {farm}" for farm in farms}
    results = run_on_workers(training_flow.name, deployment, {names[farm]: {
        "env": env, "conf_source": conf_source, "runtime_params": {**(runtime_params or {}), "farm": farm}}
        for farm in farms}, "training-summary", poll_s)
    return {farm: rows if isinstance(rows := results[names[farm]], Exception) else rows[0] for farm in farms}


@flow(name="turbine-monitor-training", on_crashed=[end_mlflow_run_of], on_cancellation=[end_mlflow_run_of])
def training_flow(env: str = "local", runtime_params: dict | None = None,
                  conf_source: str | None = None) -> State | None:
    """A training round: the farms whose retraining gate is open (the `training_plan`
    pipeline; `runtime_params={"farm": ...}` trains that farm alone), each trained in a
    task run of its own (`train_farms`); publish one row per farm as the
    `training-summary` table artifact. Fails naming the farms whose training failed,
    after the others finished."""
    run = run_pipeline("training", "training_plan", env, runtime_params, conf_source)
    if isinstance(run, State):
        return run
    farm, dispatch = (runtime_params or {}).get("farm"), run.config["fleet"]["farm_deployment"]
    farms = [farm] if farm else run.outputs["farms_to_train"].load()
    if dispatch and not farm:
        results = train_farms_on_workers(farms, run.config["deployments"][dispatch], env, runtime_params,
                                         conf_source)
    else:
        results = train_farms(farms, env=env, runtime_params=runtime_params, conf_source=conf_source,
                              flow_run_id=str(runtime.flow_run.id))
    run.timings.pipeline_ended = time.time()  # the round's pipelines: the plan, then each farm's
    failures = {farm: result for farm, result in results.items() if isinstance(result, Exception)}
    publish_training_summary([result if farm not in failures else
                              {"farm": farm, "decision": f"failed: {type(result).__name__}: {result}"}
                              for farm, result in results.items()])
    run.timings.log()
    if failures:
        raise FarmFailures(failures)
    return None


def training_summary_row(farm: str, release: ModelRelease | Skipped,
                         mlflow_run_id: str | None) -> dict[str, Any]:
    """One farm's row of the `training-summary` artifact: the decision, both holdout
    MAEs, the version registered and the MLflow run."""
    row: dict[str, Any] = {"farm": farm, "mlflow_run_id": mlflow_run_id}
    if isinstance(release, Skipped):
        return {**row, "decision": f"skipped: {release.reason}"}
    from mlflow import MlflowClient

    versions = MlflowClient().search_model_versions(f"run_id = '{mlflow_run_id}'") if mlflow_run_id else []
    return {**row, "decision": release.decision, "model_version": ", ".join(str(v.version) for v in versions),
            "challenger_holdout_mae_kw": release.challenger_mae_kw,
            "champion_holdout_mae_kw": release.champion_mae_kw}


def publish_training_summary(rows: list[dict[str, Any]]) -> None:
    """The `training-summary` table artifact: one row per farm trained this round."""
    decisions = ", ".join(f"{row['farm']}: {row['decision']}" for row in rows) or "no farm due"
    create_table_artifact(rows or [{"farm": None, "decision": "no farm due for training"}],
                          key="training-summary", description=f"Training round: {decisions}.")


@flow(name="turbine-monitor-inference")
def inference_flow(env: str = "local", runtime_params: dict | None = None,
                   conf_source: str | None = None) -> State | None:
    """Run the inference pipeline (ingest, score, update alerts, report); emit a
    `turbine-monitor.alert.opened` event per alert opened live (`opened_live`) and publish
    the rows scored, the farms that failed and the open alerts as the `inference-summary`
    markdown artifact. Fails naming the farms whose work failed (the others' was saved).

    With `fleet.scoring_deployment` (prefect.yml), the run ingests (the `ingestion`
    pipeline), then scores a backlog on the workers (`score_backlog_on_workers`), or
    else scores itself (the `scoring` pipeline, in a second session)."""
    run = start_flow_run("inference", env, conf_source)
    if isinstance(run, State):
        return run
    if not run.config["fleet"]["scoring_deployment"]:
        run_session(run, "inference", env, runtime_params, conf_source)
    else:
        run_session(run, "ingestion", env, runtime_params, conf_source)
        if not score_backlog_on_workers(run, env, runtime_params, conf_source):
            run_session(run, "scoring", env, runtime_params, conf_source)
    alerts = run.catalog.load("alerts")
    opened = opened_live(alerts, pd.Timestamp(run.timings.flow_started, unit="s", tz="UTC"))
    if len(opened):  # most runs open nothing: they read neither the turbines nor dashboard.yml
        farms = run.catalog.load("turbines").set_index("turbine_id")["farm_id"]
        alerts_page = dashboard_alerts_url(conf_source, env)
        for alert in records(opened.assign(farm_id=opened["turbine_id"].map(farms))):
            emit_event(**alert_opened_event(alert, alerts_page))
    publish_inference_summary(run.rows_saved.get("predictions@table", 0), alerts, len(opened),
                              run.farm_failures)
    run.timings.log()
    if run.farm_failures:
        raise FarmFailures(run.farm_failures)
    return None


def score_backlog_on_workers(run: FlowRunHooks, env: str, runtime_params: dict | None,
                             conf_source: str | None) -> bool:
    """If the rows waiting to be scored (`scada@to_score`'s work, after this run's
    ingestion: its work query alone) are at least `fleet.dispatch_min_rows` and make more
    than one partition, score each partition of farms in a flow run of its own of
    `fleet.scoring_deployment` (`scoring_flow`, runtime parameter `farms`; `run_on_workers`)
    and wait for them: their rows scored are added to `run.rows_saved`, and the farms of a
    run that did not complete to `run.farm_failures`. Returns whether it did."""
    fleet = run.config["fleet"]
    work = run.catalog.get("scada@to_score").work()
    rows = sum(weight for _, weight in work)
    if rows < fleet["dispatch_min_rows"] or len(work) < 2:
        return False
    partitions = Partitions.of([farms for farms, _ in work], lambda farms: farms)
    get_run_logger().info("Scoring a backlog of %d rows in %d flow runs of %s.", rows, len(partitions),
                          fleet["scoring_deployment"])
    runs = {f"score {name}": {"env": env, "conf_source": conf_source,
                              "runtime_params": {**(runtime_params or {}), "farms": list(partition.farms)}}
            for name, partition in partitions.items()}
    results = run_on_workers(scoring_flow.name, run.config["deployments"][fleet["scoring_deployment"]], runs,
                             "scoring-summary")
    for name, partition in partitions.items():
        if isinstance(result := results[f"score {name}"], Exception):
            run.farm_failures.update(dict.fromkeys(partition.farms, result))
        else:
            run.rows_saved["predictions@table"] = (run.rows_saved.get("predictions@table", 0)
                                                   + sum(row["rows_scored"] for row in result))
    run.timings.pipeline_ended = time.time()  # ingestion, then the partitions' runs
    return True


@flow(name="turbine-monitor-scoring", on_crashed=[end_mlflow_run_of], on_cancellation=[end_mlflow_run_of])
def scoring_flow(env: str = "local", runtime_params: dict | None = None,
                 conf_source: str | None = None) -> State | None:
    """Score, update the alerts and report the farms `runtime_params["farms"]` (every farm
    with work if not given): the `scoring` pipeline (inference without ingestion), as run
    by a flow run of `fleet.scoring_deployment` that an inference run starts per partition
    of a backlog (it starts no flow run itself). Publishes the rows scored as the
    `scoring-summary` table artifact; emits no alert event (the inference run that started
    it does, for every alert opened meanwhile). Fails naming the farms whose work failed
    (the others' was saved)."""
    run = start_flow_run("inference", env, conf_source)  # never stale: an inference run started it
    if isinstance(run, State):
        return run
    run_session(run, "scoring", env, runtime_params, conf_source)
    farms, rows = (runtime_params or {}).get("farms"), run.rows_saved.get("predictions@table", 0)
    create_table_artifact([{"farms": farms, "rows_scored": rows, "farms_failed": sorted(run.farm_failures)}],
                          key="scoring-summary", description=f"Rows scored: {rows}.")
    run.timings.log()
    if run.farm_failures:
        raise FarmFailures(run.farm_failures)
    return None


def opened_live(alerts: pd.DataFrame, since: pd.Timestamp) -> pd.DataFrame:
    """The alerts first stored since `since` (the warehouse stamps `opened_at` when it
    first stores an episode) and still open. An episode found already closed (a backlog
    after an outage, a stop that ended within one delivery) is not among them: it is
    recorded and shown, but notifies nobody."""
    return alerts[(alerts["opened_at"] >= since) & alerts["end_ts"].isna()]


def dashboard_alerts_url(conf_source: str | None = None, env: str | None = None) -> str:
    """The dashboard's Alerts page (`dashboard.yml`: host and port)."""
    dashboard = load_config("dashboard", conf_source, env)["dashboard"]
    return f"http://{dashboard['host']}:{dashboard['port']}/alerts"


def alert_opened_event(alert: dict[str, Any], dashboard_url: str) -> dict[str, Any]:
    """The `emit_event` arguments of the `turbine-monitor.alert.opened` event of `alert`
    (a row of `opened_live` with its turbine's `farm_id`): the turbine as the resource,
    its farm as a related resource, and as payload the alert's row with its deficit at
    opening in percent (None for a stop) and the dashboard's Alerts page. The
    notification automation's payload template (prefect.yml: notifications) reads it."""
    deficit = alert["deficit_at_open"]
    return {
        "event": ALERT_OPENED,
        "resource": {"prefect.resource.id": f"turbine-monitor.turbine.{alert['turbine_id']}",
                     "prefect.resource.name": alert["turbine_id"], "turbine-monitor.farm": alert["farm_id"],
                     "turbine-monitor.alert.kind": alert["kind"]},
        "related": [{"prefect.resource.id": f"turbine-monitor.farm.{alert['farm_id']}",
                     "prefect.resource.role": "farm", "prefect.resource.name": alert["farm_id"]}],
        "payload": {**alert, "deficit_pct": None if deficit is None else round(100 * deficit, 1),
                    "dashboard_url": dashboard_url},
    }


def publish_inference_summary(rows_scored: int, alerts: pd.DataFrame, newly_opened: int,
                              farm_failures: dict[str, Exception]) -> None:
    """The `inference-summary` markdown artifact: rows scored, the farms whose work
    failed and a table of the open alerts."""
    open_alerts = alerts[alerts["end_ts"].isna()].sort_values("start_ts")
    lines = [f"Rows scored: **{rows_scored}**. Open alerts: **{len(open_alerts)}** "
             f"({newly_opened} newly opened).", ""]
    if farm_failures:
        lines += [f"Farms that failed (their work waits for the next run): **{len(farm_failures)}**", ""]
        lines += [f"- `{farm}`: {type(error).__name__}: {error}" for farm, error in farm_failures.items()]
        lines += [""]
    if len(open_alerts):
        lines += ["| turbine | kind | since (UTC) | records | energy lost (kWh) |", "|---|---|---|---|---|"]
        lines += [f"| {a.turbine_id} | {a.kind} | {a.start_ts:%Y-%m-%d %H:%M} | {a.records} | "
                  f"{a.energy_lost_kwh:,.0f} |" for a in open_alerts.itertuples()]
    failed = f"; farms failed: {', '.join(farm_failures)}" if farm_failures else ""
    create_markdown_artifact("\n".join(lines), key="inference-summary",
                             description=f"Rows scored: {rows_scored}; open alerts: {len(open_alerts)}"
                                         f"{failed}.")


def concurrency_limit(spec: dict[str, Any]) -> ConcurrencyLimitConfig | None:
    """A deployment's concurrency limit from its `prefect.yml` entry (None: no limit)."""
    if spec.get("concurrency_limit") is None:
        return None
    return ConcurrencyLimitConfig(limit=spec["concurrency_limit"],
                                  collision_strategy=spec["collision_strategy"],
                                  grace_period_seconds=spec["grace_period_seconds"])


def register_deployment(deployment: str, conf_source: str | None = None, env: str | None = None) -> UUID:
    """Create or update in place the deployment `deployment` (`prefect.yml`:
    deployments; interval-scheduled, or unscheduled without `interval_seconds`) on the
    process work pool, created if missing.

    The deployment names its flow by module (`turbine_monitor.orchestration.flows`) and
    runs it in the worker's working directory: each worker runs the flows of the project
    copy it was started in, wherever that copy is on its host. The configuration is read
    from `conf_source` (default: the project's `conf/`) and Kedro environment `env`;
    either one, when given, is also added to the deployment's parameters, so that the
    flow runs read the same configuration. With `crash_detection` enabled, the flow-run
    processes send heartbeats that often."""
    config = prefect_config(conf_source, env)
    pool, spec = config["work_pool"], config["deployments"][deployment]
    parameters = {**spec["parameters"], **({"conf_source": conf_source} if conf_source else {}),
                  **({"env": env} if env else {})}
    job_variables = {"working_dir": ".", **spec["job_variables"]}
    if config["crash_detection"]["enabled"]:
        heartbeat = {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(config["crash_detection"]["heartbeat_seconds"])}
        job_variables["env"] = {**job_variables.get("env", {}), **heartbeat}
    with get_client(sync_client=True) as client, suppress(ObjectAlreadyExists):
        client.create_work_pool(WorkPoolCreate(name=pool["name"], type=pool["type"]))
    runner_deployment = globals()[spec["flow"]].to_deployment(
        name=spec["name"], work_pool_name=pool["name"], work_queue_name=spec["work_queue"],
        interval=spec.get("interval_seconds"), parameters=parameters, tags=spec["tags"],
        concurrency_limit=concurrency_limit(spec), job_variables=job_variables,
        entrypoint_type=EntrypointType.MODULE_PATH)
    [deployment_id] = deploy(runner_deployment, work_pool_name=pool["name"], build=False, push=False,
                             print_next_steps_message=False,
                             ignore_warnings=True)  # the process work pool is deliberate (not `flow.serve()`)
    return deployment_id
