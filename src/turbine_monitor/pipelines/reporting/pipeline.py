"""Reporting pipeline: the KPI rows of the days that can still change, a partition of
farms at a time. It reads `alerts@to_report`, so that in the inference pipeline it runs
after alert detection has saved `alerts@update` (Kedro transcoding: one table)."""

from kedro.pipeline import Pipeline, node, pipeline

from .nodes import report_days


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline([
        node(report_days, ["alerts@to_report", "params:reporting"], "kpi_daily", name="report_days"),
    ])
