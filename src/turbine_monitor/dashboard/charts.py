"""The dashboard's figures: Vizro captured callables drawing one page's DataFrame."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from dash import html
from vizro.models.types import capture

#: Loss categories of the waterfall, in order, with their labels.
LOSS_STEPS = {
    "lost_stopped_kwh": "Stopped",
    "lost_underperformance_kwh": "Underperformance",
    "lost_data_gap_kwh": "Data gap",
    "other_kwh": "Other",
}
EPISODE_COLOURS = {"stopped": "rgba(220, 60, 60, 0.18)", "underperformance": "rgba(240, 160, 40, 0.22)"}


def empty_figure(message: str) -> go.Figure:
    """A blank figure that says why it is blank."""
    figure = go.Figure()
    figure.add_annotation(text=message, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False)
    return figure


@capture("figure")
def status_line(data_frame: pd.DataFrame) -> html.P:
    """The frame's one `status` value as a line of text."""
    return html.P(data_frame["status"].iloc[0] if len(data_frame) else "", className="status-line")


@capture("graph")
def power_curve_chart(data_frame: pd.DataFrame) -> go.Figure:
    """Records as points; the champion's expected and the IEC reference curves as lines."""
    if data_frame.empty:
        return empty_figure("No records in the window")
    figure = go.Figure()
    for series, rows in data_frame.groupby("series", sort=False):
        points = series == "records"
        figure.add_trace(
            go.Scattergl(
                x=rows["wind_speed_ms"],
                y=rows["power_kw"],
                name=series,
                mode="markers" if points else "lines+markers",
                marker={"size": 3, "opacity": 0.35} if points else {"size": 5},
            )
        )
    figure.update_layout(xaxis_title="wind speed (m/s)", yaxis_title="power (kW)", legend_orientation="h")
    return figure


@capture("graph")
def residuals_chart(data_frame: pd.DataFrame) -> go.Figure:
    """Hourly mean residual (power - expected) with the alert episodes shaded."""
    hours = data_frame[data_frame["part"] == "residual"]
    if hours.empty:
        return empty_figure("No predictions in the window")
    figure = go.Figure(
        go.Scatter(x=hours["hour"], y=hours["residual_kw"], name="residual (kW)", mode="lines")
    )
    for episode in data_frame[data_frame["part"] == "episode"].itertuples():
        figure.add_vrect(
            x0=episode.start_ts,
            x1=episode.end_ts,
            line_width=0,
            fillcolor=EPISODE_COLOURS.get(episode.kind, "rgba(120,120,120,0.2)"),
            annotation_text=episode.kind,
            annotation_position="top left",
        )
    figure.add_hline(y=0, line_dash="dot")
    figure.update_layout(xaxis_title="hour (UTC)", yaxis_title="power - expected (kW)", showlegend=False)
    return figure


def evidence_figure(records: pd.DataFrame, alert: dict) -> go.Figure:
    """One alert's evidence: power and expected power, and their difference, the episode shaded."""
    if records.empty:
        return empty_figure("No predictions around this alert")
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=records["ts"], y=records["expected_power_kw"], name="expected (kW)"))
    figure.add_trace(go.Scatter(x=records["ts"], y=records["power_kw"], name="power (kW)"))
    figure.add_trace(go.Scatter(x=records["ts"], y=records["residual_kw"], name="power - expected (kW)"))
    figure.add_vrect(
        x0=alert["start_ts"],
        x1=alert.get("end_ts") or records["ts"].max(),
        line_width=0,
        fillcolor=EPISODE_COLOURS.get(alert["kind"], "rgba(120,120,120,0.2)"),
    )
    figure.update_layout(
        title=f"{alert['turbine_id']} {alert['kind']} from {alert['start_ts']}",
        xaxis_title="time (UTC)",
        yaxis_title="kW",
        legend_orientation="h",
    )
    return figure


@capture("graph")
def waterfall_chart(data_frame: pd.DataFrame) -> go.Figure:
    """Expected energy, each loss category taken off, produced energy (MWh)."""
    sums = data_frame.iloc[0] if len(data_frame) else None
    if sums is None or pd.isna(sums["expected_kwh"]):
        return empty_figure("No KPIs for this farm and month (the reporting pipeline fills kpi_daily)")
    labels = ["Expected", *LOSS_STEPS.values(), "Produced"]
    values = [sums["expected_kwh"], *(-sums[column] for column in LOSS_STEPS), sums["energy_kwh"]]
    figure = go.Figure(
        go.Waterfall(
            x=labels,
            y=[value / 1000 for value in values],
            measure=["absolute", *["relative"] * len(LOSS_STEPS), "total"],
            texttemplate="%{y:,.1f}",
            textposition="outside",
        )
    )
    figure.update_layout(yaxis_title="energy (MWh)", showlegend=False)
    return figure


@capture("graph")
def availability_chart(data_frame: pd.DataFrame) -> go.Figure:
    """The farm's daily time and energy availability."""
    if data_frame.empty:
        return empty_figure("No KPIs for this farm (the reporting pipeline fills kpi_daily)")
    figure = go.Figure()
    for column in ("time_availability", "energy_availability"):
        figure.add_trace(go.Scatter(x=data_frame["day"], y=data_frame[column], name=column.replace("_", " ")))
    figure.update_layout(yaxis_title="availability", yaxis_tickformat=".0%", legend_orientation="h")
    return figure
