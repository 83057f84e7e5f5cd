"""Project pipelines."""

from kedro.pipeline import Pipeline

from turbine_monitor.pipelines import inference, ingestion, reporting, training


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines. Training is per farm (`--params farm=<id>`); the
    default pipeline ingests, trains (the fleet's one farm, or the farm given), scores
    and reports (inference ends with reporting); `scoring` is inference without ingestion
    (`--params farms=<id>`: one farm's work). `kedro run-fleet` runs a round of a fleet
    of any size."""
    pipelines = {
        "ingestion": ingestion.create_pipeline(),
        "training": training.create_pipeline(),
        "training_plan": training.create_plan_pipeline(),
        "inference": inference.create_pipeline(),
        "reporting": reporting.create_pipeline(),
    }
    pipelines["scoring"] = pipelines["inference"] - pipelines["ingestion"]  # scoring, alerts, reporting
    pipelines["__default__"] = pipelines["ingestion"] + pipelines["training"] + pipelines["inference"]
    return pipelines
