"""The normal-behaviour model (NBM) of turbine power and its IEC baseline.

`PowerModel` holds everything needed to turn `scada` rows of one farm into expected
power: the feature engineering (trailing windows of the turbine's own wind speed, the
other turbines' wind speeds at the same timestamp, calendar), the fitted estimator, the IEC
binned power curve and the residual calibration. `PowerModelPyfunc` ships it to MLflow
as a pyfunc, so `mlflow.pyfunc.load_model(...)` predicts from raw `scada` rows alone.

No feature looks at a later record, at pitch, or at any turbine's power.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types.schema import AnyType, ColSpec, Schema
from sklearn.ensemble import HistGradientBoostingRegressor

from turbine_monitor.peers import others_median_and_std

#: The `scada` columns the model reads.
INPUT_COLUMNS = ["turbine_id", "ts", "wind_speed_ms", "wind_direction_deg", "outdoor_temp_c"]


def make_features(scada: pd.DataFrame, windows: list[str], nearest: dict[str, str]) -> pd.DataFrame:
    """Model features for each row of `scada` (same index), whatever its farms: rows of
    one farm, or of several when `scada` has a `farm_id` column (turbine ids are unique
    across the fleet).

    - `wind_speed`, `dir_sin`, `dir_cos`, `temperature`;
    - the farm at the same timestamp, for any number of turbines: `farm_wind_speed`, the
      median wind speed of the farm's other turbines, `farm_wind_spread`, their standard
      deviation, `wind_speed_vs_farm` (own minus median); `nearest_wind_speed`, the wind
      speed of the turbine's nearest neighbour (`nearest`), and `wind_speed_vs_nearest`
      (NaN where there is none: a farm of one turbine);
    - per window in `windows` (e.g. "30min"): mean and std of the turbine's own wind
      speed over the trailing window, and `wind_speed_lag` (the record 10 min before);
    - `hour` of day and `day_of_year`.

    Also `turbine_id` and `ts`. Duplicate (turbine, ts) rows share the features of the
    first one. The model adds `turbine`, its position in the farm (`PowerModel.select_features`).
    """
    columns = [*INPUT_COLUMNS, *(["farm_id"] if "farm_id" in scada else [])]
    rows = scada[columns].drop_duplicates(["turbine_id", "ts"]).sort_values(["turbine_id", "ts"])
    wind = rows["wind_speed_ms"].astype("float64")
    direction = np.deg2rad(rows["wind_direction_deg"].astype("float64"))
    features = pd.DataFrame({
        "turbine_id": rows["turbine_id"], "ts": rows["ts"],
        "wind_speed": wind, "dir_sin": np.sin(direction), "dir_cos": np.cos(direction),
        "temperature": rows["outdoor_temp_c"].astype("float64"),
    })

    farm = rows["farm_id"].to_numpy() if "farm_id" in rows else np.zeros(len(rows), dtype=int)
    median, spread = others_median_and_std(wind.to_numpy(), farm, pd.DatetimeIndex(rows["ts"]).asi8,
                                           rows["turbine_id"].to_numpy())
    features["farm_wind_speed"], features["farm_wind_spread"] = median, spread
    features["wind_speed_vs_farm"] = features["wind_speed"] - features["farm_wind_speed"]
    neighbour = pd.DataFrame({"turbine_id": rows["turbine_id"].map(nearest), "ts": rows["ts"]})
    wind_at = pd.Series(wind.to_numpy(), index=pd.MultiIndex.from_frame(rows[["turbine_id", "ts"]]))
    features["nearest_wind_speed"] = wind_at.reindex(pd.MultiIndex.from_frame(neighbour)).to_numpy()
    features["wind_speed_vs_nearest"] = features["wind_speed"] - features["nearest_wind_speed"]

    for window in windows:
        mean, std = trailing_mean_and_std(wind.to_numpy(), rows["turbine_id"].to_numpy(), rows["ts"],
                                          pd.Timedelta(window))
        features[f"wind_speed_mean_{window}"], features[f"wind_speed_std_{window}"] = mean, std
    previous = pd.MultiIndex.from_arrays([rows["turbine_id"], rows["ts"] - pd.Timedelta("10min")])
    features["wind_speed_lag"] = wind_at.reindex(previous).to_numpy()

    features["hour"] = features["ts"].dt.hour + features["ts"].dt.minute / 60
    features["day_of_year"] = features["ts"].dt.day_of_year.astype("float64")
    keyed = features.set_index(pd.MultiIndex.from_frame(rows[["turbine_id", "ts"]]))
    return keyed.reindex(pd.MultiIndex.from_frame(scada[["turbine_id", "ts"]])).set_index(scada.index)


def trailing_mean_and_std(values: np.ndarray, turbine: np.ndarray, ts: pd.Series,
                          window: pd.Timedelta) -> tuple[np.ndarray, np.ndarray]:
    """For rows sorted by turbine then time, the mean and standard deviation (ddof 1) of
    the turbine's `values` over the trailing `window` ending at each row (`(ts - window,
    ts]`, as pandas' time-based `rolling(window, min_periods=1)`), NaN values left out:
    NaN without a value, the deviation without two. One vectorised pass per row the
    longest window holds (18 for 3 hours of 10-minute records)."""
    k = np.arange(len(values))
    turbine_start = np.maximum.accumulate(np.where(np.r_[True, turbine[1:] != turbine[:-1]], k, 0))
    seconds = pd.DatetimeIndex(ts).as_unit("s").asi8
    seconds = seconds - seconds.min() if len(seconds) else seconds
    span = int(seconds.max(initial=0)) + int(window.total_seconds()) + 1
    key = np.cumsum(k == turbine_start) * span + seconds  # increasing: turbine, then time
    first = np.maximum(np.searchsorted(key, key - int(window.total_seconds()), side="right"), turbine_start)
    valid = np.isfinite(values)
    width = int((k - first).max(initial=-1)) + 1

    def over_window(term: Callable[[np.ndarray], np.ndarray | float]) -> np.ndarray:
        """Sum of `term(j)` over the valid rows j of each row's window."""
        total = np.zeros(len(values))
        for back in range(width):
            j = np.maximum(k - back, 0)
            total += np.where((k - back >= first) & valid[j], term(j), 0.0)
        return total

    count = over_window(lambda j: 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, over_window(lambda j: values[j]) / count, np.nan)
        squares = over_window(lambda j: (values[j] - mean) ** 2)
        std = np.where(count > 1, np.sqrt(squares / (count - 1)), np.nan)
    return mean, std


def nearest_turbines(assets: pd.DataFrame) -> dict[str, str]:
    """Each turbine's nearest other turbine of the farm, by the asset table's coordinates
    (none for a farm of one turbine)."""
    if len(assets) < 2:
        return {}
    lat = np.deg2rad(assets["Latitude"].to_numpy(dtype="float64"))
    lon = np.deg2rad(assets["Longitude"].to_numpy(dtype="float64"))
    north = lat[:, None] - lat[None, :]
    east = (lon[:, None] - lon[None, :]) * np.cos((lat[:, None] + lat[None, :]) / 2)
    distance = np.hypot(north, east)
    np.fill_diagonal(distance, np.inf)
    names = assets["Wind_turbine_name"].astype(str).to_numpy()
    return dict(zip(names, names[distance.argmin(axis=1)], strict=True))


@dataclass
class IecPowerCurve:
    """IEC 61400-12-style binned power curve per turbine: mean power per wind-speed bin,
    linearly interpolated between bin centres."""

    bin_width_ms: float
    curves: dict[str, tuple[np.ndarray, np.ndarray]]

    @classmethod
    def fit(cls, rows: pd.DataFrame, bin_width_ms: float, min_records_per_bin: int) -> IecPowerCurve:
        bins = np.floor(rows["wind_speed_ms"] / bin_width_ms)
        table = (rows.assign(bin=bins).groupby(["turbine_id", "bin"])
                 .agg(wind=("wind_speed_ms", "mean"), power=("power_kw", "mean"), n=("power_kw", "size")))
        table = table[table["n"] >= min_records_per_bin].reset_index()
        return cls(bin_width_ms, {
            t: (g["wind"].to_numpy(), g["power"].to_numpy()) for t, g in table.groupby("turbine_id")})

    def predict(self, scada: pd.DataFrame) -> np.ndarray:
        expected = np.full(len(scada), np.nan)
        for turbine, (wind, power) in self.curves.items():
            mask = (scada["turbine_id"] == turbine).to_numpy()
            expected[mask] = np.interp(scada["wind_speed_ms"].to_numpy()[mask], wind, power)
        return expected


def model_inputs(features: pd.DataFrame, feature_names: list[str],
                 positions: dict[str, float]) -> pd.DataFrame:
    """The `feature_names` columns of `make_features` output, with `turbine` as the
    turbine's position in its farm (`positions`, by turbine id; NaN for another turbine):
    numeric, so that predicting needs no categorical encoder (~8 ms a call, paid per
    farm). The rows of several farms whose models read the same features can be selected
    at once (turbine ids are unique across the fleet)."""
    selected = features[[name for name in feature_names if name != "turbine"]]
    return selected.assign(turbine=features["turbine_id"].map(positions))[feature_names]


@dataclass(frozen=True)
class CompiledForest:
    """A fitted `HistGradientBoostingRegressor` (squared error, numeric features) as flat
    node arrays that predict a few rows in a handful of vectorised steps: scikit-learn's
    `predict` costs ~2 ms a call whatever the rows (a Python call per tree), which a live
    run of 100 farms pays 100 times; this ~0.3 ms. Predictions equal scikit-learn's to
    the last bit: the same comparisons (NaN follows `missing_go_to_left`, else
    `x <= threshold` goes left) and the trees summed in scikit-learn's order onto its
    baseline. For many rows scikit-learn is faster (Cython over rows); the caller chooses."""

    feature: np.ndarray       # per node: the feature it compares
    threshold: np.ndarray
    missing_left: np.ndarray
    left: np.ndarray          # per node: its children, as indices into these arrays
    right: np.ndarray
    leaf: np.ndarray
    value: np.ndarray         # per node: the leaf value
    roots: np.ndarray         # per tree, in boosting order: its root node
    baseline: float

    @classmethod
    def of(cls, estimator: HistGradientBoostingRegressor) -> CompiledForest:
        """The forest of `estimator`; ValueError for a model it cannot represent."""
        if (not isinstance(estimator, HistGradientBoostingRegressor) or estimator.loss != "squared_error"
                or estimator.is_categorical_ is not None):
            raise ValueError("only HistGradientBoostingRegressor models with squared error on numeric "
                             "features compile")
        trees = [predictors[0].nodes for predictors in estimator._predictors]
        roots = np.cumsum([0] + [len(nodes) for nodes in trees])[:-1]
        nodes = np.concatenate(trees)
        shift = np.repeat(roots, [len(nodes) for nodes in trees])
        return cls(feature=nodes["feature_idx"].astype(np.int32),
                   threshold=nodes["num_threshold"].astype(np.float64),
                   missing_left=nodes["missing_go_to_left"].astype(bool),
                   left=(nodes["left"] + shift).astype(np.int32),
                   right=(nodes["right"] + shift).astype(np.int32),
                   leaf=nodes["is_leaf"].astype(bool), value=nodes["value"].astype(np.float64),
                   roots=roots.astype(np.int32), baseline=float(np.ravel(estimator._baseline_prediction)[0]))

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """Predictions for the rows of `inputs` (float64, the features in the model's order)."""
        node = np.tile(self.roots, len(inputs))  # per (row, tree): where its walk is
        row = np.repeat(np.arange(len(inputs)), len(self.roots))
        active = np.flatnonzero(~self.leaf[node])
        while len(active):  # walk the paths not at a leaf yet one level down
            at = node[active]
            x = inputs[row[active], self.feature[at]]
            go_left = np.where(np.isnan(x), self.missing_left[at], x <= self.threshold[at])
            node[active] = np.where(go_left, self.left[at], self.right[at])
            active = active[~self.leaf[node[active]]]
        leaf_values = self.value[node].reshape(len(inputs), len(self.roots))
        terms = np.column_stack([np.full(len(inputs), self.baseline), leaf_values])
        return np.add.accumulate(terms, axis=1)[:, -1]  # left to right: scikit-learn's order


@dataclass
class PowerModel:
    """Expected active power (kW) from `scada` rows, with what inference needs to judge
    residuals: `calibration` holds training-residual quantiles per turbine and wind bin."""

    estimator: HistGradientBoostingRegressor
    turbines: list[str]
    windows: list[str]
    feature_names: list[str]
    nearest: dict[str, str]
    iec_curve: IecPowerCurve
    trained_from: pd.Timestamp
    trained_until: pd.Timestamp
    calibration: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: The estimator compiled for small batches (scoring's serving form; None: not compiled).
    forest: CompiledForest | None = None

    @property
    def history_needed(self) -> pd.Timedelta:
        """How far back before a row the model reads (trailing windows, lag)."""
        return max([pd.Timedelta(w) for w in self.windows] + [pd.Timedelta("10min")])

    def predict_rows(self, rows: pd.Index, scada: pd.DataFrame) -> pd.Series:
        """Expected power for `scada.loc[rows]`, reading the history they need from `scada`."""
        start = scada.loc[rows, "ts"].min() - self.history_needed
        context = scada[scada["ts"] >= start]
        return pd.Series(self.predict(context), index=context.index)[rows]

    def features(self, scada: pd.DataFrame) -> pd.DataFrame:
        """The model's features for `scada` rows of its farm."""
        return self.select_features(make_features(scada, self.windows, self.nearest))

    @property
    def positions(self) -> dict[str, float]:
        """Each turbine's position in the farm's list: the model's `turbine` feature."""
        return {turbine: float(i) for i, turbine in enumerate(self.turbines)}

    def select_features(self, features: pd.DataFrame) -> pd.DataFrame:
        """The model's columns of `make_features` output (`model_inputs`)."""
        return model_inputs(features, self.feature_names, self.positions)

    def predict(self, scada: pd.DataFrame) -> np.ndarray:
        """Expected power in kW; NaN where the wind speed is missing."""
        if scada.empty:
            return np.array([], dtype="float64")
        return self.predict_features(self.features(scada))

    def predict_features(self, features: pd.DataFrame | np.ndarray, compiled_max_rows: int = 0) -> np.ndarray:
        """Expected power in kW from `select_features` output (or its values, the columns
        in `feature_names` order); NaN where the wind speed is missing. At most
        `compiled_max_rows` rows are predicted by the compiled `forest`, if any (the same
        predictions, faster for a few rows)."""
        values = np.asarray(features, dtype="float64")
        if self.forest is not None and len(values) <= compiled_max_rows:
            expected = self.forest.predict(values)
        else:
            expected = self.estimator.predict(pd.DataFrame(values, columns=self.feature_names))
        return np.where(np.isnan(values[:, self.feature_names.index("wind_speed")]), np.nan, expected)

    @staticmethod
    def input_example(scada: pd.DataFrame) -> pd.DataFrame:
        """A few `scada` rows in the model's input columns, `ts` as ISO-8601 text."""
        example = scada[INPUT_COLUMNS].head(8).reset_index(drop=True)
        return example.assign(ts=example["ts"].map(pd.Timestamp.isoformat))


class PowerModelPyfunc(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc wrapper: `predict(DataFrame of scada rows)` -> expected power (kW).

    `ts` may be timezone-aware, naive UTC or ISO-8601 text (MLflow's datetime type
    accepts only naive values, hence `any`); other `scada` columns are ignored.
    """

    SIGNATURE = ModelSignature(
        inputs=Schema([ColSpec("string", "turbine_id"), ColSpec(AnyType(), "ts"),
                       ColSpec("double", "wind_speed_ms"), ColSpec("double", "wind_direction_deg"),
                       ColSpec("double", "outdoor_temp_c")]),
        outputs=Schema([ColSpec("double", "expected_power_kw")]),
    )

    def __init__(self, power_model: PowerModel):
        self.power_model = power_model

    def predict(self, context: object, model_input: pd.DataFrame, params: dict | None = None) -> np.ndarray:
        scada = model_input.copy()
        scada["ts"] = pd.to_datetime(scada["ts"], utc=True)
        return self.power_model.predict(scada)

