"""Dashboard benchmark: how long each page's data takes to be ready on the two-year La
Haute Borne warehouse and on a synthetic fleet of 100 farms, while live inference runs
write to the same warehouse; and what the reporting step adds to each live run.

    uv run python bench/dashboard.py [--fleet-farms 100] [--fleet-days 365]
                                     [--fleet-sandbox PATH] [--reads 7]

For each warehouse, in a temporary sandbox:

1. La Haute Borne: the 2014 history ingested and its champion trained (`kedro run`), then
   2015 up to its last two days delivered and run through the inference pipeline (scoring,
   alerts, reporting). The fleet: a year of exports of every farm ingested, each farm
   trained (a short window: the model's accuracy is not measured here), the backlog run
   through the inference pipeline; or a sandbox that `bench/fleet.py` built
   (`--fleet-sandbox`, e.g. kept with `--keep`), its configuration refreshed from
   `conf/base` and its backlog reported by the first run.
2. The day after the newest record is delivered up to 23:00 and run; then a process of
   its own runs live inference runs one after another, each after one new 10-minute stamp
   of every turbine landed (from 23:00 on: each run's report recomputes a nearly full
   day), and records each run's pipeline time and its reporting step (node and save).
3. Meanwhile this process reads each page's data `--reads` times as the app does
   (`turbine_monitor.dashboard.data.DashboardData` on the sandbox's catalog; the Pipelines
   page against a Prefect server started for the bench): median and slowest.

Targets: every page's data ready in <= 1 s (La Haute Borne) and <= 3 s (100 farms); the
reporting step of a live run <= 0.3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pandas as pd
from common import Timer
from fleet import START, run

from turbine_monitor.orchestration import stack
from turbine_monitor.project import PROJECT_ROOT
from turbine_monitor.sandbox import RAW_DIR, Sandbox
from turbine_monitor.synthetic import LHB_COLUMNS, farm_records, source_records, write_synthetic_fleet

FAST_TRAINING = {"training": {"window_days": 30, "holdout_days": 5, "estimator": {"max_iter": 60}}}
# La Haute Borne's live runs: from 23:00 of the day before its last, so that they do not
# run out of records.
LHB_LIVE_DAY = pd.Timestamp("2015-12-30", tz="UTC")
TARGETS_S = {"la-haute-borne": 1.0, "fleet": 3.0}
REPORTING_TARGET_S = 0.3
# The live runs start at the day's 23:00 stamp, so that each recomputes a nearly full day.
LIVE_FROM = 138
RUN = "live run: "  # how the live loop prints each run's figures among its logs


def write_lhb_export(path: Path, start: pd.Timestamp, end: pd.Timestamp) -> None:
    """The bundled La Haute Borne records with `start <= ts < end`, as an export file."""
    files = [str(RAW_DIR / f"la-haute-borne-scada-{year}.parquet") for year in (2014, 2015)]
    with duckdb.connect() as con:
        con.execute(f"""COPY (SELECT * FROM read_parquet({files})
                     WHERE Date_time::TIMESTAMPTZ >= '{start.isoformat()}'
                       AND Date_time::TIMESTAMPTZ < '{end.isoformat()}')
                     TO '{path}' (HEADER, QUOTE '')""")


def build_lhb(root: Path) -> Sandbox:
    """La Haute Borne, 2014 and 2015 but its last day, scored, alerted and reported."""
    sandbox = Sandbox.create(root / "sandbox")
    run(sandbox, "__default__")
    write_lhb_export(sandbox.landing / "2015.csv", pd.Timestamp("2015-01-01", tz="UTC"), LHB_LIVE_DAY)
    run(sandbox, "inference")
    return sandbox


def build_fleet(root: Path, farms: int, days: int) -> Sandbox:
    """`farms` synthetic farms with `days` of records, each trained, the backlog run."""
    sandbox = Sandbox.create(root / "sandbox")
    sandbox.set_farms(write_synthetic_fleet(root / "farms", farms, days, START.strftime("%Y-%m-%d")))
    run(sandbox, "ingestion")
    for farm in sandbox.load("globals")["farms"]:
        run(sandbox, "training", {**FAST_TRAINING, "farm": farm})
    run(sandbox, "inference")
    return sandbox


def reuse_fleet(path: Path) -> Sandbox:
    """A sandbox `bench/fleet.py` built, its `conf/base` refreshed and its backlog reported."""
    sandbox = Sandbox(path)
    shutil.copytree(PROJECT_ROOT / "conf" / "base", sandbox.conf / "base", dirs_exist_ok=True)
    started = time.perf_counter()
    run(sandbox, "inference")
    print(f"  reported the fleet's backlog in {time.perf_counter() - started:.1f} s", flush=True)
    return sandbox


def write_stamps(sandbox: Sandbox, kind: str, day: pd.Timestamp, stamps: range) -> None:
    """The 10-minute stamps `stamps` (indexes in `day`) of every turbine, as exports in the
    landing folders: La Haute Borne's records of that day, or each synthetic farm's."""
    start, end = (day + index * pd.Timedelta("10min") for index in (stamps.start, stamps.stop))
    name = f"live-{start:%Y%m%dT%H%M}-{len(stamps)}.csv"
    if kind == "lhb":
        write_lhb_export(sandbox.landing / name, start, end)
        return
    records = source_records()[0]
    for number, entry in enumerate(sandbox.load("globals")["farms"].values(), start=1):
        rows = farm_records(records, number, 4, day, 1)
        rows = rows[(rows["ts"] >= start) & (rows["ts"] < end)]
        rows = rows.rename(columns={"turbine_id": "Wind_turbine_name"})
        rows["Date_time"] = rows["ts"].dt.strftime("%Y-%m-%dT%H:%M:%S+00:00")
        columns = ["Wind_turbine_name", "Date_time", *LHB_COLUMNS]
        rows[columns].to_csv(Path(entry["landing"]) / name, index=False)


def live_loop(root: Path, kind: str, day: pd.Timestamp, stop_file: Path) -> None:
    """Live inference runs from stamp LIVE_FROM of `day` on until `stop_file` exists,
    each after one new stamp of every turbine; one line per run (pipeline and reporting
    seconds)."""
    sandbox = Sandbox(root)
    index = LIVE_FROM
    while not stop_file.exists():
        write_stamps(sandbox, kind, day, range(index, index + 1))
        timer = Timer()
        seconds = run(sandbox, "inference", timer=timer)
        reporting = timer.seconds["node:report_days"] + timer.seconds["save:kpi_daily"]
        print(RUN, json.dumps({"pipeline_s": seconds, "reporting_s": reporting}), flush=True)
        index += 1


def page_reads(sandbox: Sandbox) -> dict[str, Callable[[], object]]:
    """Each page's data, read as the app reads it."""
    from vizro.integrations.kedro import catalog_from_project

    from turbine_monitor.dashboard.data import DashboardData, Settings

    catalog = catalog_from_project(PROJECT_ROOT, conf_source=str(sandbox.conf))
    data = DashboardData(catalog, Settings.of(sandbox.load("dashboard")["dashboard"]), str(sandbox.conf))
    turbines = data.turbines()
    farm = turbines["farm_id"].iloc[0]
    turbine = turbines.loc[turbines["farm_id"] == farm, "turbine_id"].iloc[0]
    month = data.months()[0]
    alerts = data.alerts_page()
    alert = alerts.sort_values("start_ts").iloc[-1]
    alert_end = None if pd.isna(alert["end_ts"]) else str(alert["end_ts"])
    by_farm = turbines.groupby("farm_id")["turbine_id"].apply(list).to_dict()
    return {
        "Fleet": data.fleet_page,
        "Turbine": lambda: data.turbine_page(turbine),
        "Alerts (list)": data.alerts_page,
        "Alerts (evidence of one)": lambda: data.alert_evidence(alert["turbine_id"], str(alert["start_ts"]),
                                                                alert_end),
        "Losses": lambda: data.losses_page(farm, month),
        "Pipelines": lambda: data.pipelines_page(by_farm),
    }


def first_run(loop: subprocess.Popen, errors: Path) -> list[str]:
    """The live loop's first run line, once it is printed (the loop's logs skipped)."""
    for line in loop.stdout:
        if line.startswith(RUN):
            return [line]
    sys.exit(f"The live loop ended before its first run:\n{errors.read_text()[-3000:]}")


def measure(name: str, sandbox: Sandbox, kind: str, reads: int, api_url: str) -> dict:
    """Page reads while a live loop runs on `sandbox` (the day after its newest record,
    delivered up to stamp LIVE_FROM first); the live runs' figures."""
    day = pd.Timestamp(sandbox.scalar("SELECT max(ts) FROM scada")).floor("D") + pd.Timedelta(days=1)
    write_stamps(sandbox, kind, day, range(0, LIVE_FROM))
    run(sandbox, "inference")
    stop_file = sandbox.root / "stop-live-loop"
    stop_file.unlink(missing_ok=True)
    env = {**os.environ, "PREFECT_API_URL": api_url, "MLFLOW_TRACKING_URI": sandbox.mlflow_uri}
    os.environ.update(env)
    errors = sandbox.root / "live-loop.log"
    with errors.open("w") as stderr:
        loop = subprocess.Popen(
            [sys.executable, __file__, "--live-loop", str(sandbox.root), "--kind", kind,
             "--day", day.isoformat(), "--stop-file", str(stop_file)],
            cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
    runs = [json.loads(line.removeprefix(RUN)) for line in first_run(loop, errors)]  # running: read meanwhile
    pages = {page: [] for page in page_reads(sandbox)}
    for _ in range(reads):
        for page, read in page_reads(sandbox).items():
            started = time.perf_counter()
            read()
            pages[page].append(time.perf_counter() - started)
    stop_file.touch()
    runs += [json.loads(line.removeprefix(RUN)) for line in loop.stdout if line.startswith(RUN)]
    loop.wait()
    return {"warehouse": name, "pages": pages, "runs": runs}


def predictions(sandbox: Sandbox) -> str:
    return f"{sandbox.scalar('SELECT count(*) FROM predictions'):,} predictions"


def report(results: list[dict]) -> None:
    for result in results:
        target = TARGETS_S[result["warehouse"] if result["warehouse"] == "la-haute-borne" else "fleet"]
        print(f"\n{result['warehouse']} ({result['detail']}): page data while live runs write "
              f"(median / slowest of {len(next(iter(result['pages'].values())))}, s; target <= {target:g})")
        for page, seconds in result["pages"].items():
            verdict = "PASS" if max(seconds) <= target else "FAIL"
            print(f"  {page:<26} {statistics.median(seconds):6.3f} / {max(seconds):6.3f}   {verdict}")
        runs = result["runs"]
        reporting = [r["reporting_s"] for r in runs]
        verdict = "PASS" if statistics.median(reporting) <= REPORTING_TARGET_S else "FAIL"
        print(f"  live inference runs meanwhile: {len(runs)}, pipeline median "
              f"{statistics.median(r['pipeline_s'] for r in runs):.2f} s; reporting step median "
              f"{statistics.median(reporting):.3f} s, slowest {max(reporting):.3f} s "
              f"(target <= {REPORTING_TARGET_S:g})   {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fleet-farms", type=int, default=100)
    parser.add_argument("--fleet-days", type=int, default=365)
    parser.add_argument("--fleet-sandbox", type=Path, help="a sandbox bench/fleet.py built, to reuse")
    parser.add_argument("--reads", type=int, default=7)
    parser.add_argument("--live-loop", type=Path, help=argparse.SUPPRESS)  # the live runs' process
    parser.add_argument("--kind", help=argparse.SUPPRESS)
    parser.add_argument("--day", type=pd.Timestamp, help=argparse.SUPPRESS)
    parser.add_argument("--stop-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.live_loop:
        live_loop(args.live_loop, args.kind, args.day, args.stop_file)
        return
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp, \
            stack.prefect_server(home=Path(tmp) / "prefect", port=stack.free_port()) as server:
        root = Path(tmp)
        results = []
        print("Building the two-year La Haute Borne warehouse...", flush=True)
        lhb = build_lhb(root / "lhb")
        os.environ["MLFLOW_TRACKING_URI"] = lhb.mlflow_uri
        result = measure("la-haute-borne", lhb, "lhb", args.reads, server.api_url)
        results.append({**result, "detail": predictions(lhb)})
        if args.fleet_sandbox:
            print(f"Reusing the fleet of {args.fleet_sandbox}...", flush=True)
            fleet = reuse_fleet(args.fleet_sandbox)
        else:
            print(f"Building a fleet of {args.fleet_farms} farms ({args.fleet_days} days)...", flush=True)
            fleet = build_fleet(root / "fleet", args.fleet_farms, args.fleet_days)
        os.environ["MLFLOW_TRACKING_URI"] = fleet.mlflow_uri
        farms = fleet.scalar("SELECT count(DISTINCT farm_id) FROM turbines")
        result = measure(f"{farms} farms", fleet, "fleet", args.reads, server.api_url)
        results.append({**result, "detail": predictions(fleet)})
    report(results)


if __name__ == "__main__":
    main()
