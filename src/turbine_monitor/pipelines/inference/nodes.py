"""Nodes of the inference pipeline: score the rows that have no prediction yet with their
farm's champion, then recompute the alert episodes that can still change.

Both work a partition of farms at a time (`values.Partitions`, produced as they are
saved). Within a partition, a farm without a champion is skipped (its rows wait) and a
farm whose model fails is reported (`values.FarmResult`) while the others are done.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from turbine_monitor.detection import DAY_COLUMNS, EPISODE_COLUMNS, detect
from turbine_monitor.nbm import make_features
from turbine_monitor.values import AlertUpdate, FarmModels, FarmResult, Partitions, RegisteredModel

logger = logging.getLogger(__name__)

PREDICTION_COLUMNS = ["turbine_id", "ts", "expected_power_kw", "power_kw", "residual_kw", "wind_speed_ms",
                      "model_version", "unscored_reason"]


def score_new_rows(rows_to_score: Partitions, champions: FarmModels, params: dict) -> Partitions:
    """The predictions of every row in `scoring_queue`, a partition of farms at a time
    (`score_partition`)."""
    if not rows_to_score:
        logger.info("No new rows to score.")
    return rows_to_score.map(score_partition, champions, params)


def score_partition(scada: pd.DataFrame, champions: FarmModels, params: dict) -> FarmResult:
    """Expected power and residual for every `scada` row not `scored` yet, by its farm's
    champion, reading the history the model's trailing features need (`scada` holds
    `params["history_hours"]` of it before each farm's first unscored row). Every row
    gets a prediction row: one the model cannot score (no wind speed) gets NULL expected
    power and an `unscored_reason`, so it is neither dropped nor retried. Derated or
    faulty rows are scored like any other. The features are computed once for all the
    farms whose models read the same windows."""
    models, failures = _champions(scada["farm_id"][~scada["scored"]].unique(), champions, "scoring")
    for farm, model in list(models.items()):
        if model.power_model.history_needed > pd.Timedelta(hours=params["history_hours"]):
            failures[farm] = ValueError(
                f"champion version {model.version} reads {model.power_model.history_needed} of history "
                f"before a row, but scoring loads {params['history_hours']} h: raise "
                "model.scoring_history_hours in conf/base/globals.yml")
            del models[farm]
    frames = []
    for farms in _same_features(models):
        rows = scada[scada["farm_id"].isin(farms)]
        nearest = {t: n for farm in farms for t, n in models[farm].power_model.nearest.items()}
        features = make_features(rows, models[farms[0]].power_model.windows, nearest)
        for farm, todo in rows[~rows["scored"]].groupby("farm_id", sort=False):
            model = models[farm]
            try:
                expected = model.power_model.predict_features(
                    model.power_model.select_features(features.loc[todo.index]))
            except Exception as exc:  # noqa: BLE001 - one farm's model must not stop the others
                failures[farm] = exc
                continue
            frames.append(pd.DataFrame({
                "turbine_id": todo["turbine_id"], "ts": todo["ts"], "expected_power_kw": expected,
                "power_kw": todo["power_kw"], "residual_kw": todo["power_kw"] - expected,
                "wind_speed_ms": todo["wind_speed_ms"], "model_version": model.version,
                "unscored_reason": np.where(np.isnan(expected), "missing wind speed", None),
            }))
    predictions = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=PREDICTION_COLUMNS)
    logger.info("Scored %d rows of %d farm(s).", len(predictions), len(frames))
    return FarmResult(predictions, failures)


def _same_features(models: dict[str, RegisteredModel]) -> list[list[str]]:
    """The farms in groups whose models read the same trailing windows."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for farm, model in models.items():
        groups.setdefault(tuple(model.power_model.windows), []).append(farm)
    return list(groups.values())


def update_alerts(detection_inputs: Partitions, champions: FarmModels, params: dict) -> Partitions:
    """The alert episodes that can still change, a partition of farms at a time
    (`detect_partition`)."""
    needed = params["baseline_days"] + params["baseline_gap_days"] + 1
    if params["lookback_days"] < needed:
        raise ValueError(f"Alert detection reads at most {params['lookback_days']} days before the episodes "
                         f"it recomputes, but its baselines need {needed}: raise alerts.lookback_days in "
                         "conf/base/globals.yml.")
    evidence = params["window_records"] + params["open_persistence_records"]
    if params["window_evidence_records"] < evidence:
        raise ValueError(f"Alert detection reads {params['window_evidence_records']} evidence records before "
                         f"the episodes it recomputes, but its windows need {evidence}: raise "
                         "alerts.window_evidence_records in conf/base/globals.yml.")
    return detection_inputs.map(detect_partition, champions, params)


def detect_partition(inputs: dict[str, pd.DataFrame], champions: FarmModels, params: dict) -> FarmResult:
    """Each farm's alert episodes (sustained underperformance, stoppages) that can still
    change, judged against the calibration shipped with its champion.
    `inputs["predictions"]` holds, per farm, the part to recompute, from its
    `recompute_from` on, and the window before it for the detector's trailing sums;
    `inputs["known_days"]` the day sums earlier runs kept. Episodes starting before
    `recompute_from` are final."""
    predictions = inputs["predictions"]
    models, failures = _champions(predictions["farm_id"].unique(), champions, "alert detection")
    predictions = predictions[predictions["farm_id"].isin(models)]
    if predictions.empty:
        return FarmResult([], failures)
    by_farm = predictions.groupby("farm_id", sort=False)
    since = by_farm["recompute_from"].first()
    calibration = pd.concat([models[farm].power_model.calibration for farm in since.index], ignore_index=True)
    turbine_since = predictions.drop_duplicates("turbine_id").set_index("turbine_id")["recompute_from"]
    detection = detect(predictions, calibration, params, inputs["known_days"], days_from=turbine_since)
    farm_of = predictions.drop_duplicates("turbine_id").set_index("turbine_id")["farm_id"]
    episodes = detection.episodes.assign(farm_id=detection.episodes["turbine_id"].map(farm_of))
    days = detection.days.assign(farm_id=detection.days["turbine_id"].map(farm_of))
    updates = []
    for farm, start in since.items():
        farm_episodes = episodes[(episodes["farm_id"] == farm) & (episodes["start_ts"] >= start)]
        updates.append(AlertUpdate(
            farm_id=farm, since=start, episodes=farm_episodes[EPISODE_COLUMNS].reset_index(drop=True),
            days=days.loc[days["farm_id"] == farm, DAY_COLUMNS].reset_index(drop=True),
            scored_through=by_farm["scored_through"].first()[farm]))
    return FarmResult(updates, failures)


def _champions(farms: Any, champions: FarmModels, work: str) -> tuple[dict[str, RegisteredModel],
                                                                          dict[str, Exception]]:
    """The champions of `farms` that load, and why the others failed; a farm without a
    champion is left out with a warning (its `work` waits for one)."""
    models, failures = {}, {}
    for farm in farms:
        if farm not in champions:
            logger.warning("Farm %s has no champion model yet: its %s waits (train it: kedro run --pipeline "
                           "training --params farm=%s).", farm, work, farm)
            continue
        try:
            models[farm] = champions[farm]()
        except Exception as exc:  # noqa: BLE001 - one farm's model must not stop the others
            failures[farm] = exc
    return models, failures
