"""The dashboard: a Vizro app on the Kedro catalog with the pages Fleet (`/`, also
`/fleet`), Turbine (`/turbine`), Alerts (`/alerts`), Losses (`/losses`) and Pipelines
(`/pipelines`). Every page re-reads its data every `refresh_seconds` (dashboard.yml).

Each figure's data is a Vizro data-manager source calling `data.DashboardData` (one
short read of the warehouse per page and refresh: the figures of a page share it for a
couple of seconds); the acknowledge form and the evidence plot are Vizro actions.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import flask
import pandas as pd
import vizro.actions as va
import vizro.models as vm
from vizro import Vizro
from vizro.managers import data_manager
from vizro.models.types import capture
from vizro.tables import dash_ag_grid

from turbine_monitor.dashboard.auth import check_binding, current_user, require_users, users_from
from turbine_monitor.dashboard.charts import (
    availability_chart,
    empty_figure,
    evidence_figure,
    power_curve_chart,
    residuals_chart,
    status_line,
    waterfall_chart,
)
from turbine_monitor.dashboard.components import ActionPlot, Memory, Refresh
from turbine_monitor.dashboard.data import DashboardData, Settings
from turbine_monitor.dashboard.queries import LATEST_MONTH

#: How long the figures of one page share a read (s): one read per page and refresh.
SHARED_READ_S = 2.0
TIME_FORMAT = "%Y-%m-%d %H:%M"
STATES = ("producing", "underperforming", "stopped", "no recent data")
ALERT_KINDS = ("underperformance", "stopped")
FLEET_COLUMNS = ("farm_id", "turbine_id", "state", "last_record", "lost_today_kwh", "lost_month_kwh")

for component in (Refresh, ActionPlot, Memory):
    vm.Page.add_type("components", component)
vm.Container.add_type("components", vm.UserInput)  # the acknowledge form's note


@dataclass(frozen=True)
class DashboardConfig:
    """conf/base/dashboard.yml, with the command line's overrides."""

    host: str = "127.0.0.1"
    port: int = 8050
    refresh_seconds: float = 10
    links: dict[str, str] = field(default_factory=dict)
    settings: Settings = Settings()

    @classmethod
    def of(
        cls, dashboard: dict[str, Any], host: str | None = None, port: int | None = None
    ) -> DashboardConfig:
        return cls(
            host=host or dashboard.get("host", cls.host),
            port=int(port or dashboard.get("port", cls.port)),
            refresh_seconds=float(dashboard.get("refresh_seconds", cls.refresh_seconds)),
            links=dict(dashboard.get("links") or {}),
            settings=Settings.of(dashboard),
        )


class SharedReads:
    """Results of recent reads by key, kept `ttl_s` seconds (the figures of a page share one)."""

    def __init__(self, ttl_s: float = SHARED_READ_S):
        self._ttl_s, self._results, self._lock = ttl_s, {}, threading.Lock()

    def __call__(self, key: tuple, read: Callable[[], Any]) -> Any:
        with self._lock:
            now = time.monotonic()
            self._results = {
                kept: result for kept, result in self._results.items() if now - result[0] <= self._ttl_s
            }
            if key not in self._results:
                self._results[key] = (now, read())
            return self._results[key][1]


def for_display(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` for a table: timestamps as 'YYYY-MM-DD HH:MM' (UTC) text, missing values blank."""
    times = [column for column in frame.columns if pd.api.types.is_datetime64_any_dtype(frame[column])]
    shown = frame.assign(**{column: frame[column].dt.strftime(TIME_FORMAT) for column in times})
    return shown.astype(object).where(shown.notna(), None)


def turbine_link(turbine_id: str) -> str:
    """A markdown link to the Turbine page showing `turbine_id` (Vizro's URL encoding of a
    control's value: `b64_` and the URL-safe base64 of its JSON, unpadded)."""
    value = base64.urlsafe_b64encode(json.dumps(turbine_id).encode()).decode().rstrip("=")
    return f"[{turbine_id}](/turbine?turbine_select=b64_{value})"


def status_frame(text: str) -> pd.DataFrame:
    """A line of text as the one-row frame `charts.status_line` draws."""
    return pd.DataFrame({"status": [text]})


def describe(alert: dict) -> str:
    """An alert in words: its turbine, kind and start."""
    return f"{alert['turbine_id']} {alert['kind']} alert from {alert['start_ts']}"


def choices(turbines: pd.DataFrame) -> dict[str, list[str]]:
    """The values the tables' choices offer, by column."""
    return {
        "farm_id": sorted(turbines["farm_id"].unique()),
        "turbine_id": turbines["turbine_id"].tolist(),
        "state": list(STATES),
        "kind": list(ALERT_KINDS),
        "status": ["open", "closed"],
        "acknowledged": ["no", "yes"],
    }


def only(
    frame: pd.DataFrame, chosen: dict[str, list[str] | None], offered: dict[str, list[str]]
) -> pd.DataFrame:
    """The rows of `frame` with the `chosen` values; a column with every `offered` value
    chosen is not filtered (a farm or turbine added since the start still shows)."""
    for column, values in chosen.items():
        if values is not None and not set(offered[column]) <= set(values):
            frame = frame[frame[column].isin(values)]
    return frame


def register_sources(
    data: DashboardData, turbines: pd.DataFrame, months: list[str], offered: dict[str, list[str]]
) -> None:
    """The data-manager sources of every figure, named `<page>_<part>`."""
    shared = SharedReads()
    first_turbine = turbines["turbine_id"].iloc[0] if len(turbines) else ""
    first_farm = turbines["farm_id"].iloc[0] if len(turbines) else ""

    def fleet() -> dict[str, pd.DataFrame]:
        return shared(("fleet",), data.fleet_page)

    def turbine(turbine_id: str) -> dict[str, pd.DataFrame]:
        return shared(("turbine", turbine_id), lambda: data.turbine_page(turbine_id))

    def losses(farm_id: str, month: str) -> dict[str, pd.DataFrame]:
        return shared(("losses", farm_id, month), lambda: data.losses_page(farm_id, month))

    def pipelines() -> dict[str, Any]:
        farms = {farm: rows["turbine_id"].tolist() for farm, rows in turbines.groupby("farm_id")}
        return shared(("pipelines",), lambda: data.pipelines_page(farms))

    def fleet_clock() -> pd.DataFrame:
        now = fleet()["clock"]["now"].iloc[0]
        return status_frame(
            "No records yet."
            if pd.isna(now)
            else f"Fleet clock (the newest record of the fleet): {now:{TIME_FORMAT}} UTC. "
            "Today, this month and 'no recent data' are relative to it."
        )

    def turbine_curves(turbine_id: str = first_turbine) -> pd.DataFrame:
        page = turbine(turbine_id)
        return pd.concat(
            [
                page["scatter"].assign(series="records"),
                page["expected"].assign(series="champion expected (bin mean)"),
                page["reference"].assign(series="IEC reference (bin mean)"),
            ],
            ignore_index=True,
        )

    def turbine_residuals(turbine_id: str = first_turbine) -> pd.DataFrame:
        page = turbine(turbine_id)
        return pd.concat(
            [page["residuals"].assign(part="residual"), page["episodes"].assign(part="episode")],
            ignore_index=True,
        )

    def turbine_kpis(turbine_id: str = first_turbine) -> pd.DataFrame:
        return for_display(turbine(turbine_id)["kpis"])

    def losses_waterfall(farm_id: str = first_farm, month: str = months[0]) -> pd.DataFrame:
        return losses(farm_id, month)["waterfall"]

    def losses_availability(farm_id: str = first_farm, month: str = months[0]) -> pd.DataFrame:
        return losses(farm_id, month)["availability"]

    def fleet_states(farm_id: list[str] | None = None, state: list[str] | None = None) -> pd.DataFrame:
        states = only(fleet()["states"], {"farm_id": farm_id, "state": state}, offered)
        return for_display(states.assign(turbine_page=states["turbine_id"].map(turbine_link)))

    def alerts(
        farm_id: list[str] | None = None,
        turbine_id: list[str] | None = None,
        kind: list[str] | None = None,
        status: list[str] | None = None,
        acknowledged: list[str] | None = None,
    ) -> pd.DataFrame:
        chosen = {
            "farm_id": farm_id,
            "turbine_id": turbine_id,
            "kind": kind,
            "status": status,
            "acknowledged": acknowledged,
        }
        return for_display(only(data.alerts_page(), chosen, offered))

    data_manager["fleet_states"] = fleet_states
    data_manager["fleet_attention"] = lambda: for_display(fleet()["attention"])
    data_manager["fleet_clock"] = fleet_clock
    data_manager["turbine_curves"] = turbine_curves
    data_manager["turbine_residuals"] = turbine_residuals
    data_manager["turbine_kpis"] = turbine_kpis
    data_manager["alerts"] = alerts
    data_manager["losses_waterfall"] = losses_waterfall
    data_manager["losses_availability"] = losses_availability
    data_manager["pipeline_runs"] = lambda: pipelines()["runs"]
    data_manager["pipeline_runs_status"] = lambda: status_frame(pipelines()["runs_status"])
    data_manager["champions"] = lambda: pipelines()["champions"]
    data_manager["champions_status"] = lambda: status_frame(pipelines()["champions_status"])


def grid(table_id: str, source: str, **options: Any) -> vm.Table:
    """An AG Grid table of `source` (Vizro id `table_id`, grid id `<table_id>_grid`)."""
    return vm.Table(
        id=table_id,
        figure=dash_ag_grid(data_frame=source, id=f"{table_id}_grid", columnSize="autoSize", **options),
    )


def choice(column: str, offered: dict[str, list[str]], table: str) -> vm.Parameter:
    """The choice of `table`'s rows by `column` (id `<table>_<column>`), every value at
    first. A Vizro parameter of the table's data source, not a Vizro filter: a filter
    cannot be built on a table without rows (a new warehouse, a fleet with no alert yet)."""
    options = offered[column] or [""]
    return vm.Parameter(
        id=f"{table}_{column}",
        targets=[f"{table}.data_frame.{column}"],
        selector=vm.Dropdown(options=options, value=options, multi=True, title=column.replace("_", " ")),
    )


def refresh(page: str, config: DashboardConfig, targets: list[str] | None = None) -> Refresh:
    """The page's timer, re-reading `targets` (default: every figure of the page)."""
    return Refresh(
        id=f"{page}_refresh",
        interval_s=config.refresh_seconds,
        actions=[va.update_targets(targets=targets or [])],
    )


def fleet_page(config: DashboardConfig, offered: dict[str, list[str]]) -> vm.Page:
    return vm.Page(
        id="fleet",
        title="Fleet",
        path="/",
        layout=vm.Flex(),
        components=[
            vm.Figure(id="fleet_clock", figure=status_line(data_frame="fleet_clock")),
            grid("attention_table", "fleet_attention"),
            grid(
                "fleet_table",
                "fleet_states",
                columnDefs=[
                    *({"field": column} for column in FLEET_COLUMNS),
                    {"field": "turbine_page", "cellRenderer": "markdown"},
                ],
            ),
            refresh("fleet", config),
        ],
        controls=[
            choice("farm_id", offered, "fleet_table"),
            choice("state", offered, "fleet_table"),
        ],
    )


def turbine_page(config: DashboardConfig, turbines: pd.DataFrame) -> vm.Page:
    options = turbines["turbine_id"].tolist()
    return vm.Page(
        id="turbine",
        title="Turbine",
        path="/turbine",
        layout=vm.Flex(),
        components=[
            vm.Graph(
                id="power_curve",
                figure=power_curve_chart(data_frame="turbine_curves"),
                title=f"Power curve: the last {config.settings.power_curve_days} days",
            ),
            vm.Graph(
                id="residuals_graph",
                figure=residuals_chart(data_frame="turbine_residuals"),
                title=f"Hourly residuals and alert episodes: the last {config.settings.residual_days} days",
            ),
            grid("kpi_table", "turbine_kpis"),
            refresh("turbine", config),
        ],
        controls=[
            vm.Parameter(
                id="turbine_select",
                show_in_url=True,
                targets=[
                    f"{figure}.data_frame.turbine_id"
                    for figure in ("power_curve", "residuals_graph", "kpi_table")
                ],
                selector=vm.Dropdown(
                    options=options or [""], value=options[0] if options else "", multi=False, title="Turbine"
                ),
            )
        ],
    )


def alerts_page(config: DashboardConfig, data: DashboardData, offered: dict[str, list[str]]) -> vm.Page:
    @capture("action")
    def select_alert(selected_rows: list[dict] | None) -> tuple[Any, dict | None, str]:
        if not selected_rows:
            return empty_figure("Select an alert to see its evidence"), None, " "
        alert = {key: selected_rows[0][key] for key in ("turbine_id", "kind", "start_ts", "end_ts")}
        records = data.alert_evidence(alert["turbine_id"], alert["start_ts"], alert["end_ts"])
        return evidence_figure(records, alert), alert, f"Selected: {describe(alert)}."

    @capture("action")
    def acknowledge(alert: dict | None, note: str | None) -> str:
        if not alert:
            return "Select an alert first."
        user = current_user()
        data.acknowledge(alert["turbine_id"], alert["kind"], alert["start_ts"], user, note or "")
        return f"{describe(alert)} acknowledged by {user}."

    table = grid(
        "alerts_table",
        "alerts",
        dashGridOptions={"rowSelection": {"mode": "singleRow", "enableClickSelection": True}},
        getRowId="params.data.turbine_id + '|' + params.data.kind + '|' + params.data.start_ts",
    )
    table.actions = [
        vm.Action(
            function=select_alert("alerts_table.selectedRows"),
            outputs=["evidence_graph", "selected_alert", "ack_status"],
        )
    ]
    return vm.Page(
        id="alerts",
        title="Alerts",
        path="/alerts",
        layout=vm.Flex(),
        components=[
            table,
            vm.Container(
                id="ack_form",
                title="Acknowledge the selected alert",
                layout=vm.Flex(direction="row"),
                components=[
                    vm.UserInput(id="ack_note", title="Note"),
                    vm.Button(
                        id="ack_button",
                        text="Acknowledge",
                        actions=[
                            vm.Action(
                                function=acknowledge("selected_alert", "ack_note"),
                                outputs="ack_status",
                            ),
                            va.update_targets(targets=["alerts_table"]),
                        ],
                    ),
                    vm.Text(id="ack_status", text=" "),
                ],
            ),
            ActionPlot(id="evidence_graph", placeholder="Select an alert to see its evidence"),
            Memory(id="selected_alert"),
            refresh("alerts", config, targets=["alerts_table"]),
        ],
        controls=[
            *(
                choice(column, offered, "alerts_table")
                for column in ("farm_id", "turbine_id", "kind", "status", "acknowledged")
            ),
        ],
    )


def losses_page(config: DashboardConfig, turbines: pd.DataFrame, months: list[str]) -> vm.Page:
    farms = sorted(turbines["farm_id"].unique()) or [""]
    return vm.Page(
        id="losses",
        title="Losses",
        path="/losses",
        layout=vm.Flex(),
        components=[
            vm.Graph(
                id="waterfall_graph",
                figure=waterfall_chart(data_frame="losses_waterfall"),
                title="From expected to produced energy",
            ),
            vm.Graph(
                id="availability_graph",
                figure=availability_chart(data_frame="losses_availability"),
                title="Daily availability over the year to that month",
            ),
            refresh("losses", config),
        ],
        controls=[
            vm.Parameter(
                id="losses_farm",
                show_in_url=True,
                targets=["waterfall_graph.data_frame.farm_id", "availability_graph.data_frame.farm_id"],
                selector=vm.Dropdown(options=farms, value=farms[0], multi=False, title="Farm"),
            ),
            vm.Parameter(
                id="losses_month",
                show_in_url=True,
                targets=["waterfall_graph.data_frame.month", "availability_graph.data_frame.month"],
                selector=vm.Dropdown(options=months, value=months[0], multi=False, title="Month"),
            ),
        ],
    )


def pipelines_page(config: DashboardConfig) -> vm.Page:
    links = " · ".join(f"[{name.replace('_', '-')}]({url})" for name, url in config.links.items())
    return vm.Page(
        id="pipelines",
        title="Pipelines",
        path="/pipelines",
        layout=vm.Flex(),
        components=[
            vm.Text(id="pipeline_links", text=f"UIs: {links}"),
            vm.Figure(id="runs_status", figure=status_line(data_frame="pipeline_runs_status")),
            grid("runs_table", "pipeline_runs"),
            vm.Figure(id="champions_status", figure=status_line(data_frame="champions_status")),
            grid("champions_table", "champions"),
            refresh("pipelines", config),
        ],
    )


def build_dashboard(data: DashboardData, config: DashboardConfig) -> vm.Dashboard:
    """The five pages on `data`'s warehouse (their choices read once, at start)."""
    turbines = data.turbines()
    months = [LATEST_MONTH, *data.months()]
    offered = choices(turbines)
    register_sources(data, turbines, months, offered)
    return vm.Dashboard(
        title="turbine-monitor",
        pages=[
            fleet_page(config, offered),
            turbine_page(config, turbines),
            alerts_page(config, data, offered),
            losses_page(config, turbines, months),
            pipelines_page(config),
        ],
    )


def create_app(
    conf_source: str | None = None,
    env: str | None = None,
    host: str | None = None,
    port: int | None = None,
    environ: dict[str, str] | None = None,
) -> tuple[Vizro, DashboardConfig]:
    """The dashboard app on the project's catalog (`conf_source`, `env`), after checking
    that its address and users allow it to start (`auth.DashboardRefused` otherwise)."""
    from vizro.integrations.kedro import catalog_from_project

    from turbine_monitor.project import PROJECT_ROOT, load_config

    config = DashboardConfig.of(load_config("dashboard", conf_source, env)["dashboard"], host, port)
    users = users_from(credentials(conf_source, env), environ)
    check_binding(config.host, users)
    catalog = catalog_from_project(PROJECT_ROOT, conf_source=conf_source, env=env)
    data = DashboardData(catalog, config.settings, conf_source, env)
    Vizro._reset()
    app = Vizro().build(build_dashboard(data, config))
    require_users(app.dash.server, users)
    app.dash.server.add_url_rule("/fleet", "fleet", lambda: flask.redirect("/"))
    return app, config


def credentials(conf_source: str | None, env: str | None) -> dict[str, Any]:
    """The Kedro credentials (none configured: empty)."""
    from kedro.config import MissingConfigException

    from turbine_monitor.project import load_config

    try:
        return load_config("credentials", conf_source, env)
    except MissingConfigException:
        return {}
