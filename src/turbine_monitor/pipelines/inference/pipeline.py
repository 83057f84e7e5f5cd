"""Inference pipeline: new landing files are ingested (the ingestion pipeline), new
rows scored with their farm's champion, alerts updated and the days they change reported
(the reporting pipeline), a partition of farms at a time."""

from kedro.pipeline import Pipeline, node, pipeline

from turbine_monitor.pipelines import ingestion, reporting

from .nodes import score_new_rows, update_alerts


def create_scoring_pipeline() -> Pipeline:
    return pipeline([
        node(score_new_rows, ["scada@to_score", "champions@registry", "params:inference.scoring"],
             ["predictions@table", "scoring_champions"], name="score_new_rows"),
        node(update_alerts, ["predictions@to_detect", "scoring_champions", "params:inference.alerts"],
             "alerts@update", name="update_alerts"),
    ])


def create_pipeline(**kwargs) -> Pipeline:
    return ingestion.create_pipeline() + create_scoring_pipeline() + reporting.create_pipeline()
