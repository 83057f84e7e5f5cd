"""Vizro components the built-in ones lack: a timer that refreshes a page, and a plot an
action draws (the Alerts page's evidence of the selected alert)."""

from __future__ import annotations

from typing import Literal

from dash import dcc
from pydantic import model_validator
from vizro.models import VizroBaseModel
from vizro.models._models_utils import make_actions_chain
from vizro.models.types import ActionsType, _IdProperty

from turbine_monitor.dashboard.charts import empty_figure


class Refresh(VizroBaseModel):
    """Runs its actions (e.g. `update_targets`) every `interval_s` seconds while the page is open."""

    type: Literal["refresh"] = "refresh"
    interval_s: float = 10
    actions: ActionsType = []

    @model_validator(mode="after")
    def _make_actions_chain(self):
        return make_actions_chain(self)

    @property
    def _action_triggers(self) -> dict[str, _IdProperty]:
        return {"__default__": f"{self.id}.n_intervals"}

    def build(self) -> dcc.Interval:
        return dcc.Interval(id=self.id, interval=int(self.interval_s * 1000))


class ActionPlot(VizroBaseModel):
    """A plot that actions draw (output `<id>`), blank with `placeholder` until then."""

    type: Literal["action_plot"] = "action_plot"
    placeholder: str = ""

    @property
    def _action_outputs(self) -> dict[str, _IdProperty]:
        return {"__default__": f"{self.id}.figure"}

    def build(self) -> dcc.Graph:
        return dcc.Graph(id=self.id, figure=empty_figure(self.placeholder))


class Memory(VizroBaseModel):
    """A value actions keep in the browser (output and input `<id>`), e.g. the selected alert,
    which outlives the table's refresh (a refreshed table forgets its selection)."""

    type: Literal["memory"] = "memory"

    @property
    def _action_outputs(self) -> dict[str, _IdProperty]:
        return {"__default__": f"{self.id}.data"}

    @property
    def _action_inputs(self) -> dict[str, _IdProperty]:
        return {"__default__": f"{self.id}.data"}

    def build(self) -> dcc.Store:
        return dcc.Store(id=self.id)
