"""Unit tests of the training nodes and the model: filters, features (for farms of any
size, several at once), IEC baseline, the time split, the retraining gate and the
promotion rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor

from tests.conftest import LHB, PARAMETERS
from turbine_monitor.nbm import (
    CompiledForest,
    IecPowerCurve,
    make_features,
    nearest_turbines,
    trailing_mean_and_std,
)
from turbine_monitor.pipelines.training.nodes import (
    decide_promotion,
    fit_power_model,
    flag_normal_operation,
    plan_training,
    predict_holdout,
    select_training_window,
    split_by_time,
)
from turbine_monitor.values import FarmModels, Partitions, RegisteredModel, Skipped

PARAMS = PARAMETERS["training"]
TURBINES = LHB.turbines
NEAREST = nearest_turbines(LHB.assets)
RULES = PARAMS["normal_operation"]


def scada(days: float = 3, seed: int = 0, turbines=TURBINES) -> pd.DataFrame:
    """Synthetic 10-minute records following a smooth power curve plus noise."""
    rng = np.random.default_rng(seed)
    stamps = pd.date_range("2015-01-01", periods=int(days * 144), freq="10min", tz="UTC")
    frames = []
    for turbine in turbines:
        wind = np.clip(8 + 3 * np.sin(np.arange(len(stamps)) / 40) + rng.normal(0, 1, len(stamps)), 0, 25)
        power = 2050 / (1 + np.exp(-(wind - 9) * 0.9)) + rng.normal(0, 20, len(stamps))
        frames.append(pd.DataFrame({
            "turbine_id": turbine, "ts": stamps, "power_kw": power, "wind_speed_ms": wind,
            "wind_direction_deg": rng.uniform(0, 360, len(stamps)), "outdoor_temp_c": 5.0,
            "pitch_deg": 0.0}))
    return pd.concat(frames, ignore_index=True)


def history(rows: pd.DataFrame) -> Partitions:
    """`rows` as the farm's partition of `scada@history`."""
    return Partitions.of([(LHB.farm_id,)], lambda farms: rows)


def champions(model=None, version: str = "1") -> FarmModels:
    """The registry's champions: `model` as La Haute Borne's, or none."""
    return FarmModels({} if model is None else {LHB.farm_id: lambda: RegisteredModel(version, "run", model)})


def exclusions(rows: pd.DataFrame) -> list:
    flagged = flag_normal_operation(rows, LHB, PARAMS).sort_index()["exclusion"]
    return [None if pd.isna(reason) else reason for reason in flagged]


def test_stoppage_at_operating_wind_is_excluded_but_low_wind_idling_stays():
    rows = scada(days=0.05, turbines=["R80711"]).iloc[:3].copy()
    rows["wind_speed_ms"] = [RULES["stoppage_min_wind_ms"] + 2, 2.0, 7.0]
    rows["power_kw"] = [0.0, -5.0, 600.0]
    assert exclusions(rows) == ["stoppage", None, None]


def test_frozen_wind_sensor_is_excluded_but_calm_is_not():
    n = RULES["frozen_min_records"]
    rows = scada(days=0.2, turbines=["R80711"]).iloc[: 2 * n + 1].copy()
    rows["power_kw"] = np.linspace(100, 900, len(rows))
    rows["wind_speed_ms"] = [6.3] * n + [0.0] * n + [7.0]
    assert exclusions(rows) == ["frozen_wind_sensor"] * n + [None] * (n + 1)


def test_curtailment_plateau_is_excluded():
    n = RULES["plateau_min_records"] + 1
    rows = scada(days=0.2, turbines=["R80711"]).iloc[:n].copy()
    rows["wind_speed_ms"] = np.linspace(12, 13, n)
    rows["power_kw"] = 800.0
    assert exclusions(rows)[1:] == ["curtailment_plateau"] * (n - 1)


def test_missing_signal_is_excluded():
    rows = scada(days=0.05, turbines=["R80711"]).iloc[:2].copy()
    rows.loc[rows.index[0], "outdoor_temp_c"] = np.nan
    assert exclusions(rows) == ["missing_signal", None]


def test_features_only_look_back_never_forward():
    rows = scada(days=1)
    before = make_features(rows, ["30min", "60min"], NEAREST)
    changed = rows.copy()
    later = changed["ts"] > changed["ts"].iloc[70]
    changed.loc[later, ["wind_speed_ms", "outdoor_temp_c", "wind_direction_deg"]] = 99.0
    after = make_features(changed, ["30min", "60min"], NEAREST)
    pd.testing.assert_frame_equal(before.loc[~later], after.loc[~later])


def test_farm_wind_speed_is_the_median_of_the_other_turbines():
    stamp = scada(days=0.01)
    stamp = stamp[stamp["ts"] == stamp["ts"].min()].copy()
    stamp["wind_speed_ms"] = [4.0, 6.0, 9.0, 20.0]
    features = make_features(stamp, ["30min"], NEAREST)
    assert features["farm_wind_speed"].tolist() == [9.0, 9.0, 6.0, 6.0]
    assert features["wind_speed_vs_farm"].tolist() == [-5.0, -3.0, 3.0, 14.0]
    assert features["farm_wind_spread"].iloc[0] == pytest.approx(np.std([6.0, 9.0, 20.0], ddof=1))
    nearest = stamp.set_index("turbine_id")["wind_speed_ms"].reindex(stamp["turbine_id"].map(NEAREST))
    assert features["nearest_wind_speed"].tolist() == nearest.tolist()


def test_a_farm_of_one_turbine_falls_back_to_its_own_signals():
    rows = scada(days=1, turbines=["R80711"])
    features = make_features(rows, ["30min"], {})
    assert features[["farm_wind_speed", "farm_wind_spread", "nearest_wind_speed"]].isna().all().all()
    assert features[["wind_speed", "wind_speed_mean_30min", "wind_speed_lag"]].iloc[1:].notna().all().all()


def test_features_of_several_farms_at_once_equal_each_farms_alone():
    """Peers are the turbines of the same farm: scoring a partition of many farms in one
    call gives each farm the features it gets alone (here 30 turbines and 4)."""
    big = scada(days=1, seed=1, turbines=[f"B{i:02d}" for i in range(30)]).assign(farm_id="big")
    small = scada(days=1, seed=2).assign(farm_id="small")
    nearest = {**{f"B{i:02d}": f"B{(i + 1) % 30:02d}" for i in range(30)}, **NEAREST}
    together = make_features(pd.concat([big, small], ignore_index=True), ["30min"], nearest)
    alone = pd.concat([make_features(big, ["30min"], nearest), make_features(small, ["30min"], nearest)],
                      ignore_index=True)
    pd.testing.assert_frame_equal(together, alone)


def test_iec_curve_interpolates_bin_means_per_turbine():
    rows = pd.DataFrame({"turbine_id": ["A"] * 6 + ["B"] * 3,
                         "wind_speed_ms": [5.1, 5.3, 6.1, 6.3, 7.1, 7.3, 5.2, 6.2, 7.2],
                         "power_kw": [100, 120, 300, 320, 600, 620, 50, 150, 250]})
    curve = IecPowerCurve.fit(rows, bin_width_ms=1.0, min_records_per_bin=1)
    query = pd.DataFrame({"turbine_id": ["A", "A", "B"], "wind_speed_ms": [5.7, 6.2, 7.2]})
    assert curve.predict(query) == pytest.approx([210.0, 310.0, 250.0])


def test_time_split_puts_the_last_days_in_the_holdout():
    rows = split_by_time(flag_normal_operation(scada(days=10), LHB, PARAMS), {"holdout_days": 3})
    holdout = rows[rows["split"] == "holdout"]
    assert holdout["ts"].min() > rows[rows["split"] == "train"]["ts"].max()
    assert holdout["ts"].max() - holdout["ts"].min() == pd.Timedelta(days=3) - pd.Timedelta("10min")


def trained(rows: pd.DataFrame, max_iter: int):
    params = {**PARAMS, "holdout_days": 1, "estimator": {**PARAMS["estimator"], "max_iter": max_iter}}
    window = split_by_time(flag_normal_operation(rows, LHB, params), params)
    return fit_power_model(window, LHB, params), window


def test_retraining_gate_waits_for_min_new_data_hours_after_the_champion():
    rows = scada(days=4)
    model, _ = trained(rows, max_iter=20)
    window = select_training_window(history(rows), LHB, champions(model), PARAMS)
    assert window.empty
    split = split_by_time(flag_normal_operation(window, LHB, PARAMS), PARAMS)
    skipped = fit_power_model(split, LHB, PARAMS)
    assert isinstance(skipped, Skipped) and "too little new data" in skipped.reason

    gate = pd.Timedelta(hours=PARAMS["min_new_data_hours"])
    later = scada(days=6)  # the same stamps, and two more days
    short = later[later["ts"] < model.trained_until + gate]
    assert select_training_window(history(short), LHB, champions(model), PARAMS).empty
    enough = later[later["ts"] <= model.trained_until + gate]
    assert len(select_training_window(history(enough), LHB, champions(model), PARAMS)) == len(enough)


def test_the_training_plan_lists_the_farms_whose_gate_is_open():
    model, _ = trained(scada(days=4), max_iter=5)
    gate = pd.Timedelta(hours=PARAMS["min_new_data_hours"])
    newest = pd.DataFrame({"farm_id": [LHB.farm_id, "no-champion-yet"],
                           "newest_ts": [model.trained_until + gate / 2, model.trained_until]})
    assert plan_training(newest, champions(model), PARAMS) == ["no-champion-yet"]
    newest["newest_ts"] = model.trained_until + gate
    assert plan_training(newest, champions(model), PARAMS) == [LHB.farm_id, "no-champion-yet"]


def test_promotion_only_when_the_challenger_beats_the_champion_on_the_same_rows():
    rows = scada(days=6)
    good, window = trained(rows, max_iter=100)
    poor, _ = trained(rows, max_iter=1)
    holdout = predict_holdout(good, window)
    release, metrics = decide_promotion(good, champions(poor), window, holdout, LHB)
    assert release.promote and release.decision == "promoted" and release.farm_id == LHB.farm_id
    assert metrics["challenger_holdout_mae_kw"]["value"] == release.challenger_mae_kw
    assert metrics["champion_holdout_mae_kw"]["value"] == release.champion_mae_kw
    poor_holdout = predict_holdout(poor, window)
    release, _ = decide_promotion(poor, champions(good, "2"), window, poor_holdout, LHB)
    assert not release.promote and release.decision == "kept_champion"
    assert release.champion_mae_kw < release.challenger_mae_kw
    first, metrics = decide_promotion(poor, champions(), window, poor_holdout, LHB)
    assert first.promote and "champion_holdout_mae_kw" not in metrics  # the first model


def test_nothing_to_train_on_gives_no_model_and_no_release():
    empty = split_by_time(flag_normal_operation(scada(days=1).iloc[:0], LHB, PARAMS), PARAMS)
    model = fit_power_model(empty, LHB, PARAMS)
    assert isinstance(model, Skipped)
    release, metrics = decide_promotion(model, champions(), empty, predict_holdout(model, empty), LHB)
    assert isinstance(release, Skipped) and metrics == {} and LHB.farm_id in release.reason


@pytest.mark.parametrize("window", ["30min", "180min"])
def test_trailing_windows_equal_pandas_time_based_rolling(window):
    """Three turbines with records missing (gaps of any length) and NaN wind speeds: the
    trailing mean and deviation equal pandas' `rolling(window, min_periods=1)` per turbine."""
    rng = np.random.default_rng(3)
    stamps = pd.date_range("2015-01-01", periods=2000, freq="10min", tz="UTC")
    frames = []
    for turbine in ("A", "B", "C"):
        kept = stamps[rng.random(len(stamps)) > 0.3]
        wind = rng.normal(8, 2, len(kept))
        wind[rng.random(len(kept)) < 0.1] = np.nan
        frames.append(pd.DataFrame({"turbine_id": turbine, "ts": kept, "wind": wind}))
    rows = pd.concat(frames, ignore_index=True)
    by_turbine = rows["wind"].set_axis(pd.DatetimeIndex(rows["ts"])).groupby(rows["turbine_id"].to_numpy())
    rolling = by_turbine.rolling(window, min_periods=1)
    mean, std = trailing_mean_and_std(rows["wind"].to_numpy(), rows["turbine_id"].to_numpy(), rows["ts"],
                                      pd.Timedelta(window))
    np.testing.assert_allclose(mean, rolling.mean().to_numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(std, rolling.std().to_numpy(), rtol=1e-9, atol=1e-9)


def test_a_compiled_forest_predicts_exactly_what_scikit_learn_predicts():
    """Missing values on both sides of the splits and values exactly on a threshold: the
    compiled forest's predictions are scikit-learn's, bit for bit, whatever the number
    of rows."""
    rng = np.random.default_rng(7)
    names = ["wind_speed", "temperature", "turbine"]
    train = pd.DataFrame(rng.normal(8, 4, (3000, 3)), columns=names)
    train.loc[rng.random(3000) < 0.15, "wind_speed"] = np.nan
    train["turbine"] = rng.integers(0, 4, 3000).astype(float)
    target = np.nan_to_num(train["wind_speed"], nan=3.0) ** 3 + 20 * train["turbine"] + rng.normal(0, 5, 3000)
    estimator = HistGradientBoostingRegressor(max_iter=40, max_leaf_nodes=31, random_state=0)
    estimator.fit(train, target)
    forest = CompiledForest.of(estimator)
    rows = pd.DataFrame(rng.normal(8, 6, (500, 3)), columns=names)
    rows.loc[rng.random(500) < 0.2, "temperature"] = np.nan
    rows.loc[rng.random(500) < 0.2, "wind_speed"] = np.nan
    thresholds = forest.threshold[~forest.leaf & (forest.feature == 0)]
    rows.loc[:len(thresholds) - 1, "wind_speed"] = thresholds[:500]
    rows["turbine"] = rng.integers(0, 4, 500).astype(float)
    for n in (1, 4, 500):
        assert np.array_equal(forest.predict(rows.head(n).to_numpy()), estimator.predict(rows.head(n)))


def test_only_squared_error_models_on_numeric_features_compile():
    """Anything else (another loss, a categorical feature, no model at all) is refused
    with a ValueError, which the model registry dataset takes as "no compiled form"."""
    rows = pd.DataFrame({"x": np.arange(100.0), "kind": np.arange(100) % 3})
    poisson = HistGradientBoostingRegressor(loss="poisson", max_iter=2).fit(rows[["x"]], rows["x"] + 1)
    categorical = HistGradientBoostingRegressor(categorical_features=[1], max_iter=2).fit(rows, rows["x"])
    for estimator in (poisson, categorical, None):
        with pytest.raises(ValueError, match="compile"):
            CompiledForest.of(estimator)
