"""Project pipelines."""

from kedro.pipeline import Pipeline

from turbine_monitor.pipelines import ingestion, training


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines; the default one runs them all in order."""
    pipelines = {
        "ingestion": ingestion.create_pipeline(),
        "training": training.create_pipeline(),
    }
    pipelines["__default__"] = sum(pipelines.values(), Pipeline([]))
    return pipelines
