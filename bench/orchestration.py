"""Orchestration benchmark: the Prefect stack on a live replay, against the requirements.

    uv run python bench/orchestration.py [--prefetch-seconds S] [--query-seconds S] [--keep]

One run, everything temporary (a copy of `conf/`, landing zone, warehouse, MLflow
stores, PREFECT_HOME, a Prefect server on a free port), through the stack API
(`turbine_monitor.orchestration.stack`), with the worker settings of `prefect.yml`:

0. bootstrap: `kedro run` of the default pipeline (ingest the 2014 history, train the
   champion, score the history), while the server starts;
1. live: the project's deployments as configured (training every 120 s, inference every
   10 s) on one real process worker, the SCADA replay at its default speed (600x: one
   file a second), until `RUNS` inference runs due after a warm-up have completed;
   then the schedules are paused;
2. paired: with the replay still running and nothing else scheduled, `RUNS` ad-hoc runs
   each of the inference deployment and of `empty_pipeline_flow` (below, deployed from
   this file on the same pool and queue), alternately, one at a time;
3. training: the training deployment's flow run on the worker and a plain `kedro run
   --pipeline training` process, alternately, each into a fresh MLflow store (no
   champion, so the retraining gate cannot skip: both really train, on the same
   warehouse, the replay stopped).

Figures (from the Prefect API, the warehouse and the landing zone):

(a) median inference flow-run duration / median empty-pipeline flow-run duration, both
    end_time - start_time in phase 2 (same worker, same conditions, same way of
    submitting); phase 1's inference runs are shown too (they share the machine with
    scheduled training runs);
(b) schedule lag: start_time - expected_start_time (start_time: the run's Running state,
    i.e. after the worker started its process and the flow was loaded), p95 over the
    scheduled inference and training runs of phase 1 that ran (runs cancelled by the
    deployment concurrency limit never start: counted apart);
(c) freshness: predictions.scored_at - arrival of the record's landing file (its mtime:
    the replay writes a hidden temporary file, fsyncs it and renames it, and a rename
    keeps the mtime; scored_at is DuckDB's now() in the scoring transaction), p95 over
    every record of the files landed in phase 1 before the last scheduled inference run
    started, mapped to its file through scada.source_file;
(d) training flow-run duration (end_time - start_time) / wall time of the `kedro run`
    process (start to exit, interpreter start and imports included), medians; also the
    flow run from its Pending state (the worker starting its process: interpreter start
    and imports included, as for `kedro run`) to its end.

The "empty pipeline": Kedro refuses to run a pipeline without nodes (Pipeline.filter
raises "Pipeline contains no nodes"), so the closest is one no-op node (returns 0 into
a MemoryDataset: one Prefect task run, ~20 ms). The flow is `inference_flow` up to its
pipeline run: it opens its KedroSession the same way (`flows.flow_run_session`: project
hooks, kedro-mlflow, the flow-run hooks, logs to Prefect), imports the project's
pipelines in the session as inference does, and runs with `PrefectTaskRunner`; the
no-op pipeline is untracked by kedro-mlflow, as inference is.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psutil
import yaml
from common import percentile
from kedro.pipeline import Pipeline, node
from prefect import flow, runtime
from prefect.states import State

from turbine_monitor.orchestration.flows import (
    FlowRunHooks,
    RunTimings,
    concurrency_limit,
    flow_run_session,
    prefect_config,
    skip_if_stale,
    skipped_as_stale,
)
from turbine_monitor.orchestration.runner import PrefectTaskRunner
from turbine_monitor.project import PROJECT_ROOT, load_config
from turbine_monitor.sandbox import Sandbox

BENCH_ENTRYPOINT = f"{Path(__file__).resolve().relative_to(PROJECT_ROOT).as_posix()}:empty_pipeline_flow"
NOOP_PIPELINE = "bench_noop"
RUNS = 20                 # measured runs: scheduled inference runs (phase 1), each flow (phase 2)
WARMUP_S = 15             # runs due this soon after the worker came up are not measured
LIVE_CAP_S = 300          # phase 1 stops here even if RUNS were not reached
TRAINING_ROUNDS = 2       # kedro run / flow run pairs
TARGETS = {"a": 1.3, "b": 2.0, "c": 15.0, "d": 1.25}


# -- the flow deployed from this file: runs on the worker ---------------------------------------

def _noop() -> int:
    return 0


def _register_noop_pipeline() -> None:
    """Add the one-node pipeline to the project's pipelines in this process (Kedro
    reloads `register_pipelines` when `session.run` asks for other pipelines). Imported
    here, in the flow run, because `inference_flow` imports the pipelines in its session
    too: at module level the import would move out of the measured flow run."""
    import turbine_monitor.pipeline_registry as pipeline_registry

    register = pipeline_registry.register_pipelines
    if getattr(register, "with_noop", False):
        return

    def register_with_noop() -> dict[str, Pipeline]:
        return {**register(), NOOP_PIPELINE: Pipeline([node(_noop, None, "bench_noop_output", name="noop")])}

    register_with_noop.with_noop = True
    pipeline_registry.register_pipelines = register_with_noop


@flow(name="bench-empty-kedro-pipeline")
def empty_pipeline_flow(env: str = "local", runtime_params: dict | None = None,
                        conf_source: str | None = None) -> State | None:
    """`inference_flow` up to its pipeline run, with the one-node pipeline."""
    timings = RunTimings()
    config = prefect_config(conf_source, env)
    if skipped := skip_if_stale(config, "inference"):
        return skipped
    _register_noop_pipeline()
    hooks = FlowRunHooks(runtime.flow_run.id, timings)
    with flow_run_session(env, runtime_params, conf_source, hooks) as session:
        session.run(pipeline_names=[NOOP_PIPELINE], runner=PrefectTaskRunner(config["tasks"]))
    return None


# -- workspace and processes --------------------------------------------------------------------

def bench_sandbox(root: Path, warehouse: Path | None = None) -> Sandbox:
    """A sandbox in `root` (sharing `warehouse` if given) with its own MLflow store,
    created now (outside any timing); the no-op pipeline untracked, as inference is."""
    from mlflow import MlflowClient

    sandbox = Sandbox.create(root)
    if warehouse is not None:
        sandbox.configure(warehouse=warehouse)
    untracked = load_config("mlflow", sandbox.conf)["tracking"]["disable_tracking"]["pipelines"]
    local = yaml.safe_load((sandbox.conf / "local" / "mlflow.yml").read_text())
    local["tracking"]["disable_tracking"] = {"pipelines": [*untracked, NOOP_PIPELINE]}
    (sandbox.conf / "local" / "mlflow.yml").write_text(yaml.safe_dump(local))
    MlflowClient(sandbox.mlflow_uri).search_experiments()
    return sandbox


def kedro_command() -> list[str]:
    script = Path(sys.executable).with_name("kedro")
    return [str(script)] if script.exists() else [sys.executable, "-m", "kedro"]


def cpu_seconds() -> tuple[float, float]:
    """(CPU seconds the machine has been busy, CPU seconds used by this process, its
    children and their reaped descendants): between two readings, the difference tells
    how much of the machine other processes used."""
    machine = psutil.cpu_times()
    busy = sum(getattr(machine, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq", "steal"))
    me = psutil.Process()
    ours = sum(me.cpu_times()[:4])  # user, system, children_user, children_system
    for child in me.children():
        with contextlib.suppress(psutil.Error):
            ours += sum(child.cpu_times()[:4])
    return busy, ours


class ForeignLoad:
    """How many CPUs other processes kept busy while the block ran."""

    def __enter__(self) -> ForeignLoad:
        self.value: float | None = None
        self._start, self._wall = cpu_seconds(), time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        end, wall = cpu_seconds(), time.monotonic() - self._wall
        if wall > 0:
            self.value = ((end[0] - self._start[0]) - (end[1] - self._start[1])) / wall


# -- Prefect API --------------------------------------------------------------------------------

def deployment_runs(client, deployment_id: UUID) -> list:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    runs: list = []
    while batch := client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            limit=200, offset=len(runs)):
        runs += batch
    return runs


def task_runs_by_flow_run(client, flow_run_ids: list[UUID]) -> dict[UUID, list]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    tasks: list = []
    runs_filter = FlowRunFilter(id=FlowRunFilterId(any_=flow_run_ids))
    while flow_run_ids and (batch := client.read_task_runs(flow_run_filter=runs_filter, limit=200,
                                                           offset=len(tasks))):
        tasks += batch
    by_run: dict[UUID, list] = {run_id: [] for run_id in flow_run_ids}
    for task in tasks:
        by_run[task.flow_run_id].append(task)
    return by_run



def started(run) -> bool:
    """The run got to Running (a run cancelled by the concurrency limit gets a
    start_time too: the time it was cancelled)."""
    return bool(run.start_time) and run.state_type.value in {"RUNNING", "COMPLETED", "FAILED", "CRASHED"}


def did_work(run) -> bool:
    return run.state_type.value == "COMPLETED" and not skipped_as_stale(run.state)


def seconds(delta: timedelta) -> float:
    return delta.total_seconds()


def duration(run) -> float:
    return seconds(run.end_time - run.start_time)


def deploy_empty_pipeline(conf: Path, config: dict[str, Any]) -> UUID:
    """The empty-pipeline flow as a deployment like inference's (pool, queue, concurrency
    limit, parameters), without a schedule: phase 2 runs it on demand."""
    spec = config["deployments"]["inference"]
    return flow.from_source(source=str(PROJECT_ROOT), entrypoint=BENCH_ENTRYPOINT).deploy(
        name="empty-pipeline", work_pool_name=config["work_pool"]["name"], work_queue_name=spec["work_queue"],
        parameters={**spec["parameters"], "conf_source": str(conf)}, tags=["bench"],
        concurrency_limit=concurrency_limit(spec), job_variables=spec["job_variables"], ignore_warnings=True,
        print_next_steps=False)


def wait_for_worker(client, pool: str, worker, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RuntimeError(f"The worker exited with code {worker.returncode} (worker.log).")
        if any(w.status.value == "ONLINE" for w in client.read_workers_for_work_pool(pool)):
            return
        time.sleep(0.5)
    raise RuntimeError("No worker came online (worker.log).")


def stop_schedules(client, deployment_ids: list[UUID], timeout_s: float = 240) -> None:
    """Pause the deployments, delete their runs still scheduled, wait for those going."""
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    def runs_in(*types: StateType) -> list:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=deployment_ids)),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=list(types)))),
            limit=200)

    for deployment_id in deployment_ids:
        client.pause_deployment(deployment_id)
    for run in runs_in(StateType.SCHEDULED):
        client.delete_flow_run(run.id)
    deadline = time.monotonic() + timeout_s
    while runs_in(StateType.PENDING, StateType.RUNNING, StateType.CANCELLING):
        if time.monotonic() > deadline:
            raise RuntimeError("Flow runs still going after the schedules were paused.")
        time.sleep(1)


def run_now(client, deployment_id: UUID, timeout_s: float = 600, **parameters: Any):
    """Create a run of the deployment, due now, and wait for it to end; return it."""
    run = client.create_flow_run_from_deployment(deployment_id, parameters={
        **client.read_deployment(deployment_id).parameters, **parameters})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = client.read_flow_run(run.id)
        if run.state is not None and run.state.is_final():
            if not did_work(run):
                raise RuntimeError(f"Flow run {run.name} ended {run.state.name}: {run.state.message}")
            return run
        time.sleep(0.25)
    raise RuntimeError(f"Flow run {run.id} did not end within {timeout_s:g} s.")


# -- measurements -------------------------------------------------------------------------------

def run_phases(runs: list, tasks: dict[UUID, list]) -> dict[str, float]:
    """Medians over `runs`: task runs per flow run, from the flow's start to its first
    task run, the span of its task runs, the sum of their own durations, from the last
    one to the flow's end."""
    phases: dict[str, list[float]] = {}
    for run in runs:
        own = [t for t in tasks[run.id] if t.start_time and t.end_time]
        if not own:
            continue
        first, last = min(t.start_time for t in own), max(t.end_time for t in own)
        for name, value in (("task runs", len(tasks[run.id])),
                            ("start -> first task run", seconds(first - run.start_time)),
                            ("task runs, first start -> last end", seconds(last - first)),
                            ("task runs, sum of their durations", sum(seconds(t.end_time - t.start_time)
                                                                      for t in own)),
                            ("last task run -> end", seconds(run.end_time - last))):
            phases.setdefault(name, []).append(value)
    return {name: statistics.median(values) for name, values in phases.items()}


def overlaps(run, others: list) -> bool:
    return any(o.start_time and o.end_time and o.start_time < run.end_time and run.start_time < o.end_time
               for o in others)


def freshness(sandbox: Sandbox, since: float, until: float) -> dict[str, Any]:
    """scored_at - landing-file mtime for every row of the replayed files that landed
    between `since` and `until`; also the parts before and after ingestion."""
    import duckdb

    arrived = {p.name: mtime for p in sandbox.landing.glob("scada-*.csv")
               if since <= (mtime := p.stat().st_mtime) < until}
    con = duckdb.connect(str(sandbox.warehouse), read_only=True)
    try:
        rows = con.execute("""
            SELECT s.source_file, epoch_us(s.ingested_at) / 1e6, epoch_us(p.scored_at) / 1e6
            FROM scada s LEFT JOIN predictions p USING (turbine_id, ts)
            WHERE s.source_file LIKE 'scada-%'""").fetchall()
        quarantined = con.execute("SELECT source_file FROM scada_quarantine").fetchall()
    finally:
        con.close()
    rows = [r for r in rows if r[0] in arrived]
    scored = [r for r in rows if r[2] is not None]
    return {
        "files": len(arrived), "rows": len(rows), "scored": len(scored),
        "quarantined": sum(f in arrived for (f,) in quarantined),
        "files_not_ingested": len(set(arrived) - {r[0] for r in rows} - {f for (f,) in quarantined}),
        "total": [scored_at - arrived[f] for f, _, scored_at in scored],
        "landed -> ingested": [ingested_at - arrived[f] for f, ingested_at, _ in scored],
        "ingested -> scored": [scored_at - ingested_at for _, ingested_at, scored_at in scored],
    }


def training_decisions(sandbox: Sandbox) -> str:
    """The promotion decisions the training runs logged in the MLflow store of `sandbox`."""
    from mlflow import MlflowClient

    client = MlflowClient(sandbox.mlflow_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return ", ".join(r.data.tags.get("promotion_decision")
                     or f"skipped: {r.data.tags.get('training_skipped')}" for r in runs) or "no MLflow run"


def compare_training(client, root: Path, warehouse: Path, training_id: UUID) -> dict[str, Any]:
    """Alternately: `kedro run --pipeline training` (wall time of the process) and the
    training deployment's flow run on the worker, each into a fresh MLflow store."""
    result: dict[str, Any] = {"cli": [], "flow": [], "flow_from_pending": [], "decisions": [], "tasks": []}
    for i in range(TRAINING_ROUNDS):
        cli = bench_sandbox(root / f"train-cli-{i}", warehouse)
        start = time.perf_counter()
        subprocess.run([*kedro_command(), "run", "--pipeline", "training", "--conf-source", str(cli.conf)],
                       cwd=PROJECT_ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        result["cli"].append(time.perf_counter() - start)
        result["decisions"].append(f"kedro run: {training_decisions(cli)}")

        flow_run = bench_sandbox(root / f"train-flow-{i}", warehouse)
        run = run_now(client, training_id, conf_source=str(flow_run.conf))
        pending = min(s.timestamp for s in client.read_flow_run_states(run.id) if s.type.value == "PENDING")
        result["flow"].append(duration(run))
        result["flow_from_pending"].append(seconds(run.end_time - pending))
        result["tasks"].append(len(task_runs_by_flow_run(client, [run.id])[run.id]))
        result["decisions"].append(f"flow run: {training_decisions(flow_run)}")
    return result


# -- the benchmark ------------------------------------------------------------------------------

def run_stack(root: Path, stack, worker_options: dict[str, float]) -> dict[str, Any]:
    """Phases 0-3 (module docstring); returns the runs and figures read before the
    server stops."""
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    out: dict[str, Any] = {}
    started = time.monotonic()
    main = bench_sandbox(root / "main")
    conf = main.conf
    if worker_options:  # prefect.yml is merged softly: only these keys change
        (conf / "local" / "prefect.yml").write_text(yaml.safe_dump({"prefect": {"worker": worker_options}}))
    out["config"] = config = prefect_config(str(conf), "local")
    with (root / "bootstrap.log").open("wb") as log:
        bootstrap = subprocess.Popen([*kedro_command(), "run", "--conf-source", str(conf)],
                                     cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        with stack.prefect_server(port=stack.free_port(), home=root / "prefect-server",
                                  log_file=root / "server.log") as server, \
                temporary_settings({PREFECT_API_URL: server.api_url,
                                    PREFECT_HOME: root / "prefect-client"}), \
                get_client(sync_client=True) as client:
            api_url = server.api_url
            if bootstrap.wait() != 0:
                raise RuntimeError("The bootstrap `kedro run` failed (bootstrap.log).")
            out["bootstrap_s"] = time.monotonic() - started
            with contextlib.redirect_stdout(io.StringIO()):  # Prefect prints a table per deployment
                ids = stack.register_deployments(conf_source=str(conf), env="local", api_url=api_url)
                empty_id = deploy_empty_pipeline(conf, config)
            pool = config["work_pool"]["name"]
            with stack.prefect_worker(pool, api_url, env={"PREFECT_HOME": str(root / "prefect-worker")},
                                      log_file=root / "worker.log", conf_source=str(conf)) as worker:
                wait_for_worker(client, pool, worker)
                out["since"] = since = datetime.now(UTC) + timedelta(seconds=WARMUP_S)
                with stack.scada_replay(("--conf-source", str(conf)), log_file=root / "replay.log"):
                    replay_started = time.time()
                    with ForeignLoad() as out["foreign_live"]:  # phase 1
                        deadline = time.monotonic() + LIVE_CAP_S
                        while time.monotonic() < deadline and sum(
                                did_work(r) and r.expected_start_time >= since
                                for r in deployment_runs(client, ids["inference"])) < RUNS:
                            time.sleep(2)
                        stop_schedules(client, list(ids.values()))
                    out["live_s"] = seconds(datetime.now(UTC) - since)
                    out["runs"] = runs = {key: deployment_runs(client, i) for key, i in ids.items()}
                    last_scheduled = max(r.start_time for r in runs["inference"] if did_work(r))
                    with ForeignLoad() as out["foreign_paired"]:  # phase 2
                        paired: dict[str, list] = {"inference": [], "empty": []}
                        for i in range(RUNS):
                            for key in ("inference", "empty")[::1 if i % 2 else -1]:
                                paired[key].append(run_now(client, ids["inference"] if key == "inference"
                                                           else empty_id))
                        out["paired"] = paired
                out["freshness"] = freshness(main, replay_started, last_scheduled.timestamp())
                out["training"] = compare_training(client, root, main.warehouse, ids["training"])  # phase 3
            out["tasks"] = task_runs_by_flow_run(client, [r.id for rs in paired.values() for r in rs])
    finally:
        if bootstrap.poll() is None:
            bootstrap.kill()
            bootstrap.wait()
    out["total_s"] = time.monotonic() - started
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefetch-seconds", type=float, help="override prefect.yml worker.prefetch_seconds")
    parser.add_argument("--query-seconds", type=float, help="override prefect.yml worker.query_seconds")
    parser.add_argument("--keep", action="store_true", help="keep the temporary workspace (logs, databases)")
    args = parser.parse_args(argv)

    from turbine_monitor.orchestration import stack

    load_before = os.getloadavg()[0]
    root = Path(tempfile.mkdtemp(prefix="bench-orchestration-"))
    worker_options = {k: v for k, v in (("prefetch_seconds", args.prefetch_seconds),
                                        ("query_seconds", args.query_seconds)) if v is not None}
    try:
        out = run_stack(root, stack, worker_options)
    except BaseException:
        for name in ("bootstrap.log", "server.log", "worker.log", "replay.log"):
            if (root / name).exists():
                print(f"--- {name} (end) ---\n" + (root / name).read_text(errors="replace")[-4000:],
                      file=sys.stderr)
        raise
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"Load ({os.cpu_count()} CPUs): 1-min average {load_before:.2f} before the bench; CPUs kept busy "
          f"by other processes: {fmt_load(out['foreign_live'].value)} in phase 1, "
          f"{fmt_load(out['foreign_paired'].value)} in phase 2 (figures are noisy if well above 0).")
    if args.keep:
        print(f"Workspace kept: {root}")
    report(out)


def fmt_load(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def stats(values: list[float]) -> str:
    return (f"{statistics.median(values):>8.2f}{percentile(values, 95):>8.2f}{min(values):>8.2f}"
            f"{max(values):>8.2f}") if values else ""


def report(out: dict[str, Any]) -> None:  # noqa: PLR0915 (one table after another)
    config, since, runs, paired, tasks = out["config"], out["since"], out["runs"], out["paired"], out["tasks"]
    live_end = since + timedelta(seconds=out["live_s"])
    scheduled = {key: [r for r in rs if r.auto_scheduled and since <= r.expected_start_time <= live_end]
                 for key, rs in runs.items()}
    live_inference = [r for r in scheduled["inference"] if did_work(r)]
    training_live = [r for r in runs["training"]
                     if did_work(r) and r.start_time < live_end and r.end_time > since]

    inf_s, empty_s = ([duration(r) for r in paired[k]] for k in ("inference", "empty"))
    ratio_a = statistics.median(inf_s) / statistics.median(empty_s)
    lags = {key: [seconds(r.start_time - r.expected_start_time) for r in rs if started(r)]
            for key, rs in scheduled.items()}
    p95_b = percentile(lags["inference"] + lags["training"], 95)
    fresh = out["freshness"]
    p95_c = percentile(fresh["total"], 95)
    train = out["training"]
    ratio_d = statistics.median(train["flow"]) / statistics.median(train["cli"])
    ratio_d_pending = statistics.median(train["flow_from_pending"]) / statistics.median(train["cli"])

    worker, deployments = config["worker"], config["deployments"]
    inference, training = deployments["inference"], deployments["training"]
    print(f"Stack: Prefect server, one process worker (prefetch {worker['prefetch_seconds']:g} s, polls "
          f"every {worker['query_seconds']:g} s), inference every {inference['interval_seconds']} s "
          f"({inference['collision_strategy']}), training every {training['interval_seconds']} s, "
          f"replay at its default speed.")
    print(f"Bootstrap (default pipeline while the server starts) {out['bootstrap_s']:.0f} s; phase 1 (live) "
          f"{out['live_s']:.0f} s after {WARMUP_S} s of warm-up; whole bench {out['total_s']:.0f} s.\n")

    def row(figure: str, value: str, target: str = "", ok: bool | None = None) -> None:
        print(f"{figure:<66}{value:>10}{target:>10}  {'' if ok is None else 'PASS' if ok else 'FAIL'}")

    row("figure", "measured", "target")
    row("(a) inference / empty-pipeline flow run (medians, phase 2)", f"{ratio_a:.2f}x", "<= 1.3x",
        ratio_a <= TARGETS["a"])
    row(f"      inference flow run, median of {len(inf_s)}", f"{statistics.median(inf_s):.2f} s")
    row(f"      empty-pipeline flow run, median of {len(empty_s)}", f"{statistics.median(empty_s):.2f} s")
    row(f"(b) schedule lag p95, {len(lags['inference']) + len(lags['training'])} scheduled runs (phase 1)",
        f"{p95_b:.2f} s", "<= 2 s", p95_b <= TARGETS["b"])
    row(f"(c) freshness p95, {len(fresh['total']):,} rows (phase 1)", f"{p95_c:.2f} s", "<= 15 s",
        p95_c <= TARGETS["c"])
    row(f"(d) training flow run / kedro run wall (medians of {len(train['cli'])})", f"{ratio_d:.2f}x",
        "<= 1.25x", ratio_d <= TARGETS["d"])
    row("      the flow run from Pending (process start) / kedro run wall", f"{ratio_d_pending:.2f}x",
        "<= 1.25x", ratio_d_pending <= TARGETS["d"])

    header = f"  {'':<52}{'median':>8}{'p95':>8}{'min':>8}{'max':>8}"
    print("\n(a) flow-run durations, end_time - start_time (s)")
    print(header)
    print(f"  {f'phase 2: inference ({len(inf_s)} runs)':<52}{stats(inf_s)}")
    print(f"  {f'phase 2: empty pipeline ({len(empty_s)} runs)':<52}{stats(empty_s)}")
    during = [r for r in live_inference if overlaps(r, training_live)]
    for label, selected in (("all", live_inference), ("overlapping a training run", during),
                            ("not overlapping one", [r for r in live_inference if r not in during])):
        print(f"  {f'phase 1: inference, {label} ({len(selected)} runs)':<52}"
              f"{stats([duration(r) for r in selected])}")
    phases = {key: run_phases(paired[key], tasks) for key in ("inference", "empty")}
    print(f"  where the time goes, phase 2 (medians per flow run, s){'inference':>16}{'empty':>10}")
    for phase in phases["inference"]:
        fmt = "{:>10.0f}" if phase == "task runs" else "{:>10.2f}"
        print(f"    {phase:<64}" + "".join(fmt.format(phases[k].get(phase, float("nan")))
                                           for k in ("inference", "empty")))
    by_name: dict[str, list[float]] = {}
    for run in paired["inference"]:
        for t in tasks[run.id]:
            if t.start_time and t.end_time:
                by_name.setdefault(t.name, []).append(seconds(t.end_time - t.start_time))
    print("  inference task runs, median s: " + ", ".join(
        f"{name} {statistics.median(v):.2f}" for name, v in sorted(by_name.items(),
                                                                   key=lambda kv: -statistics.median(kv[1]))))

    print("\n(b) scheduled runs due in phase 1; lag = start_time - expected_start_time (s)")
    print(f"  {'deployment':<12}{'due':>5}{'ran':>5}{'cancelled':>11}{'skipped':>9}{'median':>8}{'p95':>8}"
          f"{'min':>8}{'max':>8}")
    for key in ("inference", "training"):
        rs = scheduled[key]
        cancelled = sum(r.state_type.value == "CANCELLED" for r in rs)
        stale = sum(skipped_as_stale(r.state) for r in rs)
        print(f"  {key:<12}{len(rs):>5}{len(lags[key]):>5}{cancelled:>11}{stale:>9}"
              f"{stats(lags[key])}")
    for reason in sorted({r.state.message for rs in scheduled.values() for r in rs
                          if r.state_type.value == "CANCELLED" and r.state.message}):
        print(f"  cancelled: {reason}")

    print(f"\n(c) freshness, phase 1: {fresh['files']} files landed, {fresh['rows']:,} rows accepted, "
          f"{fresh['scored']:,} scored, {fresh['quarantined']} quarantined, "
          f"{fresh['files_not_ingested']} files not ingested (s)")
    print(header)
    for key in ("landed -> ingested", "ingested -> scored", "total"):
        print(f"  {'file landed -> row scored' if key == 'total' else key:<52}{stats(fresh[key])}")
    print(f"  training runs in phase 1: {len(training_live)} "
          f"({', '.join(f'{duration(r):.1f} s' for r in training_live)})")

    print("\n(d) training pipeline, a fresh MLflow store each time (no champion yet: it really trains) (s)")
    for name, key in (("kedro run --pipeline training, process wall time", "cli"),
                      ("training flow run, start_time -> end_time", "flow"),
                      ("training flow run, Pending -> end_time", "flow_from_pending")):
        print(f"  {name:<60}" + "".join(f"{v:>8.2f}" for v in train[key]))
    print(f"  task runs per training flow run: {train['tasks']}; {'; '.join(train['decisions'])}")


if __name__ == "__main__":
    main()
