"""Nodes of the inference pipeline: score the rows that have no prediction yet with
the champion, then recompute the alert episodes that can still change."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from turbine_monitor.detection import detect_alerts
from turbine_monitor.values import AlertUpdate, RegisteredModel, Skipped

logger = logging.getLogger(__name__)

PREDICTION_COLUMNS = ["turbine_id", "ts", "expected_power_kw", "power_kw", "residual_kw", "wind_speed_ms",
                      "model_version", "unscored_reason"]


def score_new_rows(scada: pd.DataFrame, champion: RegisteredModel | None, params: dict) -> pd.DataFrame:
    """Expected power and residual for every `scada` row without a prediction, by the
    champion, reading the history the model's trailing features need (`scada` holds
    `params["history_hours"]` of it before the first unscored row). Every row gets a
    prediction row: one the model cannot score (no wind speed) gets NULL expected power
    and an `unscored_reason`, so it is neither dropped nor retried. Derated or faulty
    rows are scored like any other."""
    todo = scada[~scada["scored"]]
    if champion is None:
        logger.warning("No champion model registered yet: %d rows left unscored. Run the training "
                       "pipeline first.", len(todo))
        return pd.DataFrame(columns=PREDICTION_COLUMNS)
    if todo.empty:
        logger.info("No new rows to score.")
        return pd.DataFrame(columns=PREDICTION_COLUMNS)
    if champion.power_model.history_needed > pd.Timedelta(hours=params["history_hours"]):
        raise ValueError(
            f"Champion version {champion.version} reads {champion.power_model.history_needed} of history "
            f"before a row, but scoring loads {params['history_hours']} h: raise "
            "model.scoring_history_hours in conf/base/globals.yml.")
    expected = champion.power_model.predict_rows(todo.index, scada)
    logger.info("Scored %d rows with champion version %s.", len(todo), champion.version)
    return pd.DataFrame({
        "turbine_id": todo["turbine_id"], "ts": todo["ts"], "expected_power_kw": expected,
        "power_kw": todo["power_kw"], "residual_kw": todo["power_kw"] - expected,
        "wind_speed_ms": todo["wind_speed_ms"], "model_version": champion.version,
        "unscored_reason": np.where(expected.isna(), "missing wind speed", None),
    })


def update_alerts(predictions: pd.DataFrame, champion: RegisteredModel | None,
                  params: dict) -> AlertUpdate | Skipped:
    """The alert episodes (sustained underperformance, stoppages) that can still change,
    judged against the calibration shipped with the champion. `predictions` holds the
    part to recompute, from its `recompute_from` on, and `lookback_days` before it for
    the detector's trailing windows and baselines; episodes starting earlier are final."""
    if champion is None:
        return Skipped("no champion model to judge residuals against")
    if predictions.empty:
        return Skipped("no predictions yet")
    needed = params["baseline_days"] + params["baseline_gap_days"] + 1
    if params["lookback_days"] < needed:
        raise ValueError(f"Alert detection reads {params['lookback_days']} days before the episodes it "
                         f"recomputes, but its baselines need {needed}: raise alerts.lookback_days in "
                         "conf/base/globals.yml.")
    since = predictions["recompute_from"].iloc[0]
    episodes = detect_alerts(predictions, champion.power_model.calibration, params)
    recomputed = episodes[episodes["start_ts"] >= since].reset_index(drop=True)
    return AlertUpdate(since, recomputed, predictions["scored_through"].iloc[0])
