"""Fleet benchmark: the monitor on synthetic fleets of 1, 10 and 100 farms (4, 40 and 400
turbines), one year of records each, built from the La Haute Borne data
(`turbine_monitor.synthetic`: every farm the real series shifted in time, ids of its own;
not real data, never for accuracy).

    uv run python bench/fleet.py [--farms 1 10 100] [--days 365] [--live-runs 11]

For each fleet, in a process of its own (so that its peak memory is its own), in a
temporary sandbox:

1. ingestion of the year of exports (one La Haute Borne export per farm and 30 days):
   records/s;
2. training: one farm, then the whole round (every farm, one Kedro and MLflow run each,
   as `kedro run-fleet` and the Prefect training flow do);
3. the backlog: scoring every record (records/s) and alert detection;
4. live runs: one new 10-minute stamp of every turbine lands (one file per farm) and the
   inference pipeline runs (ingest, score, detect): its pipeline time, median of
   `--live-runs` (the first after the backlog also trims the detector's kept state),
   and the range. Each in a process of its own, as the live loop runs them (a Prefect
   process worker starts one per flow run): the target's figure. Then as many in the
   process that ran the backlog, for comparison (it carries the backlog's heap);
5. the process's peak RSS through the backlog (ingest, train, score, detect: the
   target's) and through the live runs too.

Then one table, and the targets: ingestion and backlog scoring throughput at 100 farms
within 25 % of 1 farm's and of 10 farms' respectively, a live run of 100 farms at most 3x
one farm's, peak RSS of 100 farms at most 1.5 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from common import Timer
from kedro.framework.hooks import hook_impl

from turbine_monitor.project import PROJECT_ROOT, kedro_session
from turbine_monitor.sandbox import Sandbox
from turbine_monitor.synthetic import (
    LHB_COLUMNS,
    farm_id,
    farm_records,
    source_records,
    write_synthetic_fleet,
)

START = pd.Timestamp("2016-01-01", tz="UTC")


class PipelineClock:
    """Kedro hooks: how long the pipeline itself runs (not the session around it)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0

    @hook_impl
    def before_pipeline_run(self) -> None:
        self._started = time.perf_counter()

    @hook_impl
    def after_pipeline_run(self) -> None:
        self.seconds = time.perf_counter() - self._started


def run(sandbox: Sandbox, pipeline: str, runtime_params: dict | None = None,
        timer: Timer | None = None) -> float:
    """Run `pipeline` in a session of its own; returns the pipeline's seconds."""
    from kedro.runner import SequentialRunner

    clock = PipelineClock()
    hooks = (clock, timer) if timer else (clock,)
    with kedro_session(sandbox.conf, runtime_params=runtime_params, hooks=hooks) as session:
        session.run(pipeline_names=[pipeline], runner=SequentialRunner())
    return clock.seconds


def write_live_stamp(sandbox: Sandbox, farms: dict, records: pd.DataFrame, days: int, index: int) -> None:
    """Stamp `index` after the year: one La Haute Borne export per farm with each of its
    turbines' record of that stamp."""
    stamp = START + pd.Timedelta(days=days) + index * pd.Timedelta("10min")
    for number, (farm, entry) in enumerate(farms.items(), start=1):
        rows = farm_records(records, number, 4, stamp, 1)
        rows = rows[rows["ts"] == stamp].rename(columns={"turbine_id": "Wind_turbine_name"})
        rows["Date_time"] = rows["ts"].dt.strftime("%Y-%m-%dT%H:%M:%S+00:00")
        rows[["Wind_turbine_name", "Date_time", *LHB_COLUMNS]].to_csv(
            Path(entry["landing"]) / f"live-{stamp:%Y%m%dT%H%M}.csv", index=False)
        assert farm == farm_id(number)


def measure(size: int, days: int, live_runs: int, root: Path) -> dict:
    """Everything for a fleet of `size` farms, in this process."""
    sandbox = Sandbox.create(root / "sandbox")
    farms = write_synthetic_fleet(root / "farms", size, days, START.strftime("%Y-%m-%d"))
    sandbox.set_farms(farms)
    result: dict = {"farms": size, "turbines": 4 * size}

    result["ingestion_s"] = run(sandbox, "ingestion")
    result["records"] = sandbox.scalar("SELECT sum(rows_read) FROM ingested_files")

    first, *others = farms
    result["train_one_s"] = run(sandbox, "training", {"farm": first})
    result["train_round_s"] = result["train_one_s"] + sum(
        run(sandbox, "training", {"farm": farm}) for farm in others)

    timer = Timer()  # scoring happens as its partitions are saved
    result["backlog_s"] = run(sandbox, "inference", timer=timer)
    result["scoring_s"] = timer.seconds["node:score_new_rows"] + timer.seconds["save:predictions@table"]
    result["detection_s"] = timer.seconds["node:update_alerts"] + timer.seconds["save:alerts@update"]
    result["scored"] = sandbox.scalar("SELECT count(*) FROM predictions")
    result["alerts"] = sandbox.scalar("SELECT count(*) FROM alerts")
    result["peak_rss_backlog_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    records = source_records()[0]
    live, in_process = [], []
    for index in range(live_runs):
        write_live_stamp(sandbox, farms, records, days, index)
        child = subprocess.run([sys.executable, __file__, "--live-run", str(sandbox.root)], cwd=PROJECT_ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, check=True)
        live.append(float(child.stdout.strip().splitlines()[-1]))
    for index in range(live_runs, 2 * live_runs):
        write_live_stamp(sandbox, farms, records, days, index)
        in_process.append(run(sandbox, "inference"))
    result["live_s"], result["live_runs"] = statistics.median(live), live
    result["live_in_process_s"] = statistics.median(in_process)
    result["unscored"] = sandbox.scalar("SELECT count(*) FROM scoring_queue")
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--farms", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--live-runs", type=int, default=11)
    parser.add_argument("--measure", type=int, help=argparse.SUPPRESS)  # the child process
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--live-run", type=Path, help=argparse.SUPPRESS)  # a live run's process
    args = parser.parse_args()
    if args.live_run:
        print(run(Sandbox(args.live_run), "inference"))
        return
    if args.measure:
        print(json.dumps(measure(args.measure, args.days, args.live_runs, args.root)))
        return

    results = []
    for size in args.farms:
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{Path(tmp) / 'mlflow.db'}"}
            started = time.perf_counter()
            log = Path(tmp) / "run.log"
            with log.open("w") as stderr:
                child = subprocess.run([sys.executable, __file__, "--measure", str(size), "--root", tmp,
                                        "--days", str(args.days), "--live-runs", str(args.live_runs)],
                                       cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr,
                                       text=True)
            if child.returncode:
                sys.exit(f"{size} farm(s) failed:\n{log.read_text()[-5000:]}")
            result = json.loads(child.stdout.strip().splitlines()[-1])
            print(f"{size} farm(s) measured in {time.perf_counter() - started:.0f} s", flush=True)
            results.append(result)
    report(results, args)


def report(results: list[dict], args: argparse.Namespace) -> None:
    print(f"\nSynthetic fleets (La Haute Borne shifted in time per farm; not real data), {args.days} days "
          f"each, {os.cpu_count()} CPUs.\n")
    print(f"{'':44}" + "".join(f"{r['farms']:>6} farm{'s' if r['farms'] > 1 else ' '}" for r in results))
    rows = [
        ("turbines", lambda r: f"{r['turbines']:>11,}"),
        ("records ingested", lambda r: f"{r['records']:>11,}"),
        ("ingestion, records/s", lambda r: f"{r['records'] / r['ingestion_s']:>11,.0f}"),
        ("training one farm, s", lambda r: f"{r['train_one_s']:>11.1f}"),
        ("training round (every farm), s", lambda r: f"{r['train_round_s']:>11.1f}"),
        ("backlog: inference pipeline, s", lambda r: f"{r['backlog_s']:>11.1f}"),
        ("  scoring, records/s", lambda r: f"{r['scored'] / r['scoring_s']:>11,.0f}"),
        ("  alert detection, s", lambda r: f"{r['detection_s']:>11.1f}"),
        ("live run (one stamp of every turbine), s", lambda r: f"{r['live_s']:>11.2f}"),
        ("  fastest-slowest of the live runs, s",
         lambda r: f"{min(r['live_runs']):>6.2f}-{max(r['live_runs']):<4.2f}"),
        ("  in the process that ran the backlog, s", lambda r: f"{r['live_in_process_s']:>11.2f}"),
        ("rows left unscored after the live runs", lambda r: f"{r['unscored']:>11,}"),
        ("peak RSS through the backlog, MB", lambda r: f"{r['peak_rss_backlog_mb']:>11,.0f}"),
        ("peak RSS through the live runs too, MB", lambda r: f"{r['peak_rss_mb']:>11,.0f}"),
    ]
    for label, cell in rows:
        print(f"{label:<44}" + "".join(cell(r) for r in results))
    by_size = {r["farms"]: r for r in results}
    if {1, 10, 100} <= set(by_size):
        one, ten, hundred = by_size[1], by_size[10], by_size[100]
        checks = [
            ("ingestion throughput, 100 farms / 1 farm", (hundred["records"] / hundred["ingestion_s"])
             / (one["records"] / one["ingestion_s"]), ">=", 0.75),
            ("live run, 100 farms / 1 farm", hundred["live_s"] / one["live_s"], "<=", 3.0),
            ("backlog scoring throughput, 100 farms / 10 farms", (hundred["scored"] / hundred["scoring_s"])
             / (ten["scored"] / ten["scoring_s"]), ">=", 0.75),
            ("peak RSS of the 100-farm backlog, GB", hundred["peak_rss_backlog_mb"] / 1024, "<=", 1.5),
        ]
        print()
        for label, value, op, target in checks:
            ok = value >= target if op == ">=" else value <= target
            print(f"{'PASS' if ok else 'FAIL'}  {label}: {value:.2f}  (target {op} {target})")


if __name__ == "__main__":
    main()
