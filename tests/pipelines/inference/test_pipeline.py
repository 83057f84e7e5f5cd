"""The inference pipeline on a real warehouse and a real MLflow registry: incremental,
idempotent, crash-safe scoring, unscorable rows, and the no-champion case."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import FAST_TRAINING, HEADER, PROJECT_ROOT, landing_only_workspace, write_export_slice
from turbine_monitor.project import load_config
from turbine_monitor.sandbox import Sandbox
from turbine_monitor.values import FarmFailures

MODEL = "turbine-power-nbm-la-haute-borne"  # the bundled farm's model


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """An MLflow store whose champion was trained on January 2014."""
    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        trainer = landing_only_workspace(root / "trainer")
        write_export_slice(trainer.landing / "jan.csv", "2014-01-01", "2014-02-01")
        trainer.run("__default__", FAST_TRAINING)
        yield uri


@pytest.fixture
def ws(workspace, registry, monkeypatch) -> Sandbox:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry)
    return workspace


def counts(ws: Sandbox) -> tuple[int, int, int]:
    """(scada rows, prediction rows, scada rows without exactly one prediction)."""
    return (ws.scalar("SELECT count(*) FROM scada"), ws.scalar("SELECT count(*) FROM predictions"),
            ws.scalar("SELECT count(*) FROM scada s ANTI JOIN predictions p USING (turbine_id, ts)"))


def test_only_new_rows_are_scored_and_a_rerun_changes_nothing(ws):
    write_export_slice(ws.landing / "a.csv", "2014-02-01", "2014-02-03")
    ws.run("inference")
    first = ws.sql("SELECT turbine_id, ts, scored_at FROM predictions ORDER BY ALL")
    assert counts(ws) == (len(first), len(first), 0)
    write_export_slice(ws.landing / "b.csv", "2014-02-03", "2014-02-04")
    ws.run("inference")
    scada, predictions, missing = counts(ws)
    assert predictions == scada > len(first) and missing == 0
    assert ws.sql("SELECT turbine_id, ts, scored_at FROM predictions WHERE ts < '2014-02-03' "
                  "ORDER BY ALL") == first
    before = ws.sql("SELECT * FROM predictions ORDER BY ALL")
    ws.run("inference")
    assert ws.sql("SELECT * FROM predictions ORDER BY ALL") == before


def test_predictions_are_the_champion_model_outputs(ws, registry):
    """Also when a run scores new rows with only the recent history loaded."""
    import mlflow

    write_export_slice(ws.landing / "a.csv", "2014-02-01", "2014-02-02")
    ws.run("inference")
    write_export_slice(ws.landing / "b.csv", "2014-02-02", "2014-02-02 01:00")
    ws.run("inference")
    version = MlflowClient(registry).get_model_version_by_alias(MODEL, "champion").version
    assert ws.sql("SELECT DISTINCT model_version FROM predictions") == [(str(version),)]
    mlflow.set_tracking_uri(registry)
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    con_rows = ws.sql("SELECT turbine_id, ts, wind_speed_ms, wind_direction_deg, outdoor_temp_c "
                      "FROM scada ORDER BY turbine_id, ts")
    import pandas as pd

    frame = pd.DataFrame(con_rows, columns=["turbine_id", "ts", "wind_speed_ms", "wind_direction_deg",
                                            "outdoor_temp_c"])
    expected = model.predict(frame)
    stored = [r[0] for r in ws.sql("SELECT expected_power_kw FROM predictions ORDER BY turbine_id, ts")]
    assert stored == pytest.approx(list(expected), nan_ok=True)


def test_scoring_with_less_history_than_the_champion_reads_fails_clearly(ws):
    write_export_slice(ws.landing / "a.csv", "2014-02-01", "2014-02-02")
    expected = "farm 'la-haute-borne'.*raise model.scoring_history_hours"
    with pytest.raises(FarmFailures, match=expected) as error:
        ws.run("inference", {"inference": {"scoring": {"history_hours": 1}}})
    assert list(error.value.failures) == ["la-haute-borne"]
    assert ws.scalar("SELECT count(*) FROM predictions") == 0


def test_unscorable_rows_get_a_reason_and_are_not_retried(ws, write_landing):
    write_landing("gap.csv", HEADER
                  + "R80711,2014-02-01T01:00:00+01:00,0,500.0,,10,5,180,180\n"
                  + "R80711,2014-02-01T01:10:00+01:00,0,0.0,12.0,10,5,180,180\n")
    ws.run("inference")
    rows = ws.sql("SELECT power_kw, expected_power_kw IS NULL, unscored_reason, scored_at "
                  "FROM predictions ORDER BY ts")
    assert [r[:3] for r in rows] == [(500.0, True, "missing wind speed"), (0.0, False, None)]
    ws.run("inference")
    assert ws.sql("SELECT power_kw, expected_power_kw IS NULL, unscored_reason, scored_at "
                  "FROM predictions ORDER BY ts") == rows


def test_a_stopped_turbine_is_scored_not_filtered(ws, write_landing):
    write_landing("stop.csv", HEADER + "R80711,2014-02-01T01:10:00+01:00,0,0.0,12.0,10,5,180,180\n")
    ws.run("inference")
    expected, residual = ws.sql("SELECT expected_power_kw, residual_kw FROM predictions")[0]
    assert expected > 1000 and residual == pytest.approx(-expected)


def stoppage_export(start: datetime, records: int, power_kw: float) -> str:
    """R80711 at 12 m/s for `records` records from `start`, producing `power_kw`."""
    return HEADER + "".join(
        f"R80711,{(start + timedelta(minutes=10 * i)).isoformat()},90.0,{power_kw},12.0,0.0,5.0,180.0,180.0\n"
        for i in range(records))


def test_a_stoppage_opens_a_stopped_alert_and_the_restart_closes_it(ws, write_landing):
    """Two hours at 12 m/s producing nothing: one open `stopped` alert from the first
    record; production resumes in the next delivery: the same alert ends there, with
    the energy the model expected during the stop."""
    start = datetime(2014, 2, 2, tzinfo=UTC)
    write_landing("stop.csv", stoppage_export(start, 12, 0.0))
    ws.run("inference")
    assert ws.sql("SELECT kind, start_ts, end_ts FROM alerts WHERE turbine_id = 'R80711'") == [
        ("stopped", start, None)]
    opened_at = ws.scalar("SELECT opened_at FROM alerts")

    write_landing("restart.csv", stoppage_export(start + timedelta(hours=2), 6, 1500.0))
    ws.run("inference")
    (alert,) = ws.sql("SELECT kind, start_ts, end_ts, opened_at, energy_lost_kwh FROM alerts "
                      "WHERE turbine_id = 'R80711'")
    assert alert[:4] == ("stopped", start, start + timedelta(hours=2), opened_at)
    expected_kwh = ws.scalar("SELECT sum(expected_power_kw) / 6 FROM predictions WHERE power_kw = 0")
    assert alert[4] == pytest.approx(expected_kwh)


def test_no_champion_ends_successfully_and_scores_nothing(workspace, write_landing, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'empty-registry.db'}")
    write_export_slice(workspace.landing / "a.csv", "2014-02-01", "2014-02-02")
    workspace.run("inference")
    assert workspace.scalar("SELECT count(*) FROM scada") > 0
    assert workspace.scalar("SELECT count(*) FROM predictions") == 0


@pytest.mark.slow
def test_kill_9_while_scoring_then_rerun_scores_every_row_once(ws, registry):
    write_export_slice(ws.landing / "q1.csv", "2014-02-01", "2014-05-01")
    ws.run("ingestion")
    env = {**os.environ, "MLFLOW_TRACKING_URI": registry,
           "KEDRO_LOGGING_CONFIG": str(PROJECT_ROOT / "tests" / "plain_logging.yml")}
    command = [sys.executable, "-m", "kedro", "run", "--pipelines", "inference",
               "--conf-source", str(ws.conf)]
    run = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, text=True, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
    for line in run.stdout:
        if "Saving data to predictions" in line:
            run.send_signal(signal.SIGKILL)
            break
    run.wait()
    assert run.returncode == -signal.SIGKILL
    scada, predictions, _ = counts(ws)
    assert predictions in (0, scada)  # one transaction: all or nothing
    assert subprocess.run(command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL).returncode == 0
    scada, predictions, missing = counts(ws)
    assert predictions == scada and missing == 0
    assert ws.scalar("SELECT count(*) - count(DISTINCT (turbine_id, ts)) FROM predictions") == 0


def test_inference_reads_landing_files_first(ws):
    """The inference pipeline ingests new landing files before scoring."""
    assert Path(ws.landing).is_dir()
    write_export_slice(ws.landing / "a.csv", "2014-02-01", "2014-02-02")
    ws.run("inference")
    assert ws.scalar("SELECT count(*) FROM ingested_files") == 1
    assert counts(ws)[1] == counts(ws)[0] > 0


def test_alerts_recomputed_run_by_run_equal_detection_over_all_predictions(ws, registry):
    """Each run recomputes only the episodes that can still change (globals `alerts`),
    continuing from what earlier runs kept: February 2014 delivered two days at a time,
    R80721 derated by 15 % for a week, gives the episodes the detector finds over all
    the predictions at once. Short baselines, so that the month spans several."""
    import mlflow
    import pandas as pd
    import yaml

    from turbine_monitor.detection import detect_alerts

    settings = ws.globals() | {"alerts": ws.load("globals")["alerts"] | {
        "window_evidence_records": 300, "baseline_days": 3}}
    (ws.conf / "local" / "globals.yml").write_text(yaml.safe_dump(settings))
    short = {"inference": {"alerts": {"baseline_min_days": 2}}}
    days = pd.date_range("2014-02-01", "2014-03-01", freq="2D", tz="UTC")
    for start, end in zip(days[:-1], days[1:], strict=True):
        path = ws.landing / f"{start:%Y%m%d}.csv"
        write_export_slice(path, start.isoformat(), end.isoformat())
        export = pd.read_csv(path)
        derated = (export["Wind_turbine_name"] == "R80721") & export["Date_time"].between(
            "2014-02-08", "2014-02-15")
        export.loc[derated, "P_avg"] *= 0.85
        export.to_csv(path, index=False)
        ws.run("inference", short)

    mlflow.set_tracking_uri(registry)
    calibration = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion").unwrap_python_model(
    ).power_model.calibration
    params = load_config("parameters", ws.conf)["inference"]["alerts"]
    predictions = pd.DataFrame(ws.sql("SELECT turbine_id, ts, power_kw, wind_speed_ms, expected_power_kw "
                                      "FROM predictions"),
                               columns=["turbine_id", "ts", "power_kw", "wind_speed_ms", "expected_power_kw"])
    whole = detect_alerts(predictions, calibration, params | short["inference"]["alerts"])
    columns = ["turbine_id", "kind", "start_ts", "end_ts", "records", "operating_records"]
    stored = pd.DataFrame(ws.sql(f"SELECT {', '.join(columns)} FROM alerts"), columns=columns)

    def episodes(table: pd.DataFrame) -> list[tuple]:
        return sorted((t, k, pd.Timestamp(s), None if pd.isna(e) else pd.Timestamp(e), int(r), int(o))
                      for t, k, s, e, r, o in table[columns].itertuples(index=False))

    assert ("R80721", "underperformance") in {(t, k) for t, k, *_ in episodes(whole)}
    assert episodes(stored) == episodes(whole)
