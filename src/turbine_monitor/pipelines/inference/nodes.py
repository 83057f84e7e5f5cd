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
from threadpoolctl import threadpool_limits

from turbine_monitor.detection import detect
from turbine_monitor.nbm import make_features, model_inputs
from turbine_monitor.values import AlertUpdate, FarmModels, FarmResult, Partitions, RegisteredModel

logger = logging.getLogger(__name__)

PREDICTION_COLUMNS = ["turbine_id", "ts", "expected_power_kw", "power_kw", "residual_kw", "wind_speed_ms",
                      "model_version", "unscored_reason"]


def score_new_rows(rows_to_score: Partitions, champions: FarmModels, params: dict,
                   ) -> tuple[Partitions, FarmModels]:
    """The predictions of every row in `scoring_queue`, a partition of farms at a time
    (`score_partition`), and the champions they are made with: alert detection judges
    them by those models' calibration (and the aliases are resolved once a run)."""
    if not rows_to_score:
        logger.info("No new rows to score.")
    return rows_to_score.map(score_partition, champions, params), champions


def score_partition(scada: pd.DataFrame, champions: FarmModels, params: dict) -> FarmResult:
    """Expected power and residual for every `scada` row not `scored` yet, by its farm's
    champion, reading the history the model's trailing features need (`scada` holds
    `params["history_hours"]` of it before each farm's first unscored row). Every row
    gets a prediction row: one the model cannot score (no wind speed) gets NULL expected
    power and an `unscored_reason`, so it is neither dropped nor retried. Derated or
    faulty rows are scored like any other. The features are computed and selected once
    for all the farms whose models read the same ones; a farm's rows are predicted by
    its model's compiled forest up to `params["compiled_max_rows"]` rows (a live run),
    else by scikit-learn on at most `params["predict_threads"]` threads."""
    models, failures = _champions(scada["farm_id"][~scada["scored"]].unique(), champions, "scoring")
    for farm, model in list(models.items()):
        if model.power_model.history_needed > pd.Timedelta(hours=params["history_hours"]):
            failures[farm] = ValueError(
                f"champion version {model.version} reads {model.power_model.history_needed} of history "
                f"before a row, but scoring loads {params['history_hours']} h: raise "
                "model.scoring_history_hours in conf/base/globals.yml")
            del models[farm]
    scored, expected, versions = [], [], []  # per farm: its rows' labels in `scada`, predictions, version
    with threadpool_limits(params["predict_threads"], user_api="openmp"):
        for farms in _same_features(models):
            rows = scada[scada["farm_id"].isin(farms)]
            shared = models[farms[0]].power_model  # the group's windows and feature names
            nearest = {t: n for farm in farms for t, n in models[farm].power_model.nearest.items()}
            positions = {t: p for farm in farms for t, p in models[farm].power_model.positions.items()}
            features = make_features(rows, shared.windows, nearest)
            inputs = model_inputs(features, shared.feature_names, positions).to_numpy(dtype="float64")
            unscored = np.flatnonzero(~rows["scored"].to_numpy())
            by_farm = pd.Series(unscored).groupby(rows["farm_id"].to_numpy()[unscored], sort=False).indices
            for farm, at in by_farm.items():
                model = models[farm]
                try:
                    expected.append(model.power_model.predict_features(inputs[unscored[at]],
                                                                        params["compiled_max_rows"]))
                except Exception as exc:  # noqa: BLE001 - one farm's model must not stop the others
                    failures[farm] = exc
                    continue
                scored.append(rows.index[unscored[at]])
                versions.append(np.full(len(at), model.version))
    if not scored:
        logger.info("Scored no rows.")
        return FarmResult(pd.DataFrame(columns=PREDICTION_COLUMNS), failures)
    todo, expected_kw = scada.loc[np.concatenate(scored)], np.concatenate(expected)
    predictions = pd.DataFrame({
        "turbine_id": todo["turbine_id"], "ts": todo["ts"], "expected_power_kw": expected_kw,
        "power_kw": todo["power_kw"], "residual_kw": todo["power_kw"] - expected_kw,
        "wind_speed_ms": todo["wind_speed_ms"], "model_version": np.concatenate(versions),
        "unscored_reason": np.where(np.isnan(expected_kw), "missing wind speed", None),
    }).reset_index(drop=True)
    logger.info("Scored %d rows of %d farm(s).", len(predictions), len(scored))
    return FarmResult(predictions, failures)


def _same_features(models: dict[str, RegisteredModel]) -> list[list[str]]:
    """The farms in groups whose models read the same features (trailing windows and
    columns)."""
    groups: dict[tuple, list[str]] = {}
    for farm, model in models.items():
        features = (*model.power_model.windows, "|", *model.power_model.feature_names)
        groups.setdefault(features, []).append(farm)
    return list(groups.values())


def update_alerts(detection_inputs: Partitions, champions: FarmModels, params: dict) -> Partitions:
    """The alert episodes that can still change, a partition of farms at a time
    (`detect_partition`)."""
    if params["window_evidence_records"] < params["window_records"]:
        raise ValueError(f"Alert detection keeps {params['window_evidence_records']} evidence records "
                         "before the episodes it recomputes, but its windows are "
                         f"{params['window_records']} long: raise alerts.window_evidence_records in "
                         "conf/base/globals.yml.")
    return detection_inputs.map(detect_partition, champions, params)


def detect_partition(inputs: dict[str, pd.DataFrame], champions: FarmModels, params: dict) -> FarmResult:
    """Each farm's alert episodes (sustained underperformance, stoppages) that can still
    change, judged against the calibration shipped with its champion.
    `inputs["farms"]` says, per farm, from when episodes are recomputed
    (`recompute_from`) and the newest `scored_at` read, `inputs["turbines"]` lists their
    turbines, `inputs["predictions"]` holds the farms' predictions from there on,
    `inputs["carried"]` what earlier runs kept of the evidence records before it,
    `inputs["known_days"]` their day sums and `inputs["open_episodes"]` the open
    underperformance episodes the run continues. Other episodes starting before
    `recompute_from` are final."""
    models, failures = _champions(inputs["farms"]["farm_id"], champions, "alert detection")
    farms = inputs["farms"][inputs["farms"]["farm_id"].isin(models)]
    turbines = inputs["turbines"][inputs["turbines"]["farm_id"].isin(farms["farm_id"])]
    predictions = inputs["predictions"][inputs["predictions"]["farm_id"].isin(farms["farm_id"])]
    carried = inputs["carried"][inputs["carried"]["turbine_id"].isin(turbines["turbine_id"])]
    if predictions.empty:
        return FarmResult(None, failures)
    calibration = pd.concat([models[farm].power_model.calibration for farm in farms["farm_id"]],
                            ignore_index=True)
    farm_of = turbines.set_index("turbine_id")["farm_id"]
    since = farms.set_index("farm_id")["recompute_from"]
    detection = detect(predictions, calibration, params, inputs["known_days"], days_from=farm_of.map(since),
                       carried=carried, open_episodes=inputs["open_episodes"])
    first_run = detection.stop_runs.groupby(detection.stop_runs["turbine_id"].map(farm_of))["start_ts"].min()
    resume_from = pd.to_datetime(farms["farm_id"].map(first_run.to_dict()), utc=True)
    update = AlertUpdate(
        farms=pd.DataFrame({"farm_id": farms["farm_id"], "since": farms["recompute_from"],
                            "scored_through": farms["scored_through"], "resume_from": resume_from,
                            }).reset_index(drop=True),
        episodes=detection.episodes, days=detection.days, evidence=detection.evidence,
        open_episodes=detection.open_episodes)
    return FarmResult(update, failures)


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
