"""Nodes of the training pipeline: warehouse rows in, a registered model release out.

The window, the normal-operation filter and the holdout are all by time and set in
`conf/base/parameters_training.yml`. When the warehouse holds less than
`min_new_data_hours` of data newer than what the champion was trained on, the window is
empty and every later node passes the emptiness on: no model is fitted, no version
registered.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor

from turbine_monitor.fleet import Farm, FleetConfigError, check_fleet
from turbine_monitor.nbm import IecPowerCurve, PowerModel, nearest_turbines
from turbine_monitor.pipelines.training.rules import HISTORY_COLUMNS
from turbine_monitor.values import FarmModels, ModelRelease, Partitions, RegisteredModel, Skipped

logger = logging.getLogger(__name__)

FEATURE_NAMES_BASE = ["wind_speed", "dir_sin", "dir_cos", "temperature", "turbine",
                      "farm_wind_speed", "farm_wind_spread", "wind_speed_vs_farm", "nearest_wind_speed",
                      "wind_speed_vs_nearest", "wind_speed_lag", "hour", "day_of_year"]
MAX_TURBINES_PLOTTED = 16


def select_farm(fleet_config: dict, farm_assets: dict, farm_id: str | None) -> Farm:
    """The farm this training run is for (`--params farm=<farm_id>`; may be left out
    when the fleet has one farm), the fleet checked as ingestion checks it."""
    farms = check_fleet(fleet_config["farms"], fleet_config["formats"], farm_assets)
    if farm_id is None and len(farms) == 1:
        return next(iter(farms.values()))
    if farm_id not in farms:
        raise FleetConfigError(
            f"Training runs for one farm: kedro run --pipeline training --params farm=<farm_id> (farms.yml: "
            f"{', '.join(farms)}), or `kedro run-fleet` for every farm due" if farm_id is None else
            f"farm {farm_id!r} is not in farms.yml (farms: {', '.join(farms)})")
    return farms[farm_id]


def champion_of(champions: FarmModels, farm_id: str) -> RegisteredModel | None:
    """The farm's champion as training starts (None before its first model)."""
    return champions[farm_id]() if farm_id in champions else None


def plan_training(newest_records: pd.DataFrame, champions: FarmModels, params: dict) -> list[str]:
    """The farms whose retraining gate is open (`training_gate`): those with data and no
    champion, or with at least `min_new_data_hours` of data newer than what their
    champion was trained on."""
    due = []
    for farm, newest in newest_records.set_index("farm_id")["newest_ts"].items():
        if training_gate(newest, champion_of(champions, farm), params) is None:
            due.append(farm)
    logger.info("Farms due for training: %s.", ", ".join(due) or "none")
    return due


def training_gate(newest: pd.Timestamp, champion: RegisteredModel | None, params: dict) -> str | None:
    """Why a farm whose newest record is `newest` is not trained now (None: train it):
    less than `min_new_data_hours` of data newer than its champion's training data."""
    if champion is None:
        return None
    new_data = newest - champion.power_model.trained_until
    if new_data >= pd.Timedelta(hours=params["min_new_data_hours"]):
        return None
    return (f"{max(new_data, pd.Timedelta(0))} of data newer than {champion.power_model.trained_until}, "
            f"which champion version {champion.version} was trained on (training.min_new_data_hours: "
            f"{params['min_new_data_hours']})")


def select_training_window(history: Partitions, farm: Farm, champions: FarmModels,
                           params: dict) -> pd.DataFrame:
    """The farm's most recent `window_days` of data, or no rows when its retraining
    gate is closed (`training_gate`)."""
    scada = history[farm.farm_id]() if farm.farm_id in history else pd.DataFrame(columns=HISTORY_COLUMNS)
    if scada.empty:
        logger.warning("Training skipped: the warehouse holds no SCADA rows of farm %s yet.", farm.farm_id)
        return scada
    latest = scada["ts"].max()
    if (closed := training_gate(latest, champion_of(champions, farm.farm_id), params)) is not None:
        logger.info("Training of farm %s skipped: %s.", farm.farm_id, closed)
        return scada.iloc[:0]
    window = scada[scada["ts"] > latest - pd.Timedelta(days=params["window_days"])]
    logger.info("Training window of farm %s: %s to %s, %d rows.", farm.farm_id, window["ts"].min(), latest,
                len(window))
    return window


def flag_normal_operation(window: pd.DataFrame, farm: Farm, params: dict) -> pd.DataFrame:
    """Add `exclusion`: why a row is not normal operation (None when it is). Low-wind
    idling stays in; stoppages at operating wind, frozen wind sensors, missing or
    implausible signals and curtailment-like plateaus go out."""
    rules = params["normal_operation"]
    rows = window.sort_values(["turbine_id", "ts"])
    wind, power = rows["wind_speed_ms"], rows["power_kw"]
    rated = rows["turbine_id"].map(farm.assets.set_index("Wind_turbine_name")["Rated_power"]).astype(float)
    same_turbine = rows["turbine_id"].eq(rows["turbine_id"].shift())

    run_start = ~(same_turbine & wind.eq(wind.shift()))
    run_length = run_start.cumsum().map(run_start.cumsum().value_counts())
    frozen = (run_length >= rules["frozen_min_records"]) & (wind >= rules["frozen_min_wind_ms"])

    flat = same_turbine & power.diff().abs().le(rules["plateau_tolerance_kw"]) & (
        wind >= rules["plateau_min_wind_ms"]) & (power < rules["plateau_max_fraction_of_rated"] * rated)
    plateau_length = flat.groupby((~flat).cumsum()).transform("sum")
    plateau = flat & (plateau_length >= rules["plateau_min_records"])

    checks = [
        ("missing_signal", rows[["power_kw", "wind_speed_ms", "wind_direction_deg", "outdoor_temp_c"]]
         .isna().any(axis=1)),
        ("stoppage", (wind >= rules["stoppage_min_wind_ms"]) & (power <= rules["stoppage_max_power_kw"])),
        ("frozen_wind_sensor", frozen),
        ("curtailment_plateau", plateau),
    ]
    exclusion = pd.Series(None, index=rows.index, dtype="object")
    for reason, mask in checks:
        exclusion = exclusion.where(exclusion.notna() | ~mask.fillna(False), reason)
    flagged = rows.assign(exclusion=exclusion)
    counts = flagged["exclusion"].value_counts()
    logger.info("Normal operation: %d of %d rows; excluded %s.",
                flagged["exclusion"].isna().sum(), len(flagged), counts.to_dict())
    return flagged


def split_by_time(flagged: pd.DataFrame, params: dict) -> pd.DataFrame:
    """Add `split`: `holdout` for the last `holdout_days` of the window, else `train`."""
    if flagged.empty:
        return flagged.assign(split=pd.Series(dtype="object"))
    start = flagged["ts"].max() - pd.Timedelta(days=params["holdout_days"])
    return flagged.assign(split=np.where(flagged["ts"] > start, "holdout", "train"))


def fit_power_model(split_window: pd.DataFrame, farm: Farm, params: dict) -> PowerModel | Skipped:
    """Fit the estimator and the IEC baseline on the normal-operation training rows.
    Features are computed on every row of the window (trailing context), the fit uses
    the normal ones only."""
    if split_window.empty:
        return Skipped("too little new data since the champion's training data (or no data at all)")
    train = split_window["split"].eq("train") & split_window["exclusion"].isna()
    if not train.any():
        return Skipped("no normal-operation training rows in the window")
    turbines = farm.turbines
    feature_names = FEATURE_NAMES_BASE + [
        f"wind_speed_{stat}_{w}" for w in params["features"]["windows"] for stat in ("mean", "std")]
    model = PowerModel(
        estimator=HistGradientBoostingRegressor(**params["estimator"]),
        turbines=turbines, windows=list(params["features"]["windows"]), feature_names=feature_names,
        nearest=nearest_turbines(farm.assets),
        iec_curve=IecPowerCurve.fit(split_window[train], **params["iec_curve"]),
        trained_from=split_window["ts"].min(), trained_until=split_window["ts"].max(),
    )
    features = model.features(split_window)
    # A farm of one turbine has no neighbours, one of two no spread among them: a feature
    # without a value on any training row is left out (the model falls back on the others).
    model.feature_names = [name for name in feature_names if features.loc[train, name].notna().any()]
    features = features[model.feature_names]
    model.estimator.fit(features[train], split_window.loc[train, "power_kw"])
    residual = split_window.loc[train, "power_kw"] - model.estimator.predict(features[train])
    model.calibration = calibrate_residuals(split_window[train], residual, params["calibration"])
    logger.info("Fitted on %d rows, %d features.", train.sum(), len(model.feature_names))
    return model


def calibrate_residuals(rows: pd.DataFrame, residual: pd.Series, params: dict) -> pd.DataFrame:
    """Residual quantiles per turbine and wind-speed bin: what inference compares new
    residuals with to decide they are abnormal."""
    bins = np.floor(rows["wind_speed_ms"] / params["wind_bin_ms"]) * params["wind_bin_ms"]
    grouped = residual.groupby([rows["turbine_id"], bins.rename("wind_bin_ms")])
    table = grouped.quantile(params["quantiles"]).unstack()
    table.columns = [f"q{q:g}" for q in table.columns]
    table["std_kw"] = grouped.std()
    table["records"] = grouped.size()
    return table.reset_index()


def predict_holdout(power_model: PowerModel | Skipped, split_window: pd.DataFrame) -> pd.DataFrame:
    """Model and IEC expected power for the normal-operation holdout rows."""
    holdout = split_window["split"].eq("holdout") & split_window["exclusion"].isna()
    columns = ["turbine_id", "ts", "wind_speed_ms", "power_kw"]
    if isinstance(power_model, Skipped) or not holdout.any():
        return pd.DataFrame(columns=[*columns, "model_kw", "iec_kw"])
    rows = split_window.loc[holdout, columns]
    return rows.assign(model_kw=power_model.predict_rows(rows.index, split_window),
                       iec_kw=power_model.iec_curve.predict(rows))


def _errors(actual: pd.Series, expected: pd.Series, wind: pd.Series) -> dict[str, float]:
    error = expected - actual
    return {"mae_kw": error.abs().mean(), "rmse_kw": float(np.sqrt((error ** 2).mean())),
            "mae_ws4_kw": error[wind >= 4].abs().mean(), "bias_kw": error.mean()}


def summarise_holdout(holdout_predictions: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Holdout MAE, RMSE, MAE at wind >= 4 m/s and bias, overall and per turbine, for
    the model and the IEC baseline (bias = mean of expected - actual), as MLflow metrics."""
    metrics: dict[str, float] = {}
    if holdout_predictions.empty:
        return metrics
    for name in ("model", "iec"):
        for turbine, rows in [("all", holdout_predictions), *holdout_predictions.groupby("turbine_id")]:
            suffix = "" if turbine == "all" else f"_{turbine}"
            for key, value in _errors(rows["power_kw"], rows[f"{name}_kw"], rows["wind_speed_ms"]).items():
                metrics[f"{name}_{key}{suffix}"] = float(value)
    return {name: {"value": value, "step": 0} for name, value in metrics.items()}


def decide_promotion(power_model: PowerModel | Skipped, champions: FarmModels,
                     split_window: pd.DataFrame, holdout_predictions: pd.DataFrame, farm: Farm,
                     ) -> tuple[ModelRelease | Skipped, dict[str, dict[str, float]]]:
    """Challenger vs champion of the farm on the same holdout rows: promote when the
    challenger's MAE is lower, or when there is no champion yet. Returns the release (registered as the
    challenger, promoted if so, by the project's ModelRegistryHooks) and both MAEs as
    MLflow metrics."""
    if isinstance(power_model, Skipped):
        return Skipped(f"farm {farm.farm_id}: {power_model.reason}"), {}
    if holdout_predictions.empty:
        return Skipped(f"farm {farm.farm_id}: the holdout has no normal-operation rows to evaluate on"), {}
    challenger_mae = float((holdout_predictions["model_kw"] - holdout_predictions["power_kw"]).abs().mean())
    champion, champion_mae = champion_of(champions, farm.farm_id), None
    if champion is not None:
        expected = champion.power_model.predict_rows(holdout_predictions.index, split_window)
        champion_mae = float((expected - holdout_predictions["power_kw"]).abs().mean())
    promote = champion_mae is None or challenger_mae < champion_mae
    logger.info("Challenger holdout MAE %.2f kW vs champion %s: %s.", challenger_mae,
                "none" if champion_mae is None else f"{champion_mae:.2f} kW (version {champion.version})",
                "promote" if promote else "keep the champion")
    release = ModelRelease(
        farm_id=farm.farm_id, power_model=power_model, input_example=power_model.input_example(split_window),
        promote=promote,
        challenger_mae_kw=challenger_mae, champion_mae_kw=champion_mae,
        champion_version=None if champion is None else champion.version,
        holdout={"start": str(holdout_predictions["ts"].min()), "end": str(holdout_predictions["ts"].max()),
                 "rows": len(holdout_predictions)})
    metrics = {"challenger_holdout_mae_kw": challenger_mae, "holdout_rows": float(len(holdout_predictions))}
    if champion_mae is not None:
        metrics["champion_holdout_mae_kw"] = champion_mae
    return release, {name: {"value": value, "step": 0} for name, value in metrics.items()}


def plot_training_figures(power_model: PowerModel | Skipped, split_window: pd.DataFrame,
                          holdout_predictions: pd.DataFrame) -> tuple:
    """Three matplotlib figures: per-turbine power curves (data, model, IEC), the holdout
    residual distribution and holdout residuals over time; each says why instead when
    nothing was trained."""
    # Imported here: every Kedro session imports every pipeline's nodes, and only this
    # node draws (matplotlib would cost every inference run 0.4 s otherwise).
    from matplotlib.figure import Figure

    if isinstance(power_model, Skipped) or holdout_predictions.empty:
        reason = power_model.reason if isinstance(power_model, Skipped) else "an empty holdout"
        placeholders = tuple(Figure(figsize=(6, 1)) for _ in range(3))
        for fig in placeholders:
            fig.text(0.5, 0.5, f"No model trained: {reason}.", ha="center", va="center")
        return placeholders
    turbines = sorted(holdout_predictions["turbine_id"].unique())[:MAX_TURBINES_PLOTTED]
    columns = int(np.ceil(np.sqrt(len(turbines))))
    curves = Figure(figsize=(6 * columns, 4.5 * int(np.ceil(len(turbines) / columns))))
    axes = np.atleast_1d(curves.subplots(int(np.ceil(len(turbines) / columns)), columns, sharex=True,
                                         sharey=True, squeeze=False))
    for ax, turbine in zip(axes.flat, turbines, strict=False):
        rows = holdout_predictions[holdout_predictions["turbine_id"] == turbine]
        ax.scatter(rows["wind_speed_ms"], rows["power_kw"], s=1, alpha=0.2, color="grey", label="data")
        ax.scatter(rows["wind_speed_ms"], rows["model_kw"], s=1, alpha=0.2, color="tab:blue", label="model")
        wind, power = power_model.iec_curve.curves[turbine]
        ax.plot(wind, power, color="tab:red", label="IEC binned curve")
        ax.set_title(turbine)
        ax.set_xlabel("wind speed (m/s)")
        ax.set_ylabel("power (kW)")
    axes.flat[0].legend(markerscale=8)
    curves.suptitle("Holdout: actual power, model and IEC curve")

    residual = holdout_predictions["power_kw"] - holdout_predictions["model_kw"]
    distribution = Figure(figsize=(8, 5))
    ax = distribution.subplots()
    ax.hist(residual.clip(-500, 500), bins=200)
    ax.set_xlabel("residual, actual - expected (kW)")
    ax.set_title(f"Holdout residuals (MAE {residual.abs().mean():.1f} kW)")

    over_time = Figure(figsize=(12, 5))
    ax = over_time.subplots()
    day = holdout_predictions["ts"].dt.floor("D")
    daily = residual.groupby([holdout_predictions["turbine_id"], day]).mean()
    for turbine, series in daily.groupby(level=0):
        ax.plot(series.index.get_level_values(1), series.to_numpy(), label=turbine)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_ylabel("daily mean residual (kW)")
    ax.legend()
    ax.set_title("Holdout residuals over time")
    return curves, distribution, over_time
