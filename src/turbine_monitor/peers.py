"""A turbine compared with the other turbines of its farm at the same timestamp: the
median and spread of their values, for any number of turbines and farms at once. The
model's farm features and the detector's peer channel both rest on it."""

from __future__ import annotations

import numpy as np
import pandas as pd


def others_median_and_std(values: np.ndarray, farm: np.ndarray, ts: np.ndarray,
                          turbine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each record (`values[i]` of `turbine[i]` of `farm[i]` at `ts[i]`, NaN where
    missing; one record per turbine and timestamp), the median and the standard deviation
    of the values of the other turbines of its farm at the same timestamp (NaN where
    there is none, the deviation where there is one)."""
    farm_code = pd.factorize(farm)[0].astype(np.int64)
    ts_code, stamps = pd.factorize(ts)
    stamp = pd.factorize(farm_code * len(stamps) + ts_code)[0]
    slot = _slot_in_farm(farm_code, turbine)
    grid = np.full((stamp.max() + 1 if len(stamp) else 0, slot.max() + 1 if len(slot) else 0), np.nan)
    grid[stamp, slot] = values
    median, spread = _others_median_and_std(grid)
    return median[stamp, slot], spread[stamp, slot]


def _slot_in_farm(farm_code: np.ndarray, turbine: np.ndarray) -> np.ndarray:
    """Each record's turbine as 0..k-1 within its farm of k turbines (`farm_code`: the
    farm as an integer; a turbine belongs to one farm)."""
    turbine_code, turbines = pd.factorize(turbine)
    farm_of_turbine = np.zeros(len(turbines), dtype=np.int64)
    farm_of_turbine[turbine_code] = farm_code
    slot_of_turbine = pd.Series(farm_of_turbine).groupby(farm_of_turbine).cumcount().to_numpy()
    return slot_of_turbine[turbine_code]


def _others_median_and_std(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each cell of `values` (stamps x turbines, NaN where missing), the median and
    the standard deviation of the other cells of its row: one sort per row."""
    n_rows, n = values.shape
    valid = np.isfinite(values)
    order = np.argsort(np.where(valid, values, np.inf), axis=1, kind="stable")
    ordered = np.take_along_axis(values, order, axis=1)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(n), (n_rows, n)), axis=1)
    others = valid.sum(axis=1, keepdims=True) - valid  # how many other values each cell has

    def kth_other(k: np.ndarray) -> np.ndarray:
        """The k-th smallest of the others (skipping the cell's own rank)."""
        index = np.clip(np.where(k < rank, k, k + 1), 0, n - 1)
        return np.take_along_axis(ordered, index, axis=1)

    with np.errstate(invalid="ignore", divide="ignore"):
        median = np.where(others > 0, (kth_other((others - 1) // 2) + kth_other(others // 2)) / 2, np.nan)
        total = np.nansum(values, axis=1, keepdims=True) - np.where(valid, values, 0.0)
        squares = np.nansum(values ** 2, axis=1, keepdims=True) - np.where(valid, values ** 2, 0.0)
        variance = (squares - total ** 2 / others) / (others - 1)
        spread = np.where(others > 1, np.sqrt(np.maximum(variance, 0.0)), np.nan)
    return median, spread
