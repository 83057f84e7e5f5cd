"""Project pipelines."""

from kedro.pipeline import Pipeline

from turbine_monitor.pipelines import inference, ingestion, training


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines. The default one runs ingestion, training and
    inference in that order: a fresh clone ends with a champion and the history scored."""
    pipelines = {
        "ingestion": ingestion.create_pipeline(),
        "training": training.create_pipeline(),
        "inference": inference.create_pipeline(),
    }
    pipelines["__default__"] = pipelines["ingestion"] + pipelines["training"] + pipelines["inference"]
    return pipelines
