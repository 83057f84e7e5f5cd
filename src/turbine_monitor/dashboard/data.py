"""Each dashboard page's data, read through the Kedro catalog: one function per page,
returning the DataFrames it shows (benchmarks time them as "the page's data is ready").

The `dashboard_*` datasets (conf/base/catalog_dashboard.yml) are loaded with the page's
arguments added to their `query_args`; every load attaches the warehouse for one short
read and detaches it (`datasets.warehouse.connect`), so the app never holds the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset, DataCatalog

from turbine_monitor.dashboard import services


@dataclass(frozen=True)
class Settings:
    """What conf/base/dashboard.yml sets for the pages' reads."""

    stale_after_minutes: int = 60
    power_curve_days: int = 14
    residual_days: int = 60

    @classmethod
    def of(cls, dashboard: dict[str, Any]) -> Settings:
        return cls(**{key: int(dashboard[key]) for key in cls.__dataclass_fields__ if key in dashboard})


class DashboardData:
    """The pages' reads and the acknowledgement write, through a Kedro catalog."""

    def __init__(
        self, catalog: DataCatalog, settings: Settings, conf_source: str | None = None, env: str | None = None
    ):
        config = catalog.to_config()[0]
        self._configs = {name: entry for name, entry in config.items() if name.startswith("dashboard_")}
        self._acknowledgements = catalog.get("alert_acknowledgements")
        self.settings = settings
        self._conf_source, self._env = conf_source, env

    def load(self, name: str, **query_args: Any) -> Any:
        """Dataset `dashboard_<name>` loaded with `query_args` added to its own."""
        config = dict(self._configs[f"dashboard_{name}"])
        config["query_args"] = {**(config.get("query_args") or {}), **query_args}
        return AbstractDataset.from_config(f"dashboard_{name}", config).load()

    def turbines(self) -> pd.DataFrame:
        """Every turbine with its farm."""
        return self.load("turbines")

    def months(self) -> list[str]:
        """The months with KPIs, newest first ('YYYY-MM')."""
        return self.load("months")["month"].tolist()

    def fleet_page(self) -> dict[str, pd.DataFrame]:
        """`states` (each turbine's state, last record, energy lost today and this month),
        `attention` (what to look at first) and `clock` (the fleet's newest record)."""
        return self.load("fleet", stale_after_minutes=self.settings.stale_after_minutes)

    def turbine_page(self, turbine_id: str) -> dict[str, pd.DataFrame]:
        """`scatter`, `expected` and `reference` power curves, hourly `residuals` with
        the alert `episodes`, and daily `kpis` of `turbine_id`."""
        return self.load(
            "turbine",
            turbine_id=turbine_id,
            power_curve_days=self.settings.power_curve_days,
            residual_days=self.settings.residual_days,
        )

    def alerts_page(self) -> pd.DataFrame:
        """Every alert, why it opened (`explanation`, after `note`), its energy lost and
        its acknowledgement."""
        alerts = self.load("alerts")
        alerts.insert(alerts.columns.get_loc("note") + 1, "explanation",
                      [explanation(alert) for alert in alerts.itertuples()])
        return alerts

    def alert_evidence(self, turbine_id: str, start_ts: str, end_ts: str | None) -> pd.DataFrame:
        """The records around one alert (a day either side, capped)."""
        return self.load("alert_evidence", turbine_id=turbine_id, start_ts=start_ts, end_ts=end_ts)

    def losses_page(self, farm_id: str, month: str) -> dict[str, pd.DataFrame]:
        """`waterfall` (the month's energy sums by loss category) and daily `availability`."""
        return self.load("losses", farm_id=farm_id, month=month)

    def pipelines_page(self, farms: dict[str, list[str]]) -> dict[str, Any]:
        """`runs` (the last training and inference runs) and `champions` (each farm's
        champion and holdout metrics; `farms`: their turbines), each with a `*_status`
        line saying where it came from or why it could not be read."""
        runs, runs_status = services.prefect_runs(self._conf_source, self._env)
        champions, champions_status = services.champions(farms, self._conf_source, self._env)
        return {
            "runs": runs,
            "runs_status": runs_status,
            "champions": champions,
            "champions_status": champions_status,
        }

    def acknowledge(self, turbine_id: str, kind: str, start_ts: Any, user: str, note: str) -> None:
        """Record that `user` acknowledged the alert (turbine_id, kind, start_ts) with `note`."""
        start = pd.Timestamp(start_ts)
        self._acknowledgements.save(
            pd.DataFrame(
                {
                    "turbine_id": [turbine_id],
                    "kind": [kind],
                    "start_ts": [start.tz_localize("UTC") if start.tzinfo is None else start],
                    "acknowledged_by": [user],
                    "acknowledged_at": [pd.Timestamp.now(tz="UTC")],
                    "note": [note or None],
                }
            )
        )


def explanation(alert: Any) -> str | None:
    """Why an alert opened, in words: a stop, or the deficit and channel that opened an
    underperformance (and, if the whole episode averages a surplus, that it recovered)."""
    if alert.kind == "stopped":
        return "stopped at wind: no power for the wind it saw"
    if pd.isna(alert.deficit_at_open):
        return None
    text = f"opened at a {100 * alert.deficit_at_open:.1f} % deficit on the {alert.channel} channel"
    if alert.mean_relative_residual > 0:
        text += (f"; the whole episode averages {100 * alert.mean_relative_residual:+.1f} % "
                 "(it recovered after opening)")
    return text
