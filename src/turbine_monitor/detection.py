"""Sustained-underperformance and stoppage detection on model residuals."""

from __future__ import annotations

import pandas as pd

EPISODE_COLUMNS = ["turbine_id", "kind", "start_ts", "end_ts", "energy_lost_kwh", "records",
                   "mean_relative_residual"]


def detect_alerts(predictions: pd.DataFrame, calibration: pd.DataFrame, params: dict) -> pd.DataFrame:
    return pd.DataFrame(columns=EPISODE_COLUMNS)
